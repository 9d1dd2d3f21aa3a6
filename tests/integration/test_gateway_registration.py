"""Registration and keys over HTTP: brands, brand and personal agents, cards, PATCH, rotation,
and agent JWT failures, each refusal checked as an RFC 9457 problem."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from identity.b64 import b64url_decode, b64url_encode
from identity.envelope import KeyState
from identity.errors import TokenInvalid
from identity.keys import PrivateKey, PublicKey
from identity.tokens import issue_agent_token, verify_agent_token
from tests.conftest import ADMIN_TOKEN, make_settings, start_gateway
from tests.integration.wire import assert_problem, request


def _personal_body(address: str, key: PrivateKey, **more: Any) -> dict[str, Any]:
    return {
        "address": address,
        "kind": "personal",
        "display_name": "Alice",
        "keys": [key.public.jwk],
        **more,
    }


def _brand_body(address: str, key: PrivateKey, **more: Any) -> dict[str, Any]:
    return {
        "address": address,
        "kind": "brand",
        "display_name": "Support",
        "description": "Speaker support",
        "skills": ["troubleshooting"],
        "keys": [key.public.jwk],
        **more,
    }


def _jwt(gateway: Any, key: PrivateKey, address: str, **changes: Any) -> str:
    return issue_agent_token(
        key,
        address,
        changes.get("audience", gateway.settings.domain),
        changes.get("now", datetime.now(UTC)),
        ttl=changes.get("ttl", 300),
    )


async def _register(gateway: Any, address: str, key: PrivateKey) -> Any:
    """POST /v1/agents: `address` as a personal agent with `key`, proven by a JWT it signs."""
    return await request(
        gateway.session,
        "POST",
        gateway.url + "/v1/agents",
        token=_jwt(gateway, key, address),
        body=_personal_body(address, key),
    )


# Brands --------------------------------------------------------------------------------------


async def test_admin_creates_a_brand_and_gets_a_token(gateway):
    """POST /v1/brands by the admin answers 201 {domain, display_name, token}."""
    answer = await request(
        gateway.session,
        "POST",
        gateway.url + "/v1/brands",
        token=ADMIN_TOKEN,
        body={"domain": "Acme.Example", "display_name": "Acme"},
    )
    assert answer.status == 201
    assert answer.body["domain"] == "acme.example"
    assert answer.body["display_name"] == "Acme"
    assert answer.body["token"].startswith("sbt_")


async def test_brand_creation_refusals(gateway):
    """Anonymous 401, brand admin 403, duplicate 409 brand_exists, bad domain 400."""
    staff, _ = await gateway.brand("acme.example")
    url = gateway.url + "/v1/brands"
    body = {"domain": "other.example", "display_name": "Other"}
    anonymous = await request(gateway.session, "POST", url, body=body)
    assert_problem(anonymous, 401, "unauthorized", "authenticate")
    brand_admin = await request(gateway.session, "POST", url, token=staff.token, body=body)
    assert_problem(brand_admin, 403, "forbidden", "create brands")
    again = await request(
        gateway.session,
        "POST",
        url,
        token=ADMIN_TOKEN,
        body={"domain": "acme.example", "display_name": "Acme"},
    )
    assert_problem(again, 409, "brand_exists", "acme.example")
    bad = await request(
        gateway.session,
        "POST",
        url,
        token=ADMIN_TOKEN,
        body={"domain": "no_dot", "display_name": "X"},
    )
    assert_problem(bad, 400, "address_invalid")
    unknown_token = await request(gateway.session, "POST", url, token="sbt_nope", body=body)
    assert_problem(unknown_token, 401, "unauthorized", "token")


# Brand agents --------------------------------------------------------------------------------


async def test_brand_agent_registration_is_for_that_brands_admin(gateway):
    """Only acme's brand admin (or the admin) registers acme's agents."""
    acme, _ = await gateway.brand("acme.example")
    other, _ = await gateway.brand("other.example")
    url = gateway.url + "/v1/agents"
    key = PrivateKey.generate()
    body = _brand_body("support@acme.example", key)
    anonymous = await request(gateway.session, "POST", url, body=body)
    assert_problem(anonymous, 401, "unauthorized")
    stranger = await request(gateway.session, "POST", url, token=other.token, body=body)
    assert_problem(stranger, 403, "forbidden", "acme.example")
    alice = await gateway.person("alice")
    as_agent = await request(gateway.session, "POST", url, token=alice.token(), body=body)
    assert_problem(as_agent, 403, "forbidden")
    ok = await request(gateway.session, "POST", url, token=acme.token, body=body)
    assert ok.status == 201
    assert ok.body["address"] == "support@acme.example"
    assert ok.body["kind"] == "brand"
    assert ok.body["keys"] == [{"kid": key.kid, "jwk": key.public.jwk, "status": "active"}]
    assert ok.body["endpoint"] is None
    taken = await request(gateway.session, "POST", url, token=acme.token, body=body)
    assert_problem(taken, 409, "address_taken", "support@acme.example")


async def test_brand_agent_of_unknown_brand(gateway):
    """The admin registering an agent under a domain that is no brand gets 404 naming it."""
    answer = await request(
        gateway.session,
        "POST",
        gateway.url + "/v1/agents",
        token=ADMIN_TOKEN,
        body=_brand_body("support@ghost.example", PrivateKey.generate()),
    )
    assert_problem(answer, 404, "not_found", "ghost.example")


@pytest.mark.parametrize(
    ("changes", "code", "member"),
    [
        ({"kind": "robot"}, "schema_invalid", "kind"),
        ({"keys": []}, "schema_invalid", "keys"),
        ({"keys": [{"kty": "RSA", "n": "x"}]}, "key_invalid", ""),
        ({"surprise": 1}, "schema_invalid", "surprise"),
        ({"skills": "one"}, "schema_invalid", "skills"),
        ({"address": "Not An Address"}, "address_invalid", ""),
    ],
)
async def test_bad_registration_bodies(gateway, changes, code, member):
    """Malformed registrations are 400 problems naming the member."""
    acme, _ = await gateway.brand("acme.example")
    body = {**_brand_body("support@acme.example", PrivateKey.generate()), **changes}
    answer = await request(
        gateway.session, "POST", gateway.url + "/v1/agents", token=acme.token, body=body
    )
    assert_problem(answer, 400, code, member)


async def test_registration_body_that_is_not_json(gateway):
    """A registration body that is not JSON is 400 invalid_json, like an envelope's."""
    acme, _ = await gateway.brand("acme.example")
    answer = await request(
        gateway.session, "POST", gateway.url + "/v1/agents", token=acme.token, data=b"{nope"
    )
    assert_problem(answer, 400, "invalid_json", "json")


