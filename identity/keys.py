"""Ed25519 keys as JWKs, their RFC 7638 thumbprints (the protocol's `kid`), and key files.

`PublicKey` is immutable and cheap to keep: it holds the loaded `cryptography` key and its kid,
so a verifier that caches `PublicKey` objects pays neither the load nor the thumbprint again.
Key files are the one place this package touches the file system, because their format (a
private JWK in a 0600 JSON file) is part of what identity defines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from identity import edwards25519
from identity.b64 import b64url_decode, b64url_encode
from identity.errors import KeyInvalid

KEY_BYTES = 32
SIGNATURE_BYTES = 64

StrPath = str | os.PathLike[str]


def thumbprint(jwk: Mapping[str, object]) -> str:
    """RFC 7638 thumbprint of an Ed25519 public JWK: the protocol's key id.

    Raises:
        KeyInvalid: the JWK is not a valid Ed25519 public key.
    """
    return PublicKey.from_jwk(jwk).kid


def _thumbprint_of_x(x: str) -> str:
    """Hash the required members in lexical order, compact, as RFC 7638 section 3.2 asks."""
    text = '{"crv":"Ed25519","kty":"OKP","x":"' + x + '"}'
    return b64url_encode(hashlib.sha256(text.encode("ascii")).digest())


def _decode_member(jwk: Mapping[str, object], name: str) -> bytes:
    """Decode a 32-byte base64url member of a JWK, naming it in any error."""
    value = jwk.get(name)
    if not isinstance(value, str):
        raise KeyInvalid(f'the JWK member "{name}" is missing or not a string', member=name)
    try:
        raw = b64url_decode(value)
    except ValueError as exc:
        raise KeyInvalid(f'the JWK member "{name}" is not base64url: {exc}', member=name) from None
    if len(raw) != KEY_BYTES:
        raise KeyInvalid(
            f'the JWK member "{name}" decodes to {len(raw)} bytes; Ed25519 needs {KEY_BYTES}',
            member=name,
        )
    return raw


def _check_okp(jwk: object) -> Mapping[str, object]:
    """Check the members every Ed25519 JWK shares: `kty` OKP and `crv` Ed25519."""
    if not isinstance(jwk, Mapping):
        raise KeyInvalid(f"a JWK must be a JSON object, not {type(jwk).__name__}")
    if jwk.get("kty") != "OKP":
        raise KeyInvalid(f'the JWK member "kty" must be "OKP", not {jwk.get("kty")!r}')
    if jwk.get("crv") != "Ed25519":
        raise KeyInvalid(f'the JWK member "crv" must be "Ed25519", not {jwk.get("crv")!r}')
    return jwk


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key. Equal when the raw 32 bytes are equal.

    `small_order` tells a weak key: a point of small order, under which anyone can make
    signatures that verify for any message without a private key (`identity.edwards25519`).
    Such a key still loads (one stored before registration refused them keeps its agent
    readable), but `verify` accepts no signature under it, as libsodium does not.
    """

    raw: bytes
    kid: str = field(init=False, compare=False)
    small_order: bool = field(init=False, compare=False)
    _key: Ed25519PublicKey = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != KEY_BYTES:
            raise KeyInvalid(f"an Ed25519 public key is {KEY_BYTES} bytes")
        object.__setattr__(self, "kid", _thumbprint_of_x(b64url_encode(self.raw)))
        object.__setattr__(self, "small_order", edwards25519.small_order(self.raw))
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.raw))

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicKey:
        """Wrap 32 raw public key bytes."""
        return cls(bytes(raw))

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, object]) -> PublicKey:
        """Load `{"kty":"OKP","crv":"Ed25519","x":...}`; other members are ignored.

        Raises:
            KeyInvalid: naming the member that is missing or wrong.
        """
        return cls(_decode_member(_check_okp(jwk), "x"))

    @property
    def jwk(self) -> dict[str, str]:
        """The public JWK with exactly the members the protocol publishes."""
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(self.raw)}

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Tell whether `signature` is this key's Ed25519 signature over `data` (never, under
        a small-order key: such a signature proves nothing)."""
        if self.small_order or len(signature) != SIGNATURE_BYTES:
            return False
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class PrivateKey:
    """An Ed25519 private key (its 32-byte seed). Its repr never shows the seed."""

    __slots__ = ("_key", "_seed", "public")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != KEY_BYTES:
            raise KeyInvalid(f"an Ed25519 private key seed is {KEY_BYTES} bytes")
        self._seed = seed
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public = PublicKey(public)

    def __repr__(self) -> str:
        return f"PrivateKey(kid={self.kid!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PrivateKey):
            return NotImplemented
        return self._seed == other._seed

    def __hash__(self) -> int:
        return hash(self.public)

    @classmethod
    def generate(cls) -> PrivateKey:
        """A new random key from the operating system's CSPRNG."""
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        """The key of a 32-byte seed (RFC 8032's private key); deterministic, for tests too."""
        return cls(bytes(seed))

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, object]) -> PrivateKey:
        """Load a private JWK (`d` is the seed); a present `x` must match it.

        Raises:
            KeyInvalid: naming the member that is missing or wrong.
        """
        key = cls(_decode_member(_check_okp(jwk), "d"))
        if "x" in jwk and _decode_member(jwk, "x") != key.public.raw:
            raise KeyInvalid('the JWK member "x" is not the public key of "d"', member="x")
        return key

    @property
    def kid(self) -> str:
        """The key id (RFC 7638 thumbprint) of the public half."""
        return self.public.kid

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `data` (deterministic)."""
        return self._key.sign(data)

    def to_jwk(self) -> dict[str, str]:
        """The private JWK: the public members plus `d`, the base64url seed."""
        return {**self.public.jwk, "d": b64url_encode(self._seed)}

    def save(self, path: StrPath, *, overwrite: bool = False) -> None:
        """Write the private JWK as JSON to a file readable by its owner only (mode 0600).

        Refuses to replace an existing file unless `overwrite` is true, so a typo cannot
        destroy a key that an agent is registered with. The file appears whole or not at all:
        the JWK is written to a temporary file beside it, then linked (or, with `overwrite`,
        renamed) into place, so a process reading it meanwhile, such as a replica starting at
        the same time on a shared key file, never reads half a key.

        Raises:
            KeyInvalid: the file exists (and `overwrite` is false) or cannot be written.
        """
        name = os.fspath(path)
        text = json.dumps(self.to_jwk(), indent=2) + "\n"
        try:
            # mkstemp makes the file with mode 0600, in the target's folder (same file system).
            fd, temporary = tempfile.mkstemp(
                dir=os.path.dirname(os.path.abspath(name)), prefix=".key-", suffix=".tmp"
            )
        except OSError as exc:
            raise KeyInvalid(
                f"cannot create key file {name!r}: {exc.strerror}", path=name
            ) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                os.replace(temporary, name)
            else:
                os.link(temporary, name)  # fails if the name exists, as O_EXCL would
        except FileExistsError:
            raise KeyInvalid(
                f"key file {name!r} already exists; refusing to overwrite it", path=name
            ) from None
        except OSError as exc:
            raise KeyInvalid(
                f"cannot create key file {name!r}: {exc.strerror}", path=name
            ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)  # gone already after a rename

    @classmethod
    def load(cls, path: StrPath) -> PrivateKey:
        """Read a key file written by `save`.

        Raises:
            KeyInvalid: the file is unreadable, not JSON, or not a private Ed25519 JWK.
        """
        name = os.fspath(path)
        try:
            with open(path, "rb") as handle:
                data = handle.read(64 * 1024 + 1)
        except OSError as exc:
            raise KeyInvalid(f"cannot read key file {name!r}: {exc.strerror}", path=name) from None
        if len(data) > 64 * 1024:
            raise KeyInvalid(f"key file {name!r} is too large to be a JWK", path=name)
        try:
            jwk: Any = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise KeyInvalid(f"key file {name!r} is not JSON: {exc}", path=name) from None
        if not isinstance(jwk, dict):
            raise KeyInvalid(f"key file {name!r} must hold a JSON object (a JWK)", path=name)
        if "d" not in jwk:
            raise KeyInvalid(
                f'key file {name!r} holds no private key (the JWK member "d" is missing)',
                path=name,
            )
        try:
            return cls.from_jwk(jwk)
        except KeyInvalid as exc:
            raise KeyInvalid(f"key file {name!r}: {exc.detail}", path=name) from None
