"""The pipe format between the gateway and a signature worker (`gateway.signatures.worker`).

The gateway writes batches; the worker answers each batch, in order, with one byte per check:
1 when the signature verifies, 0 when it does not. A batch is a little-endian u32 count, then
per check its 32-byte public key, its 64-byte signature, the u32 length of the signed bytes
and those bytes. Both ends are this repository's code, started together: the format has no
version.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

COUNT = struct.Struct("<I")
CHECK = struct.Struct("<32s64sI")  # public key, signature, length of the signed bytes
VALID, INVALID = 1, 0
MAX_BATCH = 256  # checks per batch
MAX_BATCH_BYTES = 1 << 20  # signed bytes per batch, unless one check alone is more


def encode_check(public: bytes, signature: bytes, data: bytes) -> bytes:
    """One check as it travels inside a batch."""
    if len(public) != 32 or len(signature) != 64:
        raise ValueError("an Ed25519 check needs a 32-byte key and a 64-byte signature")
    return CHECK.pack(public, signature, len(data)) + data


def encode_batch(checks: list[bytes]) -> bytes:
    """A batch of `encode_check` results."""
    return COUNT.pack(len(checks)) + b"".join(checks)


def read_batch(read: Callable[[int], bytes]) -> list[tuple[bytes, bytes, bytes]] | None:
    """The next batch from `read` (a blocking read of exactly n bytes, short only at the end
    of the stream); None at a clean end before a batch.

    Raises:
        EOFError: The stream ended inside a batch.
    """
    head = read(COUNT.size)
    if not head:
        return None
    (count,) = COUNT.unpack(_exactly(head, COUNT.size))
    checks = []
    for _ in range(count):
        public, signature, length = CHECK.unpack(_exactly(read(CHECK.size), CHECK.size))
        checks.append((public, signature, _exactly(read(length), length)))
    return checks


def _exactly(chunk: bytes, size: int) -> bytes:
    if len(chunk) != size:
        raise EOFError(f"the stream ended {size - len(chunk)} bytes short of a whole batch")
    return chunk
