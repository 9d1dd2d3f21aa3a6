"""`switchboard outcomes verify FILE_OR_URL`: prove a ledger export untouched, or name the
first bad entry.

The export is the body of `GET /v1/brands/{domain}/outcomes` saved to a file (or `-` for
stdin), or fetched from that URL with `--token`. The gateway's keys come from `--jwks` (a JWKS
or a `/.well-known/switchboard` document, file or URL), from `--gateway URL` (its well-known
document), or else from the export itself, which proves the chain consistent but not who
signed it: the output says which source was used.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from gateway.cli.output import CliError, emit_json
from gateway.ledger import jwks_keys, verify_chain


def register(commands: Any) -> None:
    """Add the `outcomes` command group to the top-level subparsers."""
    group = commands.add_parser("outcomes", help="the outcome ledger")
    sub = group.add_subparsers(dest="outcomes_command", required=True, metavar="COMMAND")
    verify = sub.add_parser("verify", help="check a ledger export's hash chain and signatures")
    verify.add_argument("source", metavar="FILE_OR_URL", help="an export file, - or its URL")
    verify.add_argument("--token", help="bearer token (brand admin) when fetching a URL")
    verify.add_argument("--jwks", help="the gateway's JWKS or well-known document (file or URL)")
    verify.add_argument("--gateway", help="gateway base URL: its JWKS is fetched from there")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    verify.set_defaults(run=_verify)


def _load(source: str, token: str | None = None) -> Any:
    try:
        if source.startswith(("http://", "https://")):
            request = urllib.request.Request(source, headers={"Accept": "application/json"})
            if token:
                request.add_header("Authorization", f"Bearer {token}")
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        elif source == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as handle:
                raw = handle.read()
    except urllib.error.HTTPError as exc:
        raise CliError(f"{source}: the server answered {exc.code} {exc.reason}") from exc
    except (OSError, urllib.error.URLError) as exc:
        raise CliError(f"{source}: {exc}") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise CliError(f"{source} is not JSON: {exc}") from exc


def _keys_source(args: argparse.Namespace, export: dict[str, Any]) -> tuple[dict[str, Any], str]:
    if args.jwks:
        found = _load(args.jwks)
        return (found.get("jwks", found) if isinstance(found, dict) else {}), args.jwks
    if args.gateway:
        url = args.gateway.rstrip("/") + "/.well-known/switchboard"
        found = _load(url)
        return (found.get("jwks", {}) if isinstance(found, dict) else {}), url
    return export.get("jwks") or {}, "the export itself (pass --gateway to check who signed it)"


def _verify(args: argparse.Namespace) -> int:
    export = _load(args.source, args.token)
    if not isinstance(export, dict) or not isinstance(export.get("entries"), list):
        raise CliError(f"{args.source} is not a ledger export (no 'entries' list)")
    jwks, where = _keys_source(args, export)
    keys = jwks_keys(jwks)
    if not keys:
        raise CliError(f"no Ed25519 keys found in {where}")
    entries = export["entries"]
    broken = verify_chain(entries, keys)
    verdict: dict[str, Any] = {
        "ok": broken is None,
        "brand": export.get("brand"),
        "entries": len(entries),
        "keys_from": where,
    }
    if broken is not None:
        verdict.update(index=broken.index, seq=broken.seq, reason=broken.reason)
    if args.json:
        emit_json(verdict)
    elif broken is None:
        seqs = f" (seq {entries[0]['seq']}..{entries[-1]['seq']})" if entries else ""
        print(
            f"ok: {len(entries)} entries of {export.get('brand')}{seqs} verified; keys from {where}"
        )
    else:
        print(
            f"BAD: entry seq {broken.seq} (position {broken.index + 1} of {len(entries)}): "
            f"{broken.reason}"
        )
    return 0 if broken is None else 1
