"""The identity error family.

Every failure the identity layer can report is an `IdentityError` whose class attribute `code`
is the protocol's error code (PROTOCOL.md) and whose `detail` tells a person what to fix. No
HTTP status lives here: the gateway maps codes to statuses in one table.

    IdentityError
    ├── AddressInvalid     address_invalid     an address or domain is malformed
    ├── InvalidJson        invalid_json        bytes are not one strict JSON document
    │   └── JsonBeyondLimits                   valid JSON beyond what the gateway reads
    ├── SchemaInvalid      schema_invalid      JSON of the wrong shape
    ├── PayloadTooLarge    payload_too_large   body, text or parts over the limits
    ├── UnknownKey         unknown_key         the kid is not one of the sender's keys
    ├── KeyRevoked         key_revoked         the kid names a revoked key
    ├── SignatureInvalid   signature_invalid   the signature does not verify
    ├── ClockSkew          clock_skew          created_at too far from the verifier's clock
    ├── Expired            expired             expires_at has passed
    ├── TokenInvalid       unauthorized        an agent JWT is malformed or does not verify
    └── KeyInvalid         key_invalid         a JWK or key file is unusable
"""

from __future__ import annotations

from typing import ClassVar


class IdentityError(Exception):
    """Base of the family; carries the protocol `code`, a human `detail` and structured fields.

    Args:
        detail: One sentence telling a person what is wrong and, where it helps, what to fix.
        **fields: Structured context (for example `member="from"`) for logs and problem bodies.
    """

    code: ClassVar[str] = "identity_error"

    def __init__(self, detail: str, **fields: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields: dict[str, object] = dict(fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, detail={self.detail!r})"


class AddressInvalid(IdentityError):
    """An address or domain does not match section 1 of the protocol."""

    code = "address_invalid"


class InvalidJson(IdentityError):
    """The bytes are not one strict JSON document (syntax, encoding, duplicates, NaN)."""

    code = "invalid_json"


class JsonBeyondLimits(InvalidJson):
    """Valid JSON that the gateway does not read: an integer of more digits than Python
    converts, or nesting deeper than `identity.json_text.MAX_DEPTH`. Its code is still
    `invalid_json`; the class lets a reader of a remote answer tell it from mere non-JSON."""


class SchemaInvalid(IdentityError):
    """Valid JSON that is not the shape the protocol asks for."""

    code = "schema_invalid"


class PayloadTooLarge(IdentityError):
    """The request body, the text or the number of parts is over the protocol's limits."""

    code = "payload_too_large"


class UnknownKey(IdentityError):
    """The signature names a key id that is not one of the sender's keys."""

    code = "unknown_key"


class KeyRevoked(IdentityError):
    """The signature names a key that was revoked: it never verifies again."""

    code = "key_revoked"


class SignatureInvalid(IdentityError):
    """The signature is malformed or does not verify over the canonical bytes."""

    code = "signature_invalid"


class ClockSkew(IdentityError):
    """`created_at` is further than the allowed skew from the verifier's clock."""

    code = "clock_skew"


class Expired(IdentityError):
    """`expires_at` is not in the future."""

    code = "expired"


class TokenInvalid(IdentityError):
    """An agent bearer token is malformed, expired, for another audience or badly signed."""

    code = "unauthorized"


class KeyInvalid(IdentityError):
    """A JWK or a key file is unreadable or not an Ed25519 key of the expected shape."""

    code = "key_invalid"
