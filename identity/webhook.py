"""Standard Webhooks signatures, asymmetric scheme `v1a` (PROTOCOL section 6).

The signed content is `"<webhook-id>.<webhook-timestamp>.<body>"`; the header value is
`v1a,<standard base64 with padding of the Ed25519 signature>`. A header may list several
space-separated signatures (for example during a key rotation); any one that verifies with any
of the gateway's keys is enough. Entries of other schemes (`v1,` HMAC) are ignored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import datetime

from identity.keys import PrivateKey, PublicKey

SCHEME = "v1a"
DEFAULT_TOLERANCE = 300


def _signed_content(webhook_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{webhook_id}.{timestamp}.".encode() + body


def sign_webhook(key: PrivateKey, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one delivery."""
    signature = key.sign(_signed_content(webhook_id, timestamp, body))
    return f"{SCHEME}," + base64.b64encode(signature).decode("ascii")


def verify_webhook(
    keys: Iterable[PublicKey],
    webhook_id: str,
    timestamp: int,
    body: bytes,
    header: str,
    now: datetime | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> bool:
    """Tell whether any `v1a` signature in `header` verifies with any key.

    When `now` is given, a timestamp more than `tolerance` seconds away from it fails too,
    which bounds how long a captured delivery can be replayed.
    """
    if now is not None and abs(now.timestamp() - timestamp) > tolerance:
        return False
    content = _signed_content(webhook_id, timestamp, body)
    candidates = list(keys)
    for entry in header.split():
        scheme, _, encoded = entry.partition(",")
        if scheme != SCHEME:
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if any(key.verify(signature, content) for key in candidates):
            return True
    return False
