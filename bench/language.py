"""Throughput of the rule-based language adapter: route plus both signals per message.

Every labelled line under tests/language/data is classified against its own catalog, the way
the gateway handles a first message (`route` then `signals`), cycling until the time is up.
Rankers are built once per catalog (the adapter caches them), as in the running gateway. The
target is at least 1,000 messages a second on one core.

Run: /work/venv/bin/python bench/language.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.language.catalog import load_catalog
from gateway.language.evaluation import load_examples
from gateway.language.rules import RulesLanguage
from routing.language import Candidate

DATA = Path(__file__).resolve().parent.parent / "tests" / "language" / "data"


def workload() -> list[tuple[str, tuple[Candidate, ...]]]:
    """Every labelled message in the repository with the candidates of its brand."""
    items: list[tuple[str, tuple[Candidate, ...]]] = []
    for path in sorted(DATA.glob("*.jsonl")):
        brand = path.stem.rsplit("_", 1)[0]
        catalog = load_catalog(DATA / f"{brand}_catalog.json")
        items.extend((e.text, catalog) for e in load_examples(path))
    return items


def main() -> None:
    """Classify the workload repeatedly for `--seconds` and print messages per second."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    items = workload()
    language = RulesLanguage()
    for text, catalog in items:  # warm the ranker cache, as a running gateway would be
        language.route_now(text, catalog)
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        for text, catalog in items:
            language.route_now(text, catalog)
            language.signals_now(text)
        done += len(items)
    elapsed = time.perf_counter() - start
    print(f"{done} messages in {elapsed:.2f}s: {done / elapsed:,.0f} messages/s (target 1,000)")
    # The signals alone: the part every envelope of a task pays (routing is for first messages).
    texts = [text for text, _ in items]
    rounds = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        for text in texts:
            language.signals_now(text)
        rounds += 1
    elapsed = time.perf_counter() - start
    per_message = elapsed / (rounds * len(texts)) * 1e6
    print(f"signals alone: {per_message:.1f} µs per message (wants a person + frustration)")


if __name__ == "__main__":
    main()
