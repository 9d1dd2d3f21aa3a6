"""Keys: JWK validation, thumbprints, signing, key files, and strict base64url."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from identity.b64 import b64url_decode, b64url_encode
from identity.errors import KeyInvalid
from identity.keys import PrivateKey, PublicKey, thumbprint

SEED = bytes(range(32))


@given(st.binary(max_size=100))
def test_b64url_round_trip(data: bytes) -> None:
    """Encoding then decoding gives the bytes back, with no padding in the text."""
    text = b64url_encode(data)
    assert "=" not in text
    assert b64url_decode(text) == data


@pytest.mark.parametrize("text", ["A", "AA==", "AA=", "AA+/", "AR", "a b", "AAA\n", "é"])
def test_b64url_refuses_non_canonical_text(text: str) -> None:
    """Padding, foreign characters, impossible lengths and stray bits are ValueErrors."""
    with pytest.raises(ValueError):
        b64url_decode(text)


def test_seed_gives_stable_key_and_signature() -> None:
    """The same seed gives the same kid and a signature that verifies (and only over its data)."""
    key = PrivateKey.from_seed(SEED)
    assert key == PrivateKey.from_seed(SEED)
    assert key.kid == key.public.kid == thumbprint(key.public.jwk)
    signature = key.sign(b"hello")
    assert len(signature) == 64
    assert key.public.verify(signature, b"hello")
    assert not key.public.verify(signature, b"hellO")
    assert not key.public.verify(signature[:63], b"hello")
    assert repr(key) == f"PrivateKey(kid={key.kid!r})"  # never the seed


def test_generated_keys_differ() -> None:
    """Two generated keys have different kids."""
    assert PrivateKey.generate().kid != PrivateKey.generate().kid


def test_public_jwk_round_trip() -> None:
    """A public key survives JWK and raw-bytes round trips and compares equal."""
    public = PrivateKey.from_seed(SEED).public
    assert set(public.jwk) == {"kty", "crv", "x"}
    assert PublicKey.from_jwk(public.jwk) == public
    assert PublicKey.from_bytes(public.raw) == public
    assert hash(PublicKey.from_bytes(public.raw)) == hash(public)


@pytest.mark.parametrize(
    ("jwk", "problem"),
    [
        ({"kty": "EC", "crv": "Ed25519", "x": "AA"}, '"kty" must be "OKP"'),
        ({"kty": "OKP", "crv": "X25519", "x": "AA"}, '"crv" must be "Ed25519"'),
        ({"kty": "OKP", "crv": "Ed25519"}, '"x" is missing'),
        ({"kty": "OKP", "crv": "Ed25519", "x": 5}, '"x" is missing or not a string'),
        ({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, "decodes to 3 bytes"),
        ({"kty": "OKP", "crv": "Ed25519", "x": "A" * 42 + "=="}, "not base64url"),
    ],
)
def test_bad_public_jwk_names_the_member(jwk: dict[str, object], problem: str) -> None:
    """An unusable JWK raises key_invalid with a detail naming the member."""
    with pytest.raises(KeyInvalid) as caught:
        PublicKey.from_jwk(jwk)
    assert caught.value.code == "key_invalid"
    assert problem in caught.value.detail


def test_non_object_jwk_is_key_invalid() -> None:
    """A JWK that is not an object is key_invalid."""
    with pytest.raises(KeyInvalid, match="JSON object"):
        PublicKey.from_jwk("not a jwk")  # type: ignore[arg-type]


def test_private_jwk_round_trip_and_mismatch() -> None:
    """A private JWK loads back; an x that is not d's public key is refused."""
    key = PrivateKey.from_seed(SEED)
    jwk = key.to_jwk()
    assert set(jwk) == {"kty", "crv", "x", "d"}
    assert PrivateKey.from_jwk(jwk) == key
    other = PrivateKey.from_seed(bytes(32)).public.jwk["x"]
    with pytest.raises(KeyInvalid, match='"x" is not the public key of "d"'):
        PrivateKey.from_jwk({**jwk, "x": other})