# Personal agents -----------------------------------------------------------------------------


async def test_personal_agent_registers_with_proof_of_possession(gateway):
    """A personal agent registers itself with a JWT signed by the key it registers."""
    key = PrivateKey.generate()
    address = "alice@people.example"
    answer = await _register(gateway, address, key)
    assert answer.status == 201
    assert answer.body["kind"] == "personal"
    assert [k["kid"] for k in answer.body["keys"]] == [key.kid]


async def test_personal_registration_refusals(gateway):
    """No proof 401; proof by another key 401; proof for another address or a registration
    under a domain that is not the personal domain 403; a second registration 409."""
    url = gateway.url + "/v1/agents"
    key = PrivateKey.generate()
    address = "alice@people.example"
    body = _personal_body(address, key)
    missing = await request(gateway.session, "POST", url, body=body)
    assert_problem(missing, 401, "unauthorized", "holds its key")
    other_key = PrivateKey.generate()
    by_other = await request(
        gateway.session, "POST", url, token=_jwt(gateway, other_key, address), body=body
    )
    assert_problem(by_other, 401, "unauthorized")
    expired = await request(
        gateway.session,
        "POST",
        url,
        token=_jwt(gateway, key, address, now=datetime.now(UTC) - timedelta(minutes=10)),
        body=body,
    )
    assert_problem(expired, 401, "unauthorized", "expired")
    wrong_address = await request(
        gateway.session, "POST", url, token=_jwt(gateway, key, "bob@people.example"), body=body
    )
    assert_problem(wrong_address, 403, "forbidden", "bob@people.example")
    elsewhere = "alice@acme.example"
    wrong_domain = await request(
        gateway.session,
        "POST",
        url,
        token=_jwt(gateway, key, elsewhere),
        body=_personal_body(elsewhere, key),
    )
    assert_problem(wrong_domain, 403, "forbidden", "people.example")
    ok = await request(gateway.session, "POST", url, token=_jwt(gateway, key, address), body=body)
    assert ok.status == 201
    again = await request(
        gateway.session, "POST", url, token=_jwt(gateway, key, address), body=body
    )
    assert_problem(again, 409, "address_taken", address)


