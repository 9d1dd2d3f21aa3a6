"""The pipe format between the gateway and a signature worker (`gateway.signatures.frames`),
and the worker's loop (`gateway.signatures.worker`): in this process on byte streams, and as
the real `python -m gateway.signatures.worker` process the gateway starts."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import pytest

from gateway.signatures.frames import (
    COUNT,
    INVALID,
    MAX_BATCH,
    VALID,
    encode_batch,
    encode_check,
    read_batch,
)
from gateway.signatures.worker import serve
from identity.keys import PrivateKey

WORKER = [sys.executable, "-m", "gateway.signatures.worker"]


def _signed(key: PrivateKey, data: bytes) -> tuple[bytes, bytes, bytes]:
    """A check that verifies: `key`'s raw public key, its signature over `data`, `data`."""
    return key.public.raw, key.sign(data), data


def _stream(*batches: list[tuple[bytes, bytes, bytes]]) -> bytes:
    return b"".join(encode_batch([encode_check(*check) for check in batch]) for batch in batches)


# Frames ------------------------------------------------------------------------------------


def test_a_batch_reads_back_as_written():
    """Several checks, one with no signed bytes and one of a mebibyte, read back exactly,
    in order; the stream then ends cleanly (None)."""
    key, other = PrivateKey.generate(), PrivateKey.generate()
    checks = [
        _signed(key, b"first"),
        _signed(other, b""),
        _signed(key, os.urandom(1024 * 1024)),
        (other.public.raw, bytes(64), b"\x00\x01\xff"),
    ]
    read = io.BytesIO(_stream(checks)).read
    assert read_batch(read) == checks
    assert read_batch(read) is None


def test_batches_follow_one_another_in_one_stream():
    """Three batches (one empty) written back to back come out as three batches in order."""
    key = PrivateKey.generate()
    batches = [
        [_signed(key, b"a"), _signed(key, b"b")],
        [],
        [_signed(key, bytes([n]) * n) for n in range(MAX_BATCH)],
    ]
    read = io.BytesIO(_stream(*batches)).read
    assert [read_batch(read) for _ in batches] == batches
    assert read_batch(read) is None


def test_a_frame_has_the_documented_layout():
    """u32 little-endian count, then per check key (32), signature (64), u32 little-endian
    length and the bytes: the layout both ends rely on."""
    key = PrivateKey.generate()
    public, signature, data = _signed(key, b"hello")
    frame = encode_batch([encode_check(public, signature, data)])
    assert frame == (
        (1).to_bytes(4, "little") + public + signature + len(data).to_bytes(4, "little") + data
    )


def test_an_empty_stream_is_a_clean_end():
    """No bytes at all: no batch, and no error."""
    assert read_batch(io.BytesIO(b"").read) is None


def test_a_stream_cut_anywhere_inside_a_batch_is_eof_error():
    """Every cut of a two-check batch, from one byte to one byte short (inside the count, a
    check's key, signature or length, or its signed bytes), raises EOFError."""
    key = PrivateKey.generate()
    frame = _stream([_signed(key, b"some signed bytes"), _signed(key, b"more")])
    for cut in range(1, len(frame)):
        with pytest.raises(EOFError):
            read_batch(io.BytesIO(frame[:cut]).read)


def test_a_cut_after_a_whole_batch_fails_on_the_next_one_only():
    """A whole batch followed by half of another: the first reads, the second is EOFError."""
    key = PrivateKey.generate()
    whole = _stream([_signed(key, b"one")])
    half = _stream([_signed(key, b"two")])[:-2]
    read = io.BytesIO(whole + half).read
    assert read_batch(read) == [_signed(key, b"one")]
    with pytest.raises(EOFError):
        read_batch(read)


@pytest.mark.parametrize(
    ("key_length", "signature_length"), [(31, 64), (33, 64), (32, 63), (32, 65), (0, 0)]
)
def test_encode_check_refuses_wrong_key_or_signature_lengths(key_length, signature_length):
    """A key that is not 32 bytes or a signature that is not 64 is refused, not padded."""
    with pytest.raises(ValueError, match="32-byte key and a 64-byte signature"):
        encode_check(b"k" * key_length, b"s" * signature_length, b"data")


# The worker's loop, in this process ---------------------------------------------------------


def _serve(stream: bytes) -> bytes:
    sink = io.BytesIO()
    serve(io.BytesIO(stream), sink)
    return sink.getvalue()


