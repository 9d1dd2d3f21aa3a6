"""The webhook body spliced around the stored envelope text is valid JSON whose "envelope" is
the object the sender signed and whose "task" is the task brief, whether the stored text is
compact (`records.dumps`) or the sender's own text with its whitespace and escapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.delivery.deliverer import webhook_body_of_stored
from gateway.store.records import dumps

ENVELOPE = {
    "v": 1,
    "id": "01JABC",
    "from": "alice@people.example",
    "to": "support@acme.example",
    "act": "say",
    "text": 'Grüße — "quoted" \\ back\\slash\n✓ 😀',
    "n": [1, 2.5, -0.0, 1e300, True, None],
    "nested": {"z": 1, "a": {"b": []}},
}

STORED_TEXTS = {
    "compact": dumps(ENVELOPE),
    "indented, ASCII escapes": json.dumps(ENVELOPE, indent=2, ensure_ascii=True),
    "spaced": json.dumps(ENVELOPE, separators=(" , ", " : "), ensure_ascii=False),
}


@pytest.mark.parametrize("stored", list(STORED_TEXTS.values()), ids=list(STORED_TEXTS))
@pytest.mark.parametrize(
    "task", [None, {"id": "tsk_1", "state": "working", "control": "agent"}, {"ü": "ß"}]
)
def test_the_spliced_body_parses_to_the_signed_envelope(
    stored: str, task: dict[str, Any] | None
) -> None:
    body = webhook_body_of_stored(stored, task)
    parsed = json.loads(body)
    assert parsed == {"type": "envelope", "envelope": ENVELOPE, "task": task}
    assert stored in body.decode()  # the stored text as it is, not encoded again


def test_escapes_in_the_stored_text_reach_the_endpoint_as_sent() -> None:
    stored = '{"v": 1,\n  "text": "caf\\u00e9 \\ud83d\\ude00"}'
    body = webhook_body_of_stored(stored, None)
    assert b"caf\\u00e9 \\ud83d\\ude00" in body
    assert json.loads(body)["envelope"] == {"v": 1, "text": "café 😀"}
