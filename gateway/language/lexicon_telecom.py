"""Telecom and utilities concepts: broadband, mobile, TV, calls, plans, installs, energy supply.

Product words a telecom brand uses on every card (`broadband`, `mobile`) are weaker than the
words that name a kind of request (`outage`, `speed`, `engineer visit`), so the ranking is
decided by what the customer wants done rather than by which product they own.
"""

from __future__ import annotations

from gateway.language.weights import MID, STRONG, WEAK

TELECOM: dict[str, dict[float, str]] = {
    "broadband": {
        MID: "broadband|fibre|fiber|full fibre|adsl|vdsl|fttp|fttc|internet connection|"
        "home broadband|line",
    },
    "speed": {
        STRONG: "speed|speeds|slow|slower|sluggish|mbps|meg|megs|megabits|download speed|"
        "upload speed|speed test|buffering|lag|laggy|latency|ping|upload|download",
    },
    "outage": {
        STRONG: "outage|outages|service outage|no internet|no service|no connection|"
        "internet down|is down|down again|went down|gone down|been down|cutting out|cuts out|"
        "cut out|drops out|dropping out|keeps dropping|dropouts|dropout|intermittent|vanishes|"
        "keeps vanishing|no bars|calls drop|dropped calls|nothing works|nothing will connect",
        MID: "down|faults|fault|fault report",
    },
    "router": {
        STRONG: "router|routers|hub|home hub|modem|port forwarding|ports|dns|ip address|"
        "wifi password|wi-fi password|extender|booster|mesh|ssid|ethernet",
    },
    "mobile": {
        STRONG: "mobile|mobiles|sim|sim card|esim|mobile data|4g|5g|3g|roaming|handset|"
        "handsets|phone signal|mobile signal|bars of signal|data allowance|apn|signal in my|"
        "pac code|port my number|keep my number",
        MID: "phone|smartphone|iphone|android",
    },
    "calls": {
        STRONG: "make calls|making calls|receive calls|incoming calls|outgoing calls|"
        "call quality|voicemail|landline|landlines|home phone|phone line|dial tone|caller id|"
        "number unavailable|call divert|call forwarding",
    },
    "tv": {
        STRONG: "tv box|set top box|set-top box|channels|channel|tv guide|catch up|catch-up|"
        "recordings|recording|on demand|freeview|epg|tv service|tv app",
    },
    "addon": {
        STRONG: "add-on|add-ons|addon|addons|add on|bolt on|bolt-on|extras|sports package|"
        "movies package|tv package|tv packages|channel package|premium channels|extra data",
    },
    "upgrade": {
        STRONG: "upgrade|upgrades|upgrading|upgraded|faster|fastest|quicker|higher speed|"
        "more speed|better package|bigger package",
    },
    "deal": {
        STRONG: "deal|deals|quote|quotes|quotation|price match|match it|better deal|"
        "cheaper deal|cheaper|cheapest|new customers|new customer|comparison|comparisons|"
        "compare|handset deal|salesperson|sales team|sales|business broadband",
        MID: "offer|offers|discount|discounts|price|prices",
    },
    "contract": {
        STRONG: "contract|contracts|minimum term|end of contract|out of contract|tie in|"
        "tied in|early termination|termination fee|exit fee|notice period",
    },
    "switching": {
        STRONG: "switching away|switch away|switch provider|switching provider|switch supplier|"
        "switching supplier|switch suppliers|change supplier|another supplier|new supplier|"
        "another provider|switching to us|switch to you|switch over to you|switch my gas|"
        "switch my electricity|move over to you|join you|joining",
        MID: "switch|switching|supplier",
    },
    "moving": {
        STRONG: "moving home|move home|moving house|move house|moving flat|moved house|"
        "moving out|move out|moving in|move in|new home|new address|new build|relocating|"
        "relocate|home move|change of tenancy|new tenant|bought a house|bought a flat|"
        "buying a house|take my broadband with me",
    },
    "install": {
        STRONG: "install|installs|installation|installations|installer|installers|installed|"
        "installing|fit|fitted|fitting|put one in|put in a line|new line|new lines|"
        "new line connection|new line connections|line installed|connection date|go live",
    },
    "appointment": {
        STRONG: "appointment|appointments|engineer|engineers|engineer visit|visit|visits|"
        "time slot|slot|come round|call out|callout|missed appointment|no show|"
        "didnt turn up|didn't turn up|did not turn up",
    },
    "supply": {
        STRONG: "power cut|power cuts|power outage|power went off|power is off|"
        "powers off|power has gone|no electricity|no gas|blackout|loss of supply|lost supply|"
        "supply|power's been off|power been off|power's off|power goes off|power going off|"
        "flickering|flicker",
    },
    "emergency": {
        STRONG: "emergency|emergencies|gas leak|smell gas|smell of gas|gas smell|"
        "carbon monoxide|sparking|burning smell|exposed wires|danger|dangerous",
    },
    "vulnerable": {
        STRONG: "vulnerable|priority services|priority register|priority list|"
        "priority services register|elderly|medical equipment",
    },
    "meter": {
        STRONG: "meter|meters|smart meter|meter reading|meter readings|readings|reading|"
        "in-home display|in home display|ihd|prepayment|prepay|top up|top-up|top ups|"
        "top-ups|gas card|electricity key|my key|estimated readings|estimated reading",
        MID: "display|estimated|estimate",
    },
    "tariff": {
        STRONG: "tariff|tariffs|fixed tariff|variable tariff|fixed deal|standard variable|"
        "standing charge|unit rate|unit price|kwh|price cap",
    },
    "energy": {
        WEAK: "gas|electricity|energy|electric|boiler",
    },
    "": {
        STRONG: "at home|from home|working from home|turned down|costing us money|"
        "costing me money|losing money|cost us money",
    },
}
"""concept -> {weight: "phrase|phrase|…"} for telecom, broadband, TV and energy brands."""
