"""`switchboard keys | envelope | token`, run as real subprocesses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from identity.envelope import KeyState
from identity.keys import PrivateKey
from identity.tokens import verify_agent_token

REPO_ROOT = Path(__file__).resolve().parents[2]
UNSIGNED = {
    "v": "switchboard/1",
    "id": "01JDZ4Q6W5M8X0B7K3N2R9T1VE",
    "from": "alice@people.example",
    "to": "sonos.example",
    "task": None,
    "reply_to": None,
    "act": "say",
    "created_at": "2026-11-26T06:10:00.000Z",
    "expires_at": None,
    "body": {"text": "Hello there.", "parts": []},
    "meta": {},
}
NOW = "2026-11-26T06:10:30Z"


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        input=stdin,
        capture_output=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
    )


def ok_json(result: subprocess.CompletedProcess[bytes]) -> Any:
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[bytes], problem: str) -> None:
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("switchboard: error: ")
    assert problem in err


@pytest.fixture()
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "alice.jwk"
    ok_json(run("keys", "new", "--out", str(path)))
    return path


def test_keys_new_and_show(tmp_path: Path) -> None:
    """keys new writes a 0600 private key and prints its kid and public JWK; show agrees."""
    path = tmp_path / "k.jwk"
    created = ok_json(run("keys", "new", "--out", str(path)))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert set(created["jwk"]) == {"kty", "crv", "x"}
    assert created["kid"] == PrivateKey.load(path).kid
    assert ok_json(run("keys", "show", str(path))) == created


def test_keys_new_refuses_to_overwrite(key_file: Path) -> None:
    """A second keys new on the same path fails and leaves the key unchanged."""
    before = key_file.read_bytes()
    one_line_error(run("keys", "new", "--out", str(key_file)), "already exists")
    assert key_file.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read key file"), (b"{oops", "is not JSON"), (b"[]", "JSON object")],
)
def test_keys_show_bad_files(tmp_path: Path, content: bytes | None, problem: str) -> None:
    """Unreadable or malformed key files give a one-line error, no traceback."""
    path = tmp_path / "bad.jwk"
    if content is not None:
        path.write_bytes(content)
    one_line_error(run("keys", "show", str(path)), problem)


def test_sign_then_verify(key_file: Path, tmp_path: Path) -> None:
    """envelope sign output verifies with envelope verify, by JWK file and inline JWK."""
    signed = ok_json(
        run("envelope", "sign", "--key", str(key_file), stdin=json.dumps(UNSIGNED).encode())
    )
    key = PrivateKey.load(key_file)
    assert signed["sig"]["kid"] == key.kid
    assert {k: v for k, v in signed.items() if k != "sig"} == UNSIGNED
    jwk_path = tmp_path / "pub.json"
    jwk_path.write_text(json.dumps(key.public.jwk))
    body = json.dumps(signed).encode()
    for jwk in (str(jwk_path), json.dumps(key.public.jwk)):
        result = run("envelope", "verify", "--jwk", jwk, "--now", NOW, stdin=body)
        assert ok_json(result) == {"valid": True, "kid": key.kid}


def test_verify_reports_refusals(key_file: Path) -> None:
    """Invalid envelopes print valid:false with code and detail, and exit 1."""
    key = PrivateKey.load(key_file)
    signed = ok_json(
        run("envelope", "sign", "--key", str(key_file), stdin=json.dumps(UNSIGNED).encode())
    )
    jwk = json.dumps(key.public.jwk)
    tampered = {**signed, "body": {"text": "Hello there!", "parts": []}}
    cases = [
        (json.dumps(tampered).encode(), NOW, "signature_invalid"),
        (json.dumps(signed).encode(), "2026-11-26T08:00:00Z", "clock_skew"),
        (b"not json", NOW, "invalid_json"),
        (json.dumps({**signed, "x": 1}).encode(), NOW, "schema_invalid"),
    ]
    for body, now, code in cases:
        result = run("envelope", "verify", "--jwk", jwk, "--now", now, stdin=body)
        assert result.returncode == 1, result.stderr
        verdict = json.loads(result.stdout)
        assert verdict["valid"] is False and verdict["code"] == code and verdict["detail"]
    other = json.dumps(PrivateKey.from_seed(bytes(32)).public.jwk)
    result = run(
        "envelope", "verify", "--jwk", other, "--now", NOW, stdin=json.dumps(signed).encode()
    )
    assert json.loads(result.stdout)["code"] == "unknown_key"


def test_verify_bad_arguments(key_file: Path, tmp_path: Path) -> None:
    """A bad --jwk or --now is a one-line error, not a verdict."""
    body = json.dumps(UNSIGNED).encode()
    one_line_error(
        run("envelope", "verify", "--jwk", str(tmp_path / "none"), stdin=body),
        "cannot read JWK file",
    )
    one_line_error(run("envelope", "verify", "--jwk", '{"kty": "RSA"}', stdin=body), '"kty"')
    one_line_error(run("envelope", "verify", "--jwk", "{nope", stdin=body), "is not JSON")
    jwk = json.dumps(PrivateKey.load(key_file).public.jwk)
    one_line_error(
        run("envelope", "verify", "--jwk", jwk, "--now", "yesterday", stdin=body), "--now"
    )


@pytest.mark.parametrize(
    ("stdin", "problem"),
    [
        (b"{", "stdin: the body is not JSON"),
        (b"[1]", "must be a JSON object"),
        (json.dumps({**UNSIGNED, "id": "x"}).encode(), "schema_invalid: id must be"),
    ],
)
def test_sign_bad_input(key_file: Path, stdin: bytes, problem: str) -> None:
    """envelope sign refuses non-JSON and misshapen envelopes with a one-line error."""
    one_line_error(run("envelope", "sign", "--key", str(key_file), stdin=stdin), problem)


def test_token_new(key_file: Path) -> None:
    """token new prints a JWT that verifies for the address and audience."""
    result = run(
        "token",
        "new",
        "--key",
        str(key_file),
        "--address",
        "alice@people.example",
        "--audience",
        "gw.example",
        "--ttl",
        "60",
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.decode().strip()
    key = PrivateKey.load(key_file)
    claims = verify_agent_token(
        token, {key.kid: KeyState(key.public)}, "gw.example", datetime.now(UTC)
    )
    assert claims.address == "alice@people.example"
    assert claims.expires_at - claims.issued_at == timedelta(seconds=60)


def test_token_new_bad_input(key_file: Path, tmp_path: Path) -> None:
    """A bad address, ttl or key file is a one-line error."""
    base = ("token", "new", "--audience", "gw.example")
    one_line_error(run(*base, "--key", str(key_file), "--address", "alice"), "--address")
    one_line_error(
        run(*base, "--key", str(key_file), "--address", "a@b.example", "--ttl", "999"), "--ttl"
    )
    one_line_error(
        run(*base, "--key", str(tmp_path / "no"), "--address", "a@b.example"),
        "cannot read key file",
    )