@pytest.mark.parametrize("local", ["gateway", "admin"])
async def test_the_gateways_own_addresses_cannot_be_registered(tmp_path, local):
    """With the personal domain the gateway's own, gateway@ (which signs status envelopes)
    and admin@ (the admin at an escalation) are taken: 409 address_taken, nothing stored;
    another local part registers."""
    settings = make_settings(tmp_path / "var").with_overrides(personal_domain="gw.example")
    async with start_gateway(settings) as gateway:
        key = PrivateKey.generate()
        address = f"{local}@gw.example"
        taken = await _register(gateway, address, key)
        assert_problem(taken, 409, "address_taken", address, "gateway's own address")
        assert await gateway.services.directory.agent(address) is None
        ok = await _register(gateway, "alice@gw.example", key)
        assert ok.status == 201, ok.body


# Cards and PATCH -----------------------------------------------------------------------------


async def test_card_is_public_and_patch_is_for_the_owner(gateway):
    """Anyone reads a card; the agent and its brand admin PATCH it; others may not."""
    acme, agents = await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    support = agents["support"]
    url = f"{gateway.url}/v1/agents/{support.address}"
    card = await request(gateway.session, "GET", url)
    assert card.status == 200
    assert set(card.body) >= {
        "address",
        "kind",
        "display_name",
        "description",
        "skills",
        "keys",
        "endpoint",
    }
    assert card.body["skills"] == ["lights"]
    missing = await request(gateway.session, "GET", gateway.url + "/v1/agents/x@acme.example")
    assert_problem(missing, 404, "not_found", "x@acme.example")

    patched = await request(
        gateway.session,
        "PATCH",
        url,
        token=support.token(),
        body={"description": "Speakers and headphones", "skills": ["lights", "pairing"]},
    )
    assert patched.status == 200
    assert patched.body["description"] == "Speakers and headphones"
    assert patched.body["display_name"] == card.body["display_name"]  # untouched
    by_admin = await request(
        gateway.session, "PATCH", url, token=acme.token, body={"display_name": "Help"}
    )
    assert by_admin.body["display_name"] == "Help"
    assert by_admin.body["skills"] == ["lights", "pairing"]

    alice = await gateway.person("alice")
    other, _ = await gateway.brand("other.example")
    for token, status, code in [
        (None, 401, "unauthorized"),
        (alice.token(), 403, "forbidden"),
        (other.token, 403, "forbidden"),
    ]:
        refused = await request(
            gateway.session, "PATCH", url, token=token, body={"description": "hacked"}
        )
        assert_problem(refused, status, code)
    assert (await request(gateway.session, "GET", url)).body["description"] == (
        "Speakers and headphones"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"description": None},
        {"display_name": None},
        {"skills": None},
        {"description": 5},
        {"colour": "red"},
        [],
    ],
)
async def test_bad_patch_bodies_are_400(gateway, body):
    """PATCH bodies with nulls for required members, wrong types or unknown members are 400
    schema_invalid, never a 500 (a PATCH may omit a member, not erase it)."""
    _, agents = await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    support = agents["support"]
    answer = await request(
        gateway.session,
        "PATCH",
        f"{gateway.url}/v1/agents/{support.address}",
        token=support.token(),
        body=body,
    )
    assert_problem(answer, 400, "schema_invalid")


# Keys ----------------------------------------------------------------------------------------


async def test_key_rotation_has_no_gap(gateway):
    """Add a key, sign with it at once; revoke the old one, which then is refused; the last
    active key cannot be revoked."""
    await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    alice = await gateway.person("alice")
    old = alice.key
    new = PrivateKey.generate()
    keys_url = f"{gateway.url}/v1/agents/{alice.address}/keys"
    added = await request(
        gateway.session, "POST", keys_url, token=alice.token(), body={"jwk": new.public.jwk}
    )
    assert added.status == 201
    assert {k["kid"]: k["status"] for k in added.body["keys"]} == {
        old.kid: "active",
        new.kid: "active",
    }
    again = await request(
        gateway.session, "POST", keys_url, token=alice.token(), body={"jwk": new.public.jwk}
    )
    assert again.status == 200  # already there: nothing changes

    old_envelope = alice.envelope("acme.example", "signed with the old key")
    alice.key = new
    alice._token = None
    assert (await alice.send("acme.example", "signed with the new key"))["duplicate"] is False
    assert (await alice.post_envelope(old_envelope))["duplicate"] is False  # old still active

    revoked = await request(gateway.session, "DELETE", f"{keys_url}/{old.kid}", token=alice.token())
    assert revoked.status == 200
    assert {k["kid"]: k["status"] for k in revoked.body["keys"]} == {
        old.kid: "revoked",
        new.kid: "active",
    }
    alice.key = old
    late = await request(
        gateway.session,
        "POST",
        gateway.url + "/v1/messages",
        body=alice.envelope("acme.example", "old key again"),
    )
    assert_problem(late, 401, "key_revoked")
    stale_jwt = await request(
        gateway.session, "GET", gateway.url + "/v1/inbox", token=_jwt(gateway, old, alice.address)
    )
    assert_problem(stale_jwt, 401, "unauthorized", "revoked")
    readd = await request(
        gateway.session,
        "POST",
        keys_url,
        token=_jwt(gateway, new, alice.address),
        body={"jwk": old.public.jwk},
    )
    assert readd.status < 300
    assert {k["kid"]: k["status"] for k in readd.body["keys"]}[old.kid] == "revoked"

    last = await request(
        gateway.session,
        "DELETE",
        f"{keys_url}/{new.kid}",
        token=_jwt(gateway, new, alice.address),
    )
    # Unspecified: refused as 403 forbidden (the gateway will not leave an agent keyless).
    assert_problem(last, 403, "forbidden", "last active key")
    unknown = await request(
        gateway.session,
        "DELETE",
        f"{keys_url}/nokid",
        token=_jwt(gateway, new, alice.address),
    )
    assert_problem(unknown, 404, "not_found", "nokid")


