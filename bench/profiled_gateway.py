"""`switchboard serve` under cProfile, counting SQL statements: the benchmark's microscope.

`python -m bench.profiled_gateway OUT_DIR` runs the gateway exactly as `python -m gateway.cli
serve` does (same environment, same settings) with two observers added from outside: cProfile
on the main thread (where the event loop and SQLAlchemy's greenlets run) and a class-level
SQLAlchemy `before_cursor_execute` listener that counts statements by their text (and
transactions committed, and read-only connections, as two extra lines). SIGUSR1
starts both afresh (the load generator sends it when its timed phase begins), so set-up and
warm-up stay out of the figures. On exit it writes `gateway.prof` and `statements.json`.
Nothing in `gateway/` knows about this.
"""

from __future__ import annotations

import cProfile
import json
import re
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

_SPACE = re.compile(r"\s+")


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    statements: Counter[str] = Counter()
    state = {"profiler": cProfile.Profile()}

    @event.listens_for(Engine, "before_cursor_execute")
    def _count(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
    ) -> None:
        statements[_SPACE.sub(" ", statement).strip()[:160]] += 1

    @event.listens_for(Engine, "commit")
    def _commit(_conn: Any) -> None:
        statements["(transactions committed)"] += 1

    @event.listens_for(Engine, "rollback")
    def _rollback(_conn: Any) -> None:
        statements["(connections returned without commit: reads)"] += 1

    def restart(_signum: int, _frame: Any) -> None:
        state["profiler"].disable()
        statements.clear()
        state["profiler"] = cProfile.Profile()
        state["profiler"].enable()

    signal.signal(signal.SIGUSR1, restart)

    from gateway.cli import main as gateway_main

    sys.argv = ["switchboard", "serve"]
    state["profiler"].enable()
    try:
        gateway_main()
    except SystemExit:
        pass
    finally:
        state["profiler"].disable()
        state["profiler"].dump_stats(str(out / "gateway.prof"))
        (out / "statements.json").write_text(json.dumps(statements.most_common(), indent=1))


if __name__ == "__main__":
    main()