def test_serve_answers_one_for_each_good_signature_and_zero_for_each_bad_one():
    """In one batch: good signatures answer 1; a tampered message, another key's signature,
    a flipped signature bit, a signature of zeros and keys that are not the signer's (all
    32-byte strings are accepted as keys, so these are key/signature mismatches) answer 0."""
    alice, bob = PrivateKey.generate(), PrivateKey.generate()
    good = alice.sign(b"pay 10")
    flipped = bytes([good[0] ^ 1]) + good[1:]
    batch = [
        _signed(alice, b"pay 10"),  # 1
        (alice.public.raw, good, b"pay 1000"),  # tampered message
        (alice.public.raw, bob.sign(b"pay 10"), b"pay 10"),  # another key's signature
        (alice.public.raw, flipped, b"pay 10"),  # one bit off
        (alice.public.raw, bytes(64), b"pay 10"),  # zeros
        (bob.public.raw, good, b"pay 10"),  # the right signature under the wrong key
        (b"\xff" * 32, good, b"pay 10"),  # not a canonical point
        (bytes(range(32)), good, b"pay 10"),  # 32 arbitrary bytes
        _signed(bob, b""),  # 1: empty signed bytes
        _signed(bob, os.urandom(300_000)),  # 1: large signed bytes
    ]
    assert list(_serve(_stream(batch))) == [
        VALID,
        INVALID,
        INVALID,
        INVALID,
        INVALID,
        INVALID,
        INVALID,
        INVALID,
        VALID,
        VALID,
    ]


def test_serve_answers_batches_in_order_one_byte_per_check():
    """Four batches of different sizes (one empty) get exactly one byte per check, batch after
    batch in the order sent, with the same keys seen again in later batches."""
    keys = [PrivateKey.generate() for _ in range(3)]
    batches = []
    expected = bytearray()
    for size in (1, 0, 7, MAX_BATCH):
        batch = []
        for n in range(size):
            key = keys[n % 3]
            data = f"batch {size} check {n}".encode()
            if n % 3 == 1:
                batch.append((key.public.raw, key.sign(data), data + b"!"))
                expected.append(INVALID)
            else:
                batch.append(_signed(key, data))
                expected.append(VALID)
        batches.append(batch)
    assert _serve(_stream(*batches)) == bytes(expected)


def test_serve_ends_at_a_clean_end_and_raises_inside_a_batch():
    """An empty stream ends `serve` with nothing written; a stream cut inside its second batch
    raises EOFError after the first batch's answer was written."""
    assert _serve(b"") == b""
    key = PrivateKey.generate()
    stream = _stream([_signed(key, b"one")], [_signed(key, b"two")])
    sink = io.BytesIO()
    with pytest.raises(EOFError):
        serve(io.BytesIO(stream[:-1]), sink)
    assert sink.getvalue() == bytes([VALID])


def test_serve_reads_a_source_that_gives_one_byte_at_a_time():
    """A pipe may hand over fewer bytes than asked: a source that returns one byte per read
    still yields whole batches and the right answers."""

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            chunk, self.data = self.data[:1], self.data[1:]
            return chunk

    key = PrivateKey.generate()
    stream = _stream(
        [_signed(key, b"a"), (key.public.raw, key.sign(b"a"), b"b")], [_signed(key, b"c")]
    )
    sink = io.BytesIO()
    serve(Trickle(stream), sink)  # type: ignore[arg-type]
    assert sink.getvalue() == bytes([VALID, INVALID, VALID])


# The worker process -------------------------------------------------------------------------


def test_the_worker_process_answers_on_stdout_and_exits_zero_at_stdin_eof():
    """`python -m gateway.signatures.worker` answers two batches on stdout and exits 0 when
    its stdin ends."""
    key, other = PrivateKey.generate(), PrivateKey.generate()
    stream = _stream(
        [_signed(key, b"x"), (key.public.raw, other.sign(b"x"), b"x")], [_signed(other, b"y")]
    )
    done = subprocess.run(WORKER, input=stream, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == bytes([VALID, INVALID, VALID])


def test_the_worker_process_exits_one_when_its_input_ends_inside_a_batch():
    """A gateway that died mid-write: the worker answers the whole batch it had and exits 1."""
    key = PrivateKey.generate()
    stream = _stream([_signed(key, b"x")], [_signed(key, b"y")])
    done = subprocess.run(WORKER, input=stream[:-3], capture_output=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stdout == bytes([VALID])


def test_the_worker_process_ignores_sigint():
    """SIGINT (a Ctrl-C reaching the gateway's process group) does not end the worker: it
    answers a batch after it, then exits 0 at stdin's end."""
    key = PrivateKey.generate()
    with subprocess.Popen(WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as process:
        assert process.stdin is not None and process.stdout is not None
        # One answer first: main() has installed its handler by the time it answers.
        process.stdin.write(_stream([_signed(key, b"before")]))
        process.stdin.flush()
        assert process.stdout.read(1) == bytes([VALID])
        process.send_signal(signal.SIGINT)
        process.stdin.write(_stream([_signed(key, b"after"), (bytes(range(32)), bytes(64), b"")]))
        process.stdin.flush()
        assert process.stdout.read(2) == bytes([VALID, INVALID])
        process.stdin.close()
        assert process.wait(timeout=60) == 0


def test_an_empty_batch_is_its_count_alone():
    """An empty batch is just its count (the gateway never sends one, but the format allows
    it) and the worker answers it with no bytes."""
    assert encode_batch([]) == COUNT.pack(0) == bytes(4)
    assert _serve(encode_batch([])) == b""
