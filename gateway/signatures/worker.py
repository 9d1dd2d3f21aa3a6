"""A signature worker: `python -m gateway.signatures.worker`, started by the gateway.

It reads batches of checks on stdin and answers each on stdout (`frames`), until stdin ends,
which is also what happens when the gateway stops or dies. It ignores SIGINT and SIGTERM: a
Ctrl-C in the gateway's terminal, or a service manager stopping it, reaches the whole process
group, and the gateway, still draining its requests, ends its workers itself.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import BinaryIO

from gateway.signatures.frames import INVALID, VALID, read_batch
from identity.errors import KeyInvalid
from identity.keys import PublicKey

KEYS_KEPT = 10_000  # parsed public keys remembered (senders' keys repeat)


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """Answer every batch on `source` on `sink`, until `source` ends."""
    keys: dict[bytes, PublicKey | None] = {}
    while (batch := read_batch(_reader(source))) is not None:
        answers = bytearray(len(batch))
        for index, (raw, signature, data) in enumerate(batch):
            if raw in keys:
                public = keys[raw]
            else:
                if len(keys) >= KEYS_KEPT:
                    keys.clear()
                try:
                    public = keys[raw] = PublicKey(raw)
                except KeyInvalid:
                    public = keys[raw] = None
            verified = public is not None and public.verify(signature, data)
            answers[index] = VALID if verified else INVALID
        sink.write(answers)
        sink.flush()


def _reader(source: BinaryIO) -> Callable[[int], bytes]:
    def read(size: int) -> bytes:
        chunks = []
        while size > 0:
            chunk = source.read(size)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    return read


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except (EOFError, BrokenPipeError):
        return 1  # the gateway went away mid-batch: nobody waits for the answer
    return 0


if __name__ == "__main__":
    sys.exit(main())