def test_seed_must_be_32_bytes() -> None:
    """A seed of the wrong length is key_invalid."""
    with pytest.raises(KeyInvalid, match="32 bytes"):
        PrivateKey.from_seed(b"short")


def test_save_writes_0600_and_load_reads_back(tmp_path: Path) -> None:
    """save writes a 0600 JSON private JWK that load reads back to the same key."""
    path = tmp_path / "agent.jwk"
    key = PrivateKey.from_seed(SEED)
    key.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["d"] == key.to_jwk()["d"]
    assert PrivateKey.load(path) == key


def test_save_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    """An existing key file is kept unless overwrite=True, which replaces it (still 0600)."""
    path = tmp_path / "agent.jwk"
    first, second = PrivateKey.from_seed(SEED), PrivateKey.from_seed(bytes(32))
    first.save(path)
    with pytest.raises(KeyInvalid, match="already exists"):
        second.save(path)
    assert PrivateKey.load(path) == first
    os.chmod(path, 0o644)
    second.save(path, overwrite=True)
    assert PrivateKey.load(path) == second
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def _race_to_save(path: Path, keys: list[PrivateKey]) -> tuple[list[str], list[str]]:
    """Each key saved to `path` from a thread of its own, all at once, while one more thread
    loads the file whenever it exists: (each save's outcome, its kid or the refusal's detail;
    each load's outcome, the kid read or the refusal's detail)."""
    start = threading.Barrier(len(keys) + 1)
    saved: list[str] = []
    loaded: list[str] = []

    def save(key: PrivateKey) -> None:
        start.wait()
        try:
            key.save(path)
            saved.append(key.public.kid)
        except KeyInvalid as refused:
            saved.append(refused.detail)

    def load() -> None:
        start.wait()
        for _ in range(200):
            if path.exists():
                try:
                    loaded.append(PrivateKey.load(path).public.kid)
                except KeyInvalid as refused:  # an empty or half-written file
                    loaded.append(refused.detail)

    threads = [threading.Thread(target=save, args=(key,)) for key in keys]
    threads.append(threading.Thread(target=load))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return saved, loaded


def test_a_key_file_saved_by_many_at_once_is_whole_and_made_once(tmp_path: Path) -> None:
    """Writers racing on one path (replicas starting together on a shared key file): one
    makes it, the others are refused, and a reader at any moment sees no file or a whole key,
    never an empty or half-written one; no temporary file is left beside it."""
    for attempt in range(30):
        path = tmp_path / f"race-{attempt}" / "gateway.jwk"
        path.parent.mkdir()
        keys = [PrivateKey.generate() for _ in range(6)]
        saved, loaded = _race_to_save(path, keys)
        made = [kid for kid in saved if kid in {key.public.kid for key in keys}]
        assert len(made) == 1 and len(saved) == len(keys)
        assert all("already exists" in outcome for outcome in saved if outcome not in made)
        assert set(loaded) <= set(made), set(loaded) - set(made)
        assert PrivateKey.load(path).public.kid == made[0]
        assert [p.name for p in path.parent.iterdir()] == [path.name]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read key file"),
        (b"not json", "is not JSON"),
        (b"\xff\xfe", "is not JSON"),
        (b"[1, 2]", "must hold a JSON object"),
        (b'{"kty": "OKP", "crv": "Ed25519", "x": "AA"}', 'the JWK member "d" is missing'),
        (b'{"kty": "OKP", "crv": "Ed25519", "d": "AAAA"}', "decodes to 3 bytes"),
    ],
)
def test_load_names_the_problem(tmp_path: Path, content: bytes | None, problem: str) -> None:
    """Unreadable, non-JSON and wrongly shaped key files give key_invalid naming the problem."""
    path = tmp_path / "key.jwk"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(KeyInvalid) as caught:
        PrivateKey.load(path)
    assert problem in caught.value.detail
    assert str(path) in caught.value.detail
