"""The webhook body made from the stored envelope text is byte for byte the body made from
the envelope itself."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.delivery.deliverer import webhook_body, webhook_body_of_stored
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


@pytest.mark.parametrize(
    "task", [None, {"id": "tsk_1", "state": "working", "control": "agent"}, {"ü": "ß"}]
)
def test_the_stored_text_spliced_is_the_encoded_envelope(task: dict[str, Any] | None) -> None:
    assert webhook_body_of_stored(dumps(ENVELOPE), task) == webhook_body(ENVELOPE, task)
