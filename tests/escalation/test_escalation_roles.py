"""Roles on the new endpoints over real HTTP (PROTOCOL section 4): who gets 2xx, 401, 403
or 404 on operators, channels, escalations and outcomes."""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN_TOKEN
from tests.escalation.conftest import BRAND, Scene

ROLES = (
    "anonymous",
    "personal",
    "brand_agent",
    "admin_other",
    "operator_other",
    "brand_admin",
    "admin",
    "operator",
)

# endpoint -> expected status per role, in ROLES order.
EXPECTED: dict[str, tuple[int, ...]] = {
    "POST operators": (401, 403, 403, 403, 403, 201, 201, 403),
    "GET operators": (401, 403, 403, 403, 403, 200, 200, 403),
    "POST channels": (401, 403, 403, 403, 403, 201, 201, 403),
    "GET channels": (401, 403, 403, 403, 403, 200, 200, 403),
    "DELETE channels": (401, 403, 403, 403, 403, 404, 404, 403),
    "GET escalations": (401, 403, 403, 200, 200, 200, 200, 200),
    "GET escalation": (401, 403, 403, 404, 404, 200, 200, 200),
    "POST claim": (401, 403, 403, 404, 404, 403, 403, 200),
    "GET outcomes": (401, 403, 403, 403, 403, 200, 200, 403),
}


async def _tokens(scene: Scene) -> dict[str, str | None]:
    other_admin, _ = await scene.gw.brand("other.example")
    eve = await other_admin.post("/v1/brands/other.example/operators", {"handle": "eve"})
    return {
        "anonymous": None,
        "personal": scene.alice.token(),
        "brand_agent": scene.agent.token(),
        "admin_other": other_admin.token,
        "operator_other": eve["token"],
        "brand_admin": scene.admin.token,
        "admin": ADMIN_TOKEN,
        "operator": scene.jane.token,
    }


async def test_new_endpoints_enforce_the_roles(scene: Scene):
    """Every role on every new endpoint answers as the table says (mismatches listed)."""
    task = await scene.open_task()
    await scene.agent_act(task, "escalate", "Over to you.")
    (escalation,) = await scene.escalations()
    tokens = await _tokens(scene)
    requests: dict[str, tuple[str, str, Any]] = {
        "POST operators": ("POST", f"/v1/brands/{BRAND}/operators", None),
        "GET operators": ("GET", f"/v1/brands/{BRAND}/operators", None),
        "POST channels": (
            "POST",
            f"/v1/brands/{BRAND}/channels",
            {"kind": "slack", "url": "http://127.0.0.1:9/x"},
        ),
        "GET channels": ("GET", f"/v1/brands/{BRAND}/channels", None),
        "DELETE channels": ("DELETE", f"/v1/brands/{BRAND}/channels/chn_missing", None),
        "GET escalations": ("GET", "/v1/escalations", None),
        "GET escalation": ("GET", f"/v1/escalations/{escalation['id']}", None),
        "POST claim": ("POST", f"/v1/escalations/{escalation['id']}/claim", {}),
        "GET outcomes": ("GET", f"/v1/brands/{BRAND}/outcomes", None),
    }
    wrong = []
    for name, (method, path, body) in requests.items():
        for index, role in enumerate(ROLES):
            token = tokens[role]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            payload = body
            if name == "POST operators":
                payload = {"handle": f"op{index}"}
            async with scene.gw.session.request(
                method, scene.gw.url + path, json=payload, headers=headers
            ) as response:
                if response.status != EXPECTED[name][index]:
                    wrong.append((name, role, response.status, EXPECTED[name][index]))
    assert wrong == []
