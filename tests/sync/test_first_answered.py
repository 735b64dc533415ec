"""A batch held up on its way (a lost segment on a lossy link, a cut) does not hold up the
receipts of the batches sent after it, nor the next batch on their connections."""

from __future__ import annotations

import threading
import time

import pytest

from appliance.store import open_store
from sync.agent.agent import AgentConfig, SyncAgent, _Prepared
from sync.agent.transport import Response
from tests.sync.conftest import Box, delivered_at_centre

pytestmark = pytest.mark.timeout(60)

HELD_S = 4.0


def test_receipts_are_handled_as_they_come_not_in_sending_order(tmp_path, central_sqlite) -> None:
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    box.add_records(20)  # 40 records: batches of 4
    agent = SyncAgent(
        open_store(box.settings),
        box.data_dir,
        box.identity,
        AgentConfig(
            start_batch=4, max_batch=4, in_flight=3, pull_interval_s=3600, update_check_interval_s=0
        ),
    )
    held: list[_Prepared] = []
    lock = threading.Lock()
    send = agent._send

    def held_up_once(prepared: _Prepared) -> Response:
        """The first batch on its way waits HELD_S before it goes, as on a stalled flow."""
        with lock:
            first = not held
            if first:
                held.append(prepared)
        if first:
            time.sleep(HELD_S)
        return send(prepared)

    agent._send = held_up_once  # type: ignore[method-assign]
    try:
        assert agent.step() == 0.0
        slow = {i.record_id for i in held[0].items}
        delivered = {r for r, _v, _c in delivered_at_centre(central_sqlite, link.device_id)}
        # The first receipt handled is another batch's, while the held one is still out.
        assert delivered and not delivered & slow
        acknowledged = agent.outbox.stats()["delivered"]
        assert 0 < acknowledged <= 8
        for _ in range(100):
            if agent.step() > 0:  # idle: everything sent
                break
        assert len(delivered_at_centre(central_sqlite, link.device_id)) == 40
        assert agent.outbox.stats()["delivered"] == 40
    finally:
        agent.store.close()
