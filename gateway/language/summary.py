"""Extractive task summaries for the operator who takes a task over.

No model is needed to be useful: an operator first wants the reason they were called, what
the customer asked at the start, the facts the agents exchanged as data (order numbers,
amounts) and the last few exchanges. Each part is cut to a fixed share so the whole stays
under `MAX_CHARS`, however long the task.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from routing.language import TaskView, Turn

MAX_CHARS = 1200
_OPENING_CHARS = 300
_TURN_CHARS = 160
_DATA_CHARS = 240
_LAST_TURNS = 4


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _facts(value: object, prefix: str = "") -> Iterable[str]:
    """`key: value` lines for the scalars of a data part, nested keys joined with dots."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _facts(inner, f"{prefix}{key}.")
    elif isinstance(value, list):
        yield f"{prefix.rstrip('.')}: {_clip(json.dumps(value, ensure_ascii=False), 60)}"
    elif prefix:
        yield f"{prefix.rstrip('.')}: {value}"
    else:
        yield str(value)


def _data(turns: Iterable[Turn]) -> str:
    seen: list[str] = []
    for turn in turns:
        for part in turn.data:
            for fact in _facts(part):
                if fact not in seen:
                    seen.append(fact)
    return _clip("; ".join(seen), _DATA_CHARS)


def _line(turn: Turn) -> str:
    text = turn.text or f"({turn.act}, no text)"
    return f"- {turn.side} {turn.sender} [{turn.act}]: {_clip(text, _TURN_CHARS)}"


def summarise(task: TaskView) -> str:
    """A plain-text account of `task`, at most `MAX_CHARS` characters."""
    lines = [
        f"Task {task.id}: {task.initiator} -> {task.responder}, {task.state}, "
        f"{len(task.turns)} message{'s' if len(task.turns) != 1 else ''}."
    ]
    if task.reason:
        reason = f"Escalated ({task.reason})"
        if task.reason_text:
            reason += f": {_clip(task.reason_text, 200)}"
        lines.append(reason)
    opening = next((t for t in task.turns if t.side == "initiator" and t.text), None)
    if opening is not None:
        lines.append(f"Asked: {_clip(opening.text, _OPENING_CHARS)}")
    data = _data(task.turns)
    if data:
        lines.append(f"Data: {data}")
    latest = [t for t in task.turns[-_LAST_TURNS:] if t is not opening]
    if latest:
        lines.append("Latest:")
        lines.extend(_line(t) for t in latest)
    return _clip_lines(lines, MAX_CHARS)


def _clip_lines(lines: list[str], limit: int) -> str:
    """Join `lines`, dropping the oldest of the latest exchanges first if over `limit`."""
    text = "\n".join(lines)
    while len(text) > limit and len(lines) > 1:
        drop = next((i for i, line in enumerate(lines) if line.startswith("- ")), None)
        if drop is None or sum(1 for line in lines if line.startswith("- ")) <= 1:
            break
        del lines[drop]
        text = "\n".join(lines)
    return text if len(text) <= limit else text[: limit - 1] + "…"
