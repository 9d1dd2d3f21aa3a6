"""Signed envelopes: size limits, strict JSON, shape, and the signature rules of section 3.

The path of a request body is `check_size` -> `parse_json` -> `parse` -> `verify`. `parse`
checks shape only and computes the canonical bytes once (RFC 8785 over the object exactly as
received, minus `sig`); `verify` needs the sender's keys and the time, both passed in. Its
three steps are also offered one by one (`signing_key`, the signature, `check_clock`) for a
caller that checks the signature somewhere else, in the same order.

Choices where the protocol is silent:
- `task`, `reply_to`, `expires_at` may be absent (meaning null), `meta` may be absent (meaning
  {}), `body.parts` may be absent (meaning []), `act` may be absent (meaning `say`). Absent
  members stay absent in `raw`, so the signature still covers exactly what was sent.
- `body.text` must hold non-blank text for `say` and `ask`, the two acts that carry a message;
  every other act is a control act whose text may be empty.
- `body`, `sig` and each part accept only the members the protocol lists (extensions go in
  `meta`). A url part needs `url`; a raw part needs `media_type` and `base64`; `name`,
  `media_type` (url part) and `sha256` are optional.
- `task` is 1-64 characters of `[A-Za-z0-9_-]`; `reply_to`, an envelope id, follows `id`'s rule.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from identity import json_text
from identity.address import Address, parse_address, parse_recipient
from identity.b64 import b64url_decode, b64url_encode
from identity.canonical import canonicalize, canonicalize_plain, is_plain
from identity.errors import (
    AddressInvalid,
    ClockSkew,
    Expired,
    IdentityError,
    InvalidJson,
    KeyRevoked,
    PayloadTooLarge,
    SchemaInvalid,
    SignatureInvalid,
    UnknownKey,
)
from identity.keys import PrivateKey, PublicKey

PROTOCOL = "switchboard/1"
ACTS = frozenset(
    {"say", "ask", "resolve", "escalate", "reject", "fail", "cancel", "confirm", "status"}
)
MESSAGE_ACTS = frozenset({"say", "ask"})
MAX_REQUEST_BYTES = 256 * 1024
MAX_TEXT_BYTES = 32 * 1024
MAX_PARTS = 16
CLOCK_SKEW = timedelta(seconds=300)
REPLAY_WINDOW = timedelta(hours=48)
SIGNATURE_ALG = "EdDSA"

_MEMBERS = frozenset(
    {
        "v",
        "id",
        "from",
        "to",
        "task",
        "reply_to",
        "act",
        "created_at",
        "expires_at",
        "body",
        "meta",
        "sig",
    }
)
_REQUIRED_ORDER = ("v", "id", "from", "to", "created_at", "body", "sig")
_REQUIRED = frozenset(_REQUIRED_ORDER)
_BODY_MEMBERS = frozenset({"text", "parts"})
_SIG_MEMBERS = frozenset({"alg", "kid", "value"})
_PART_MEMBERS = {
    "data": (frozenset({"kind", "data"}), ("data",)),
    "url": (frozenset({"kind", "url", "media_type", "name", "sha256"}), ("url",)),
    "raw": (frozenset({"kind", "media_type", "name", "base64"}), ("media_type", "base64")),
}
_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TASK = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
    r"(?:\s*;.*)?",
    re.DOTALL,
)
_URL = re.compile(r"https://[^\s/?#@]+(?:[/?#]\S*)?")


@dataclass(frozen=True, slots=True)
class Signature:
    """The `sig` member: algorithm, key id and base64url signature value."""

    alg: str
    kid: str
    value: str


@dataclass(frozen=True, slots=True)
class KeyState:
    """One of a sender's keys as the verifier knows it."""

    public: PublicKey
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope. `raw` is the object as received (treat it as read-only) and
    `canonical` the RFC 8785 bytes of `raw` minus `sig`, which the signature covers."""

    id: str
    sender: Address
    to: Address | str
    task: str | None
    reply_to: str | None
    act: str
    created_at: datetime
    expires_at: datetime | None
    text: str
    parts: tuple[Mapping[str, object], ...]
    meta: Mapping[str, object]
    sig: Signature
    raw: Mapping[str, object] = field(repr=False)
    canonical: bytes = field(repr=False)

    @property
    def replay_key(self) -> tuple[str, str]:
        """(sender, id): the pair the gateway remembers to catch replays."""
        return (str(self.sender), self.id)

    @property
    def digest(self) -> str:
        """SHA-256 hex of the canonical bytes: equal digests mean an idempotent retry."""
        return hashlib.sha256(self.canonical).hexdigest()


def check_size(body: bytes) -> None:
    """Refuse a request body over 256 KiB before anything parses it.

    Raises:
        PayloadTooLarge: the body is over `MAX_REQUEST_BYTES`.
    """
    if len(body) > MAX_REQUEST_BYTES:
        raise PayloadTooLarge(
            f"the request body is {len(body)} bytes; at most {MAX_REQUEST_BYTES} are allowed",
            size=len(body),
            limit=MAX_REQUEST_BYTES,
        )


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build an object, refusing repeated member names (which parsers resolve differently)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise InvalidJson(
                    f"the member name {name!r} appears twice in one object", member=name
                )
            seen.add(name)
    return result


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise."""
    raise InvalidJson(f"{name} is not a JSON value", value=name)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_constant=_refuse_constant
)


