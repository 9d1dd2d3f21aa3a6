"""Standard Webhooks v1a signatures, ULIDs and prefixed ids."""

from __future__ import annotations

from datetime import UTC, datetime

from identity.ids import new_id, new_ulid
from identity.keys import PrivateKey
from identity.webhook import sign_webhook, verify_webhook

GATEWAY = PrivateKey.from_seed(bytes(range(32)))
OLD = PrivateKey.from_seed(bytes(32))
BODY = b'{"type":"envelope"}'
TS = 1795673400
NOW = datetime.fromtimestamp(TS + 10, UTC)


def test_round_trip_and_tampering() -> None:
    """A signature verifies; another body, id, timestamp or key does not."""
    header = sign_webhook(GATEWAY, "dlv_1", TS, BODY)
    assert header.startswith("v1a,") and header.endswith("==")
    assert verify_webhook([GATEWAY.public], "dlv_1", TS, BODY, header, now=NOW)
    assert not verify_webhook([GATEWAY.public], "dlv_1", TS, BODY + b" ", header)
    assert not verify_webhook([GATEWAY.public], "dlv_2", TS, BODY, header)
    assert not verify_webhook([GATEWAY.public], "dlv_1", TS + 1, BODY, header)
    assert not verify_webhook([OLD.public], "dlv_1", TS, BODY, header)


def test_several_signatures_and_keys() -> None:
    """Any v1a entry that verifies with any key passes; v1 and junk entries are skipped."""
    new = sign_webhook(GATEWAY, "dlv_1", TS, BODY)
    old = sign_webhook(OLD, "dlv_1", TS, BODY)
    header = f"v1,c2VjcmV0 v1a,!!notbase64 {old} {new}"
    assert verify_webhook([GATEWAY.public], "dlv_1", TS, BODY, header)
    assert verify_webhook([OLD.public, GATEWAY.public], "dlv_1", TS, BODY, old)
    assert not verify_webhook([GATEWAY.public], "dlv_1", TS, BODY, f"v1,{new[4:]}")
    assert not verify_webhook([], "dlv_1", TS, BODY, new)


def test_timestamp_tolerance() -> None:
    """With a clock given, a timestamp more than the tolerance away fails."""
    header = sign_webhook(GATEWAY, "dlv_1", TS, BODY)
    late = datetime.fromtimestamp(TS + 301, UTC)
    assert not verify_webhook([GATEWAY.public], "dlv_1", TS, BODY, header, now=late)
    assert verify_webhook([GATEWAY.public], "dlv_1", TS, BODY, header, now=late, tolerance=600)


def test_ulid_shape_and_time_order() -> None:
    """ULIDs are 26 Crockford characters whose first 10 encode the time, so they sort by it."""
    early = new_ulid(datetime(2026, 1, 1, tzinfo=UTC))
    late = new_ulid(datetime(2026, 1, 2, tzinfo=UTC))
    assert len(early) == 26 and set(early) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert early < late
    assert new_ulid() != new_ulid()
    assert int(early[:10].translate(str.maketrans("JKMNPQRSTVWXYZ", "IJKLMNOPQRSTUV")), 32) == (
        1767225600000
    )


def test_prefixed_ids() -> None:
    """new_id joins prefix and ULID with one underscore, however the prefix is written."""
    assert new_id("tsk").startswith("tsk_") and len(new_id("tsk")) == 30
    assert new_id("tsk_")[:5] == "tsk_0" and "__" not in new_id("tsk_")
