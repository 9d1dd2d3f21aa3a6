"""`switchboard serve` under cProfile, counting SQL statements: the benchmark's microscope.

`python -m bench.profiled_gateway OUT_DIR` runs the gateway exactly as `python -m gateway.cli
serve` does (same environment, same settings) with two observers added from outside: cProfile
on the main thread (where the event loop and SQLAlchemy's greenlets run) and a class-level
SQLAlchemy `before_cursor_execute` listener that counts statements by their text (and
transactions committed, and read-only connections, as two extra lines). SIGUSR1
starts both afresh (the load generator sends it when its timed phase begins), so set-up and
warm-up stay out of the figures. On exit it writes `gateway.prof` and `statements.json`.
Nothing in `gateway/` knows about this.

With `SWITCHBOARD_BENCH_STALLS=FILE` set, cProfile stays off (it would stretch every stall)
and a watchdog thread records what the event loop's thread is running whenever the loop has
not ticked for 20 ms: the stack at 20 ms and every 10 ms after, with the stall's length, so a
tail-latency spike shows the code that held the loop rather than the requests that waited.
With `SWITCHBOARD_BENCH_STAGES=FILE` set (cProfile off too), each accepted request's time in
the acceptance stages (sender lookup, plan and effects, group commit, and the rest) is
written there, one JSON line per request, by wrapping those methods from outside.
"""

from __future__ import annotations

import contextvars
import cProfile
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

_SPACE = re.compile(r"\s+")


class _StallWatch:
    """Samples the loop thread's stack while its loop is stalled (bench-only)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._tick = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._lines: list[str] = []

    def install(self) -> None:
        import asyncio

        real_run = asyncio.BaseEventLoop.run_forever

        def run_forever(loop: Any) -> Any:
            loop.call_soon(self._beat, loop)
            return real_run(loop)

        asyncio.BaseEventLoop.run_forever = run_forever  # type: ignore[method-assign,assignment]
        threading.Thread(target=self._watch, daemon=True).start()

    def _beat(self, loop: Any) -> None:
        self._tick = time.monotonic()
        loop.call_later(0.002, self._beat, loop)

    def _watch(self) -> None:
        reported = 0.0
        while True:
            time.sleep(0.005)
            stalled = time.monotonic() - self._tick
            if stalled >= 0.020 and stalled - reported >= 0.010:
                frame = sys._current_frames().get(self._loop_thread)
                stack = "".join(traceback.format_stack(frame, limit=25)) if frame else "?"
                self._lines.append(f"--- stalled {stalled * 1000:.0f} ms at {time.time():.3f}\n")
                self._lines.append(stack)
                reported = stalled
            elif stalled < 0.020:
                reported = 0.0

    def write(self) -> None:
        self._path.write_text("".join(self._lines))


_STAGE: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "bench_stage", default=None
)


def _time_stages(path: Path) -> Callable[[], object]:
    """Wrap the acceptance's stages to time each request's (bench-only; see the module doc)."""
    from gateway.acceptance import Acceptance
    from gateway.directory_cache import CachedDirectory
    from gateway.escalations import Escalator
    from gateway.store.conversations import Conversations

    rows: list[str] = []

    def timed(owner: Any, name: str, stage: str) -> None:
        real = getattr(owner, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            stages = _STAGE.get()
            began = time.perf_counter()
            try:
                return await real(*args, **kwargs)
            finally:
                if stages is not None:
                    stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - began

        setattr(owner, name, wrapper)

    timed(CachedDirectory, "agent", "directory_agent")
    timed(CachedDirectory, "brand_agents", "directory_brand_agents")
    timed(Escalator, "after_envelope", "effects")
    timed(Conversations, "history", "history")
    timed(Conversations, "commit", "commit")
    timed(Acceptance, "_plan", "plan")
    real_accept = Acceptance.accept_bytes

    async def accept_bytes(self: Any, body: bytes) -> Any:
        stages: dict[str, float] = {}
        token = _STAGE.set(stages)
        began = time.perf_counter()
        try:
            return await real_accept(self, body)
        finally:
            stages["total"] = time.perf_counter() - began
            stages["at"] = began
            _STAGE.reset(token)
            rows.append(json.dumps({k: round(v * 1000, 3) for k, v in stages.items()}))

    Acceptance.accept_bytes = accept_bytes  # type: ignore[method-assign]
    return lambda: path.write_text("\n".join(rows))


def main() -> None:
    stages_to = os.environ.get("SWITCHBOARD_BENCH_STAGES")
    write_stages = _time_stages(Path(stages_to)) if stages_to else None
    stalls_to = os.environ.get("SWITCHBOARD_BENCH_STALLS")
    watch = _StallWatch(Path(stalls_to)) if stalls_to else None
    quiet = watch is not None or write_stages is not None
    if watch is not None:
        watch.install()
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
        if not quiet:
            state["profiler"].enable()

    signal.signal(signal.SIGUSR1, restart)

    from gateway.cli import main as gateway_main

    sys.argv = ["switchboard", "serve"]
    if not quiet:
        state["profiler"].enable()
    try:
        gateway_main()
    except SystemExit:
        pass
    finally:
        state["profiler"].disable()
        if watch is not None:
            watch.write()
        if write_stages is not None:
            write_stages()
        state["profiler"].dump_stats(str(out / "gateway.prof"))
        (out / "statements.json").write_text(json.dumps(statements.most_common(), indent=1))


if __name__ == "__main__":
    main()