def parse_json(body: bytes) -> object:
    """Parse one strict JSON document from UTF-8 bytes.

    Raises:
        InvalidJson: with line, column and character position for syntax errors, and for
            non-UTF-8 bytes, duplicate member names or NaN/Infinity.
        JsonBeyondLimits: (an `InvalidJson`) an integer of more digits than Python converts,
            or nesting deeper than `identity.json_text.MAX_DEPTH` levels, with where it is.
    """
    return json_text.load(body, "the body", _DECODER)


def _schema(member: str, problem: str) -> SchemaInvalid:
    return SchemaInvalid(f"{member} {problem}", member=member)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _string(obj: Mapping[str, object], member: str, path: str) -> str:
    value = obj.get(member)
    if type(value) is not str:
        raise _schema(path, f"must be a string, not {_type_name(value)}")
    return value


def _optional_string(obj: Mapping[str, object], member: str) -> str | None:
    value = obj.get(member)
    if value is None or type(value) is str:
        return value
    raise _schema(member, f"must be a string or null, not {_type_name(value)}")


def _timestamp(value: object, member: str) -> datetime:
    if type(value) is not str:
        raise _schema(member, f"must be an RFC 3339 UTC timestamp string, not {_type_name(value)}")
    if _TIMESTAMP.fullmatch(value) is None:
        raise _schema(
            member,
            f"must be an RFC 3339 UTC timestamp like 2026-11-26T06:10:00.000Z (ending in Z), "
            f"not {value[:40]!r}",
        )
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise _schema(member, f"is not a real date and time: {exc}") from None


def _check_limits(obj: Mapping[str, object]) -> None:
    """Size rules come first (protocol rule 1), so check them before the shape."""
    body = obj.get("body")
    if type(body) is not dict and not isinstance(body, Mapping):
        return
    text = body.get("text")
    if type(text) is str and len(text) > MAX_TEXT_BYTES // 4:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_TEXT_BYTES:
            raise PayloadTooLarge(
                f"body.text is {size} bytes of UTF-8; at most {MAX_TEXT_BYTES} are allowed",
                member="body.text",
                size=size,
                limit=MAX_TEXT_BYTES,
            )
    parts = body.get("parts")
    if isinstance(parts, list) and len(parts) > MAX_PARTS:
        raise PayloadTooLarge(
            f"body.parts holds {len(parts)} parts; at most {MAX_PARTS} are allowed",
            member="body.parts",
            size=len(parts),
            limit=MAX_PARTS,
        )