async def test_keys_are_managed_by_owner_or_its_brand_admin(gateway):
    """Another agent may not add keys to alice; a brand admin manages its agents' keys."""
    acme, agents = await gateway.brand("acme.example", [("support", "Speakers", ["lights"])])
    alice = await gateway.person("alice")
    bob = await gateway.person("bob")
    jwk = {"jwk": PrivateKey.generate().public.jwk}
    by_bob = await request(
        gateway.session,
        "POST",
        f"{gateway.url}/v1/agents/{alice.address}/keys",
        token=bob.token(),
        body=jwk,
    )
    assert_problem(by_bob, 403, "forbidden")
    by_admin = await request(
        gateway.session,
        "POST",
        f"{gateway.url}/v1/agents/{agents['support'].address}/keys",
        token=acme.token,
        body=jwk,
    )
    assert by_admin.status == 201
    bad = await request(
        gateway.session,
        "POST",
        f"{gateway.url}/v1/agents/{alice.address}/keys",
        token=alice.token(),
        body={"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "short"}},
    )
    assert_problem(bad, 400, "key_invalid")


# Weak keys -----------------------------------------------------------------------------------

_P = 2**255 - 19
# Small-order points (tests/identity/test_identity_edwards25519.py derives all 14 encodings):
# the identity, canonical and with the sign bit set, the identity as y = p + 1, and (0, -1).
WEAK_KEYS = [
    (1).to_bytes(32, "little"),
    (1 | 1 << 255).to_bytes(32, "little"),
    (_P + 1).to_bytes(32, "little"),
    (_P - 1).to_bytes(32, "little"),
]
_WEAK_IDS = ["identity", "identity-sign-bit", "identity-y-plus-p", "order-2"]


def _weak_jwk(raw: bytes) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}


