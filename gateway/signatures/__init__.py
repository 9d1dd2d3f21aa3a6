"""Where the gateway checks Ed25519 signatures: on the event loop, or in worker processes.

A signature check is the largest single cost of accepting an envelope (a fifth to a quarter
of the event loop's time per envelope in `bench.messages`, by machine), and the only one
that needs nothing of the gateway's state: a public key, 64 bytes of signature and the
signed bytes. The event loop runs everything else of a request on one core, so the gateway
hands signature checks to worker processes (`SWITCHBOARD_VERIFY_WORKERS`), which use the
machine's other cores. Threads would not do: a checking thread needs the interpreter lock
back after every check, and the busy event loop holds it. Both kinds answer the same
question through `SignatureChecks`; the acceptance rules and their order stay
`identity.envelope`'s (`signing_key`, the check, `check_clock`).
"""

from __future__ import annotations

from typing import Protocol

from identity.keys import PublicKey


class SignatureChecks(Protocol):
    """Answers whether `signature` is `public`'s Ed25519 signature over `data`."""

    async def start(self) -> None: ...

    async def check(self, public: PublicKey, signature: bytes, data: bytes) -> bool: ...

    async def close(self) -> None: ...


class InlineChecks:
    """Checks on the caller's thread (`SWITCHBOARD_VERIFY_WORKERS=0`)."""

    async def start(self) -> None:
        return None

    async def check(self, public: PublicKey, signature: bytes, data: bytes) -> bool:
        return public.verify(signature, data)

    async def close(self) -> None:
        return None


__all__ = ["InlineChecks", "SignatureChecks"]