def _part(part: object, index: int) -> Mapping[str, object]:
    path = f"body.parts[{index}]"
    if type(part) is not dict and not isinstance(part, Mapping):
        raise _schema(path, f"must be an object, not {_type_name(part)}")
    kind = part.get("kind")
    if type(kind) is not str or kind not in _PART_MEMBERS:
        raise _schema(f"{path}.kind", f'must be "data", "url" or "raw", not {kind!r:.40}')
    allowed, required = _PART_MEMBERS[kind]
    for name in part:
        if name not in allowed:
            raise _schema(f"{path}.{name}", f"is not a member of a {kind} part")
    for name in required:
        if name not in part:
            raise _schema(f"{path}.{name}", f"is required in a {kind} part")
    for name in ("media_type", "name"):
        if name in part and type(part[name]) is not str:
            raise _schema(f"{path}.{name}", f"must be a string, not {_type_name(part[name])}")
    media_type = part.get("media_type")
    if isinstance(media_type, str) and _MEDIA_TYPE.fullmatch(media_type) is None:
        raise _schema(f"{path}.media_type", "must be a media type such as text/plain")
    if kind == "url":
        url = _string(part, "url", f"{path}.url")
        if _URL.fullmatch(url) is None:
            raise _schema(f"{path}.url", "must be an https:// URL with a host and no spaces")
        if "sha256" in part:
            digest = part["sha256"]
            if type(digest) is not str or _SHA256.fullmatch(digest) is None:
                raise _schema(f"{path}.sha256", "must be 64 hexadecimal characters")
    elif kind == "raw":
        encoded = _string(part, "base64", f"{path}.base64")
        try:
            binascii.a2b_base64(encoded.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise _schema(f"{path}.base64", "must be standard base64 with padding") from None
    return part


def parse(obj: object) -> Envelope:
    """Check an envelope's shape and build an `Envelope`; no keys or clock involved.

    Raises:
        PayloadTooLarge: body.text over 32 KiB of UTF-8 or more than 16 parts.
        SchemaInvalid: a member is missing, unknown or of the wrong type or form; the detail
            names the member.
        AddressInvalid: `from` or `to` is not an address (or, for `to`, a domain).
        InvalidJson: a value cannot be canonicalised (a lone surrogate, a huge integer).
    """
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise SchemaInvalid(f"an envelope must be a JSON object, not {_type_name(obj)}")
    _check_limits(obj)
    if not obj.keys() <= _MEMBERS:
        name = next(name for name in obj if name not in _MEMBERS)
        raise SchemaInvalid(
            f"{str(name)[:40]!r} is not an envelope member; extensions go in meta",
            member=name,
        )
    if not obj.keys() >= _REQUIRED:
        name = next(name for name in _REQUIRED_ORDER if name not in obj)
        raise _schema(name, "is required")
    if obj["v"] != PROTOCOL:
        raise _schema("v", f"must be {PROTOCOL!r}, not {obj['v']!r:.40}")
    envelope_id = _string(obj, "id", "id")
    if _ID.fullmatch(envelope_id) is None:
        raise _schema("id", "must be 16 to 64 characters of A-Z a-z 0-9 _ -")
    act = obj.get("act", "say")
    if type(act) is not str or act not in ACTS:
        raise _schema("act", f"must be one of {', '.join(sorted(ACTS))}, not {act!r:.40}")
    task = _optional_string(obj, "task")
    if task is not None and _TASK.fullmatch(task) is None:
        raise _schema("task", "must be 1 to 64 characters of A-Z a-z 0-9 _ -")
    reply_to = _optional_string(obj, "reply_to")
    if reply_to is not None and _ID.fullmatch(reply_to) is None:
        raise _schema("reply_to", "must be an envelope id: 16 to 64 characters of A-Z a-z 0-9 _ -")
    created_at = _timestamp(obj["created_at"], "created_at")
    raw_expiry = obj.get("expires_at")
    expires_at = None if raw_expiry is None else _timestamp(raw_expiry, "expires_at")

    body = obj["body"]
    if type(body) is not dict and not isinstance(body, Mapping):
        raise _schema("body", f"must be an object, not {_type_name(body)}")
    if not body.keys() <= _BODY_MEMBERS:
        for name in body.keys() - _BODY_MEMBERS:
            raise _schema(f"body.{str(name)[:40]}", "is not a member of body (text, parts)")
    text = _string(body, "text", "body.text")
    if act in MESSAGE_ACTS and (not text or text.isspace()):
        raise _schema(
            "body.text", f"must not be empty for act {act!r}; only control acts may have empty text"
        )
    raw_parts = body.get("parts", [])
    if type(raw_parts) is not list:
        raise _schema("body.parts", f"must be an array, not {_type_name(raw_parts)}")
    parts = tuple(_part(part, index) for index, part in enumerate(raw_parts))

    meta = obj.get("meta", {})
    if type(meta) is not dict and not isinstance(meta, Mapping):
        raise _schema("meta", f"must be an object, not {_type_name(meta)}")
    raw_sig = obj["sig"]
    if type(raw_sig) is not dict and not isinstance(raw_sig, Mapping):
        raise _schema("sig", f"must be an object, not {_type_name(raw_sig)}")
    if not raw_sig.keys() <= _SIG_MEMBERS:
        for name in raw_sig.keys() - _SIG_MEMBERS:
            raise _schema(f"sig.{str(name)[:40]}", "is not a member of sig (alg, kid, value)")
    alg = _string(raw_sig, "alg", "sig.alg")
    if alg != SIGNATURE_ALG:
        raise _schema("sig.alg", f"must be {SIGNATURE_ALG!r}, not {alg!r:.40}")
    sig = Signature(alg, _string(raw_sig, "kid", "sig.kid"), _string(raw_sig, "value", "sig.value"))

    sender = _address(obj, "from")
    to = _address(obj, "to")
    return Envelope(
        id=envelope_id,
        sender=sender,  # type: ignore[arg-type]
        to=to,
        task=task,
        reply_to=reply_to,
        act=act,
        created_at=created_at,
        expires_at=expires_at,
        text=text,
        parts=parts,
        meta=meta,
        sig=sig,
        raw=obj,
        canonical=_canonical_of_checked(obj, body, raw_parts, meta),
    )


def _canonical_of_checked(
    obj: Mapping[str, Any], body: Mapping[str, Any], parts: object, meta: Mapping[str, Any]
) -> bytes:
    """`signing_input` for an object `parse` has checked: only the free-form members (meta and
    data parts) still need the plainness walk, which saves most of its cost on the hot path."""
    if (
        type(obj) is dict
        and type(body) is dict
        and type(parts) is list
        and all(
            type(part) is dict and (part["kind"] != "data" or is_plain(part["data"]))
            for part in parts
        )
        and is_plain(meta)
    ):
        return canonicalize_plain({name: value for name, value in obj.items() if name != "sig"})
    return signing_input(obj)


def _address(obj: Mapping[str, object], member: str) -> Address | str:
    value = obj[member]
    if type(value) is not str:
        raise _schema(member, f"must be a string, not {_type_name(value)}")
    try:
        return parse_address(value) if member == "from" else parse_recipient(value)
    except AddressInvalid as exc:
        raise AddressInvalid(f"{member}: {exc.detail}", member=member) from None


def signing_input(obj: Mapping[str, object]) -> bytes:
    """The bytes a signature covers: RFC 8785 of the object minus its `sig` member."""
    return canonicalize({name: value for name, value in obj.items() if name != "sig"})


def sign(unsigned: Mapping[str, object], key: PrivateKey) -> dict[str, object]:
    """Return a copy of the object with a `sig` made by `key` (any existing `sig` replaced)."""
    signature = key.sign(signing_input(unsigned))
    signed = {name: value for name, value in unsigned.items() if name != "sig"}
    signed["sig"] = {"alg": SIGNATURE_ALG, "kid": key.kid, "value": b64url_encode(signature)}
    return signed


def verify(env: Envelope, keys: Mapping[str, KeyState], now: datetime) -> None:
    """Check an envelope's key, signature and time, in the protocol's order.

    Args:
        env: A parsed envelope.
        keys: The sender's keys by kid (only the sender's: a kid of another agent is unknown).
        now: The verifier's clock, timezone-aware.

    Raises:
        UnknownKey, KeyRevoked, SignatureInvalid, ClockSkew, Expired: the first rule broken.
    """
    public, signature = signing_key(env, keys)
    if not public.verify(signature, env.canonical):
        raise bad_signature(env)
    check_clock(env, now)


def signing_key(env: Envelope, keys: Mapping[str, KeyState]) -> tuple[PublicKey, bytes]:
    """`verify`'s first step on its own: the key the envelope names, if it is the sender's,
    not revoked and not weak (no signature under a small-order key proves anything), and the
    signature's 64 bytes. A caller that checks the signature elsewhere (another thread or
    process) checks `public.verify(signature, env.canonical)`, raises `bad_signature(env)` if
    it fails, then calls `check_clock`.

    Raises:
        UnknownKey, KeyRevoked, SignatureInvalid: the first rule broken.
    """
    kid = env.sig.kid
    state = keys.get(kid)
    if state is None:
        raise UnknownKey(
            f"key {kid[:64]!r} is not a key of {env.sender}; register it or sign with one of "
            "the sender's keys",
            kid=kid,
            sender=str(env.sender),
        )
    if state.revoked:
        raise KeyRevoked(
            f"key {kid!r} of {env.sender} is revoked; sign with an active key", kid=kid
        )
    try:
        signature = b64url_decode(env.sig.value)
    except ValueError as exc:
        raise SignatureInvalid(
            f"sig.value is not base64url without padding: {exc}", kid=kid
        ) from None
    if len(signature) != 64:
        raise SignatureInvalid(
            f"sig.value decodes to {len(signature)} bytes; an Ed25519 signature is 64", kid=kid
        )
    if state.public.small_order:
        raise SignatureInvalid(
            f"key {kid!r} of {env.sender} is a small-order (weak) Ed25519 key: anyone can make"
            " signatures that verify with it, so none proves who spoke; add a new key pair and"
            " sign with it",
            kid=kid,
        )
    return state.public, signature


def bad_signature(env: Envelope) -> SignatureInvalid:
    """The refusal of an envelope whose signature does not verify with its key."""
    kid = env.sig.kid
    return SignatureInvalid(
        f"the signature does not verify with key {kid!r} over the RFC 8785 form of the "
        "envelope minus sig; was the envelope changed after signing?",
        kid=kid,
    )


def check_clock(env: Envelope, now: datetime) -> None:
    """`verify`'s last step on its own: the clock window and the expiry.

    Raises:
        ClockSkew, Expired: the first rule broken.
    """
    skew = env.created_at - now
    if abs(skew) > CLOCK_SKEW:
        raise ClockSkew(
            f"created_at is {int(skew.total_seconds())} s from the gateway's clock "
            f"({now.isoformat()}); at most {int(CLOCK_SKEW.total_seconds())} s are allowed",
            skew_seconds=skew.total_seconds(),
        )
    if env.expires_at is not None and env.expires_at <= now:
        raise Expired(
            f"the envelope expired at {env.expires_at.isoformat()}",
            expires_at=env.expires_at.isoformat(),
        )


__all__ = [
    "ACTS",
    "CLOCK_SKEW",
    "MAX_PARTS",
    "MAX_REQUEST_BYTES",
    "MAX_TEXT_BYTES",
    "PROTOCOL",
    "REPLAY_WINDOW",
    "Envelope",
    "IdentityError",
    "KeyState",
    "Signature",
    "bad_signature",
    "check_clock",
    "check_size",
    "parse",
    "parse_json",
    "sign",
    "signing_input",
    "signing_key",
    "verify",
]
