"""The outbox API the sync agent uses: lease by lane under a budget, acknowledge, release."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from appliance.store import Store
from appliance.store.outbox import Lane, Outbox
from tests.store.conftest import make_session

pytestmark = pytest.mark.timeout(60)


def _records(store: Store) -> dict[str, str]:
    user, patient, session = make_session(store)
    q = store.QuestionnaireResponse.create(patient=patient, kind="GAD7", items=[1] * 7, score=7)
    flag = store.RiskFlag.create(patient=patient, source=q, reason="item 9 above zero")
    store.TelemetryEvent.create(kind="uptime", data={"s": 10})
    return {"patient": patient.id, "session": session.id, "q": q.id, "flag": flag.id}


def test_lease_orders_by_lane_and_builds_payload(store: Store) -> None:
    ids = _records(store)
    outbox = Outbox(store)
    items = outbox.lease(byte_budget=1_000_000, max_items=10)
    assert [i.lane for i in items] == sorted(i.lane for i in items)
    assert items[0].lane is Lane.URGENT and items[0].record_id == ids["flag"]
    assert items[-1].lane is Lane.TELEMETRY
    q = next(i for i in items if i.record_id == ids["q"])
    doc = json.loads(q.payload)
    assert doc["fields"]["items"] == [1] * 7 and doc["version"] == 1
    assert q.content_hash == hashlib.sha256(q.payload).hexdigest()
    # Everything is leased now: a second lease finds nothing due.
    assert outbox.lease(1_000_000, 10) == []


def test_budget_returns_at_least_one(store: Store) -> None:
    _records(store)
    outbox = Outbox(store)
    first = outbox.lease(byte_budget=1, max_items=10)
    assert len(first) == 1
    assert len(outbox.lease(byte_budget=1_000_000, max_items=2)) == 2


def test_acknowledge_and_edit_after_send(store: Store) -> None:
    ids = _records(store)
    outbox = Outbox(store)
    items = outbox.lease(1_000_000, 10)
    q = store.QuestionnaireResponse.get_by_id(ids["q"])
    q.score = 8
    q.save()  # edited while in flight: its receipt must not count
    receipts = [(i.record_id, i.version, i.content_hash) for i in items]
    assert outbox.acknowledge(receipts) == len(items) - 1
    stats = outbox.stats()
    assert stats["delivered"] == len(items) - 1
    assert stats["lanes"]["clinical"] == 1
    again = outbox.lease(1_000_000, 10)
    assert [(i.record_id, i.version) for i in again] == [(ids["q"], 2)]
    assert outbox.acknowledge([(ids["q"], 2, "0" * 64)]) == 0  # wrong hash ignored
    assert outbox.acknowledge([(ids["q"], 2, again[0].content_hash)]) == 1
    assert outbox.stats()["oldest_undelivered_age_s"] is None
    assert outbox.purge_delivered(older_than_s=-1) == len(items)


def test_release_backs_off(store: Store) -> None:
    _records(store)
    outbox = Outbox(store)
    items = outbox.lease(1_000_000, 1)
    outbox.release([items[0].entry_id], "timeout", retry_after_s=60)
    later = outbox.lease(1_000_000, 10)
    assert items[0].entry_id not in [i.entry_id for i in later]
    outbox.release([i.entry_id for i in later], None, retry_after_s=0)
    time.sleep(0.01)
    retried = outbox.lease(1_000_000, 10)
    assert {i.entry_id for i in retried} == {i.entry_id for i in later}
    assert all(i.attempts == 1 for i in retried)


def test_expired_lease_is_due_again(store: Store) -> None:
    _records(store)
    outbox = Outbox(store)
    items = outbox.lease(1_000_000, 10, lease_seconds=0.05)
    time.sleep(0.1)
    assert len(outbox.lease(1_000_000, 10)) == len(items)
