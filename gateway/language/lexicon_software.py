"""Software-as-a-service concepts: bugs, integrations, admin, access, security and compliance."""

from __future__ import annotations

from gateway.language.weights import STRONG, WEAK

SOFTWARE: dict[str, dict[float, str]] = {
    "bug": {
        STRONG: "bug|bugs|bug report|bug reports|500 error|error message|error messages|"
        "error code|wont load|won't load|not loading|doesnt load|doesn't load|spinning wheel|"
        "spinner|blank page|blank screen|hangs|timed out|timeout|broken link|duplicating|"
        "duplicated|missing field",
    },
    "integration": {
        STRONG: "integration|integrations|integrate|slack|google calendar|calendar|zapier|"
        "jira|github|outlook|microsoft teams|api|apis|webhook|webhooks|api key|endpoint|"
        "payload|sync|syncing|synced|sync issues",
    },
    "howto": {
        WEAK: "how do i|how do you|how can i|how to|how-to|is it possible to|is there a way to|"
        "tutorial|docs|documentation",
    },
    "users": {
        STRONG: "user management|users|invite|invites|inviting|invitation|guest|guests|"
        "ex-employee|ex employee|former employee|leaver|offboarding|deactivate|remove him|"
        "remove her|remove them|removing users|add users",
    },
    "permissions": {
        STRONG: "permission|permissions|role|roles|access rights|view only|viewing only|"
        "read only|admin rights|administrator|administration|ownership|owner|"
        "workspace ownership|ownership transfer|workspace ownership transfer|transfer ownership|"
        "hand over ownership|"
        "still has access|has access|access",
    },
    "sso": {
        STRONG: "sso|single sign on|single sign-on|saml|okta|azure ad|scim|identity provider|idp",
    },
    "security": {
        STRONG: "security|secure|encryption|encrypted|pen test|penetration test|vulnerability|"
        "vulnerabilities|xss|csrf|exploit|breach|cve|security questionnaire|"
        "security questionnaires|questionnaire|account security",
    },
    "compliance": {
        STRONG: "compliance|compliant|soc 2|soc2|iso 27001|dpa|data processing agreement|"
        "data processing agreements|data processing|sub-processors|subprocessors|legal team|"
        "retention|data retention|purge|purging|deleted projects|data export",
    },
}
"""concept -> {weight: "phrase|phrase|…"} for software products."""
