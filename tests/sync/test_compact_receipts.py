"""Compact receipts: a batch the centre holds in full is confirmed by a count and a digest,
not by an echo of every record's id and hash (which on EDGE cost as much as the batch)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.store import open_store
from sync.agent.agent import AgentConfig, SyncAgent
from sync.agent.transport import HttpClient
from sync.protocol import ProtocolError
from sync.protocol.messages import H_RECEIPT, make_receipt, verify_receipt
from sync.protocol.signing import H_NONCE, sign_document
from tests.sync.conftest import Box, delivered_at_centre

pytestmark = pytest.mark.timeout(60)


def _agent(box: Box) -> SyncAgent:
    agent = SyncAgent(
        open_store(box.settings),
        box.data_dir,
        box.identity,
        AgentConfig(pull_interval_s=3600, update_check_interval_s=0),
    )
    assert agent.link() is not None
    return agent


def test_a_whole_batch_is_confirmed_by_a_receipt_of_fixed_size(tmp_path, central_sqlite) -> None:
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    box.add_records(150)  # 150 patients and 150 questionnaire responses
    agent = _agent(box)
    try:
        items = agent.outbox.lease(10**9, 1000, 60)
        assert len(items) == 300
        prepared = agent._prepare(items)
        answer = agent._send(prepared)
        # A listing receipt is ~100 bytes a record (30 KB here); a compact one is constant.
        assert len(answer.body) < 1000, len(answer.body)
        assert json.loads(answer.body)["document"]["stored_count"] == 300
        assert agent._finish(prepared, answer) == 300
        assert len(delivered_at_centre(central_sqlite, link.device_id)) == 300
        stats = agent.outbox.stats()
        assert sum(stats["lanes"].values()) == 0 and stats["delivered"] == 300

        # A resend of a batch the centre already holds (a lost receipt) is confirmed the
        # same way and stores nothing twice.
        again = agent._prepare(items)
        answer = agent._send(again)
        assert len(answer.body) < 1000
        assert {(i.record_id, i.version, i.content_hash) for i in items} == set(
            verify_receipt(
                link.signing_key,
                answer.json(),
                link.device_id,
                again.headers[H_NONCE],
                [(i.record_id, i.version, i.content_hash) for i in items],
            )
        )
        assert {c for _r, _v, c in delivered_at_centre(central_sqlite, link.device_id)} == {1}
    finally:
        agent.store.close()


def test_a_push_that_does_not_ask_gets_the_listing_receipt(tmp_path, central_sqlite) -> None:
    """Boxes from before compact receipts keep working against a new centre."""
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    box.add_records(5)
    agent = _agent(box)
    try:
        items = agent.outbox.lease(10**9, 1000, 60)
        prepared = agent._prepare(items)
        headers = {k: v for k, v in prepared.headers.items() if k != H_RECEIPT}
        client = HttpClient(link.central_url, 5, 20, link.tls_pin)
        answer = client.request("POST", "/v1/records", prepared.body, headers)
        document = answer.json()["document"]
        assert "stored_digest" not in document
        assert len(document["stored"]) == 10
        assert (
            len(verify_receipt(link.signing_key, answer.json(), link.device_id, headers[H_NONCE]))
            == 10
        )
    finally:
        agent.store.close()


def _signed(key: Ed25519PrivateKey, document: dict) -> dict:
    return sign_document(key.sign, document)


def test_a_compact_receipt_confirms_nothing_unless_it_matches_what_was_sent() -> None:
    key = Ed25519PrivateKey.generate()
    sent = [("r1", 1, "a" * 64), ("r2", 3, "b" * 64)]
    envelope = _signed(key, make_receipt("dev", "nonce", sent, sent))
    assert "stored" not in envelope["document"]
    assert sorted(verify_receipt(key.public_key(), envelope, "dev", "nonce", sent)) == sent
    # Another batch (one version differs), one record more, or no batch to check against.
    for other in ([("r1", 1, "a" * 64), ("r2", 4, "b" * 64)], [*sent, ("r3", 1, "c" * 64)]):
        with pytest.raises(ProtocolError, match="does not match"):
            verify_receipt(key.public_key(), envelope, "dev", "nonce", other)
    with pytest.raises(ProtocolError, match="no batch"):
        verify_receipt(key.public_key(), envelope, "dev", "nonce")


def test_the_centre_lists_what_it_holds_when_that_is_not_the_whole_batch() -> None:
    key = Ed25519PrivateKey.generate()
    sent = [("r1", 1, "a" * 64), ("r2", 3, "b" * 64)]
    envelope = _signed(key, make_receipt("dev", "nonce", sent[:1], sent))
    assert envelope["document"]["stored"] == [["r1", 1, "a" * 64]]
    assert verify_receipt(key.public_key(), envelope, "dev", "nonce", sent) == [sent[0]]
