"""`switchboard keys | envelope | token`: keys, signed envelopes and agent tokens by hand.

These commands are thin: every rule lives in `identity`; this module reads files and stdin,
turns identity errors into one-line messages, and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.output import CliError, emit_json
from identity.envelope import KeyState, check_size, parse, parse_json, sign, verify
from identity.errors import IdentityError
from identity.keys import PrivateKey, PublicKey
from identity.tokens import MAX_TOKEN_TTL, issue_agent_token


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `keys`, `envelope` and `token` command groups."""
    keys = commands.add_parser("keys", help="create and show Ed25519 key files")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    new = keys_commands.add_parser("new", help="write a new private key file (mode 0600)")
    new.add_argument("--out", required=True, metavar="PATH", help="file to create")
    new.set_defaults(run=_keys_new)
    show = keys_commands.add_parser("show", help="print the kid and public JWK of a key file")
    show.add_argument("path", metavar="PATH")
    show.set_defaults(run=_keys_show)

    envelope = commands.add_parser("envelope", help="sign and verify envelopes")
    envelope_commands = envelope.add_subparsers(
        dest="envelope_command", required=True, metavar="ACTION"
    )
    sign_cmd = envelope_commands.add_parser(
        "sign", help="sign the unsigned envelope JSON on stdin; print it signed"
    )
    sign_cmd.add_argument("--key", required=True, metavar="PATH", help="private key file")
    sign_cmd.set_defaults(run=_envelope_sign)
    verify_cmd = envelope_commands.add_parser(
        "verify", help="verify the signed envelope on stdin against one public key"
    )
    verify_cmd.add_argument(
        "--jwk", required=True, metavar="JWK", help="public JWK: a file path or inline JSON"
    )
    verify_cmd.add_argument(
        "--now", metavar="RFC3339", help="the clock to check against (default: now)"
    )
    verify_cmd.set_defaults(run=_envelope_verify)

    token = commands.add_parser("token", help="issue agent bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    token_new = token_commands.add_parser("new", help="print an agent JWT signed with a key file")
    token_new.add_argument("--key", required=True, metavar="PATH", help="private key file")
    token_new.add_argument("--address", required=True, metavar="ADDR", help="the agent address")
    token_new.add_argument(
        "--audience", required=True, metavar="DOMAIN", help="the gateway's domain"
    )
    token_new.add_argument(
        "--ttl",
        type=int,
        default=MAX_TOKEN_TTL,
        metavar="SECONDS",
        help=f"lifetime, 1 to {MAX_TOKEN_TTL} (default {MAX_TOKEN_TTL})",
    )
    token_new.set_defaults(run=_token_new)


def _load_key(path: str) -> PrivateKey:
    try:
        return PrivateKey.load(path)
    except IdentityError as exc:
        raise CliError(exc.detail) from None


def _key_summary(public: PublicKey) -> dict[str, Any]:
    return {"kid": public.kid, "jwk": public.jwk}


def _keys_new(args: argparse.Namespace) -> int:
    key = PrivateKey.generate()
    try:
        key.save(args.out)
    except IdentityError as exc:
        raise CliError(exc.detail) from None
    emit_json(_key_summary(key.public))
    return 0


def _keys_show(args: argparse.Namespace) -> int:
    emit_json(_key_summary(_load_key(args.path).public))
    return 0


def _read_stdin_json() -> Any:
    try:
        return parse_json(sys.stdin.buffer.read())
    except IdentityError as exc:
        raise CliError(f"stdin: {exc.detail}") from None


def _envelope_sign(args: argparse.Namespace) -> int:
    key = _load_key(args.key)
    unsigned = _read_stdin_json()
    if not isinstance(unsigned, dict):
        raise CliError("stdin: an envelope must be a JSON object")
    try:
        signed = sign(unsigned, key)
        parse(signed)  # refuse to hand out a signed envelope that no gateway would accept
    except IdentityError as exc:
        raise CliError(f"stdin: {exc.code}: {exc.detail}") from None
    emit_json(signed)
    return 0


def _public_key_arg(text: str) -> PublicKey:
    if text.lstrip().startswith("{"):
        source, raw = "--jwk", text
    else:
        try:
            raw = Path(text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise CliError(f"cannot read JWK file {text!r}: {reason}") from None
        source = f"JWK file {text!r}"
    try:
        jwk = json.loads(raw)
    except ValueError as exc:
        raise CliError(f"{source} is not JSON: {exc}") from None
    try:
        return PublicKey.from_jwk(jwk)
    except IdentityError as exc:
        raise CliError(f"{source}: {exc.detail}") from None


def _now_arg(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        now = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--now {text!r} is not an RFC 3339 timestamp") from None
    if now.tzinfo is None:
        raise CliError(f"--now {text!r} needs a time zone, e.g. a trailing Z")
    return now


def _envelope_verify(args: argparse.Namespace) -> int:
    public = _public_key_arg(args.jwk)
    now = _now_arg(args.now)
    body = sys.stdin.buffer.read()
    try:
        check_size(body)
        envelope = parse(parse_json(body))
        verify(envelope, {public.kid: KeyState(public)}, now)
    except IdentityError as exc:
        emit_json({"valid": False, "code": exc.code, "detail": exc.detail})
        return 1
    emit_json({"valid": True, "kid": envelope.sig.kid})
    return 0


def _token_new(args: argparse.Namespace) -> int:
    key = _load_key(args.key)
    try:
        token = issue_agent_token(key, args.address, args.audience, datetime.now(UTC), args.ttl)
    except IdentityError as exc:
        raise CliError(f"--address: {exc.detail}") from None
    except ValueError as exc:
        raise CliError(f"--ttl: {exc}") from None
    print(token)
    return 0