def _forged_jwt(gateway: Any, raw: bytes, address: str) -> str:
    """An agent JWT made with no private key, whose signature (R = the identity, S = 0)
    OpenSSL verifies with the identity as the key."""
    kid = PublicKey.from_bytes(raw).kid
    issued = int(datetime.now(UTC).timestamp())
    header = {"alg": "EdDSA", "kid": kid, "typ": "JWT"}
    claims = {
        "iss": address,
        "sub": address,
        "aud": gateway.settings.domain,
        "iat": issued,
        "exp": issued + 60,
        "jti": "forged",
    }
    signing_input = ".".join(
        b64url_encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    return f"{signing_input}.{b64url_encode((1).to_bytes(32, 'little') + bytes(32))}"


@pytest.mark.parametrize("raw", WEAK_KEYS, ids=_WEAK_IDS)
async def test_brand_agent_with_a_weak_key_is_refused(gateway, raw):
    """A small-order key, alone or beside a good one, is 400 key_invalid telling the person to
    make a new key pair; no agent is registered."""
    acme, _ = await gateway.brand("acme.example")
    url = gateway.url + "/v1/agents"
    good = PrivateKey.generate()
    for keys in ([_weak_jwk(raw)], [good.public.jwk, _weak_jwk(raw)]):
        body = {**_brand_body("support@acme.example", good), "keys": keys}
        answer = await request(gateway.session, "POST", url, token=acme.token, body=body)
        problem = assert_problem(answer, 400, "key_invalid", "small-order", "new key pair")
        assert problem["kid"] == PublicKey.from_bytes(raw).kid
        card = await request(gateway.session, "GET", url + "/support@acme.example")
        assert_problem(card, 404, "not_found")


async def test_personal_agent_with_a_weak_key_is_refused(gateway):
    """With the identity point as its key, a personal agent's proof of possession can be
    forged without any private key (a JWT that OpenSSL verifies). The proof does not verify
    here, and the registration is refused for the key before it, telling the person to make a
    new key pair; the address stays free for its real owner."""
    raw = WEAK_KEYS[0]
    address = "mallory@people.example"
    forged = _forged_jwt(gateway, raw, address)
    public = PublicKey.from_bytes(raw)
    keys = {public.kid: KeyState(public)}
    with pytest.raises(TokenInvalid, match="signature"):
        verify_agent_token(forged, keys, gateway.settings.domain, datetime.now(UTC))
    answer = await request(
        gateway.session,
        "POST",
        gateway.url + "/v1/agents",
        token=forged,
        body={"address": address, "kind": "personal", "keys": [_weak_jwk(raw)]},
    )
    assert_problem(answer, 400, "key_invalid", "small-order", "new key pair")
    card = await request(gateway.session, "GET", f"{gateway.url}/v1/agents/{address}")
    assert_problem(card, 404, "not_found")
    owner = PrivateKey.generate()
    registered = await _register(gateway, address, owner)
    assert registered.status == 201


@pytest.mark.parametrize("raw", WEAK_KEYS, ids=_WEAK_IDS)
async def test_adding_a_weak_key_is_refused(gateway, raw):
    """POST …/keys with a small-order key is 400 key_invalid, and the card's keys are as
    they were."""
    alice = await gateway.person("alice")
    url = f"{gateway.url}/v1/agents/{alice.address}"
    before = (await request(gateway.session, "GET", url)).body["keys"]
    answer = await request(
        gateway.session, "POST", url + "/keys", token=alice.token(), body={"jwk": _weak_jwk(raw)}
    )
    assert_problem(answer, 400, "key_invalid", "small-order", "new key pair")
    after = (await request(gateway.session, "GET", url)).body["keys"]
    assert after == before
    assert after == [{"kid": alice.key.kid, "jwk": alice.key.public.jwk, "status": "active"}]


# Agent JWT failures --------------------------------------------------------------------------


def _tamper(token: str) -> str:
    header, claims, signature = token.split(".")
    decoded = b64url_decode(claims).replace(b"alice", b"alicf")
    return ".".join([header, b64url_encode(decoded), signature])


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (
            lambda g, a: _jwt(g, a.key, a.address, now=datetime.now(UTC) - timedelta(minutes=6)),
            "expired",
        ),
        (lambda g, a: _jwt(g, a.key, a.address, audience="elsewhere.example"), "elsewhere"),
        (lambda g, a: _jwt(g, a.key, a.address)[:-4] + "AAAA", "signature"),
        (lambda g, a: _tamper(_jwt(g, a.key, a.address)), ""),
        (lambda g, a: "not.a.jwt", ""),
        (lambda g, a: _jwt(g, PrivateKey.generate(), a.address), "not a key"),
        (lambda g, a: _jwt(g, a.key, "ghost@people.example"), "ghost"),
        (
            lambda g, a: _jwt(g, a.key, a.address, now=datetime.now(UTC) + timedelta(minutes=10)),
            "future",
        ),
    ],
)
async def test_bad_agent_jwts_are_401(gateway, make, words):
    """Expired, wrong-audience, tampered, foreign-key and future JWTs are 401 unauthorized."""
    alice = await gateway.person("alice")
    answer = await request(
        gateway.session, "GET", gateway.url + "/v1/inbox", token=make(gateway, alice)
    )
    assert_problem(answer, 401, "unauthorized", words)


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer ", "token"])
async def test_malformed_authorization_header_is_401(gateway, header):
    """An Authorization header that is not `Bearer <credential>` is 401 unauthorized."""
    answer = await request(
        gateway.session, "GET", gateway.url + "/v1/inbox", headers={"Authorization": header}
    )
    assert_problem(answer, 401, "unauthorized", "bearer")


@pytest.mark.parametrize("part", ["header", "claims"])
async def test_an_agent_jwt_nested_too_deeply_is_401(gateway, part):
    """A JWT whose header or claims nest deeper than Python's parser recurses is 401
    unauthorized naming the part, like any JWT that is not JSON (it was a 500, before any
    credential was checked)."""
    alice = await gateway.person("alice")
    pieces = _jwt(gateway, alice.key, alice.address).split(".")
    pieces[0 if part == "header" else 1] = b64url_encode(b"[" * 2000 + b"]" * 2000)
    answer = await request(
        gateway.session, "GET", gateway.url + "/v1/inbox", token=".".join(pieces)
    )
    assert_problem(answer, 401, "unauthorized", part)
