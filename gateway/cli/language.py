"""`switchboard language classify | eval`: the language layer from the command line.

`classify` turns JSON lines `{"text": …}` on stdin into `{"route", "wants_human",
"frustrated"}` lines against a brand catalog; `eval` measures an adapter on a labelled file.
Both use the rules by default; `--language openai` uses an OpenAI-compatible server (with the
rules as its fallback, as in the gateway).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from gateway.cli.output import CliError, emit_json
from gateway.config import OPENAI_API_KEY, secret
from gateway.language.catalog import CatalogError, load_catalog
from gateway.language.evaluation import DatasetError, Report, evaluate, load_examples, predict
from gateway.language.rules import RulesLanguage
from routing.language import Language


def register(commands: Any) -> None:
    """Add the `language` command group to the top-level subparsers."""
    group = commands.add_parser("language", help="route, classify and evaluate English messages")
    sub = group.add_subparsers(dest="language_command", required=True, metavar="COMMAND")

    classify = sub.add_parser("classify", help='JSON lines {"text": …} on stdin -> labels')
    classify.add_argument("--catalog", required=True, help="brand catalog JSON file")
    _adapter_flags(classify)
    classify.set_defaults(run=_classify)

    ev = sub.add_parser("eval", help="route accuracy and signal F1 on a labelled JSONL file")
    ev.add_argument("file", help="labelled JSON lines: text, route, wants_human, frustrated")
    ev.add_argument("--catalog", required=True, help="brand catalog JSON file")
    ev.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ev.add_argument("--misses", action="store_true", help="also list the items it got wrong")
    _adapter_flags(ev)
    ev.set_defaults(run=_eval)


def _adapter_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--language", choices=("rules", "openai"), default="rules")
    parser.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://host/v1")
    parser.add_argument("--model", help="model name (with --language openai)")
    parser.add_argument(
        "--api-key-env",
        default=OPENAI_API_KEY,
        help="environment variable holding the API key (default %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per model call")


def _language(args: argparse.Namespace) -> Language:
    rules = RulesLanguage()
    if args.language == "rules":
        return rules
    from gateway.language.openai import OpenAILanguage

    if not args.model:
        raise CliError("--language openai needs --model")
    key = secret(args.api_key_env)
    if not key:
        raise CliError(f"--language openai needs an API key in ${args.api_key_env}")
    return OpenAILanguage(
        base_url=args.base_url, api_key=key, model=args.model, fallback=rules, timeout=args.timeout
    )


def _catalog(path: str) -> Any:
    try:
        return load_catalog(path)
    except CatalogError as exc:
        raise CliError(str(exc)) from exc


def _classify(args: argparse.Namespace) -> int:
    candidates = _catalog(args.catalog)
    language = _language(args)

    async def run() -> None:
        for number, line in enumerate(sys.stdin, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CliError(f"stdin line {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise CliError(f'stdin line {number}: expected an object with a "text" string')
            p = await predict(language, item["text"], candidates)
            emit_json({"route": p.route, "wants_human": p.wants_human, "frustrated": p.frustrated})
            sys.stdout.flush()

    asyncio.run(run())
    return 0


def _eval(args: argparse.Namespace) -> int:
    candidates = _catalog(args.catalog)
    try:
        examples = load_examples(args.file)
    except DatasetError as exc:
        raise CliError(str(exc)) from exc
    if not examples:
        raise CliError(f"{args.file} has no labelled lines")
    report = asyncio.run(evaluate(_language(args), examples, candidates))
    if args.json:
        emit_json(report.as_dict() | ({"misses": list(report.misses)} if args.misses else {}))
    else:
        print(_table(args.file, report))
        if args.misses:
            print("\nmisses:")
            print("\n".join(f"  {m}" for m in report.misses) or "  none")
    return 0


def _table(name: str, report: Report) -> str:
    lines = [
        f"{name}: {report.items} items, {report.routed_items} with a route label",
        "",
        f"{'route accuracy':<16}{report.route_accuracy:>9.3f}   "
        f"({report.route_correct}/{report.routed_items})",
        "",
        f"{'signal':<16}{'precision':>9} {'recall':>9} {'f1':>9}",
    ]
    for label, s in (("wants_human", report.wants_human), ("frustrated", report.frustrated)):
        lines.append(f"{label:<16}{s.precision:>9.3f} {s.recall:>9.3f} {s.f1:>9.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run only the `language` group (`python -m gateway.cli.language eval …`).

    The same commands as `switchboard language …`, usable while other command groups are
    missing from a checkout; errors are one line on stderr, as in the dispatcher.
    """
    parser = argparse.ArgumentParser(prog="switchboard")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(["language", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.run(args) or 0)
    except CliError as exc:
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
