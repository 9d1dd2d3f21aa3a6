"""structlog set-up: JSON lines in production, readable lines in a terminal. Every line of a
request carries its request id (bound by the middleware) and, once known, the envelope and
task ids. Message bodies and secrets are never logged at info.

A crash's traceback is plain text in both formats: the frames and their source lines, never
the frames' local variables, which hold request bodies and tokens. (structlog's console
renderer prints them by default when `rich` is installed.)"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import structlog


def configure(log_format: str, level: str) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    rendering: list[structlog.typing.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if log_format == "json"
        else [
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            *rendering,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


@contextmanager
def log_context_restored() -> Iterator[None]:
    """Run the block with the log context as it is, and put that context back when it ends:
    what the block binds (an acceptance binds its envelope and task ids) is on the block's
    lines only, not on what the same task logs afterwards about other work."""
    saved = structlog.contextvars.get_contextvars()
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**saved)
