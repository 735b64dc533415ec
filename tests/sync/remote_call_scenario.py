"""A box in a call with a remote patient, its sync uplink counted: run inside a lab host.

    python -m tests.sync.remote_call_scenario WORKDIR HOST_IP

A lab host has an address that is not loopback (loopback is always the clinic's LAN), so a
real aiortc patient joining from it is on a remote link once the box's LAN is said to be
elsewhere. In one process: a real `clinicbox-central`, a claimed box (store, media loop,
portal, the sync agent started by `start_sync_agent` as `clinicbox serve` does) whose centre
URL is a TCP relay that counts what the box sends. Prints one JSON line of what was seen
before, during and after the call; tests/sync/test_live_call_yields_uplink.py judges it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

# The agent reads its tuning from the environment when it is made: steps a few times a second.
os.environ.update(
    CLINICBOX_SYNC_START_BATCH="4",
    CLINICBOX_SYNC_IDLE_S="0.2",
    CLINICBOX_SYNC_PULL_INTERVAL_S="0.5",
    CLINICBOX_SYNC_CONNECT_TIMEOUT_S="2",
    CLINICBOX_SYNC_READ_TIMEOUT_S="5",
)

from appliance.accounts import create_user  # noqa: E402
from appliance.box import Box  # noqa: E402
from appliance.config import Settings  # noqa: E402
from appliance.media.adaptive import AdaptationSettings  # noqa: E402
from appliance.media.aiortc_glue.seams import restrict_host_addresses  # noqa: E402
from appliance.media.locality import parse_networks  # noqa: E402
from appliance.media.rooms import Rooms  # noqa: E402
from appliance.media_loop import MediaLoop  # noqa: E402
from appliance.setup_code import SetupCode  # noqa: E402
from appliance.store import open_store  # noqa: E402
from sync.agent.service import start_sync_agent  # noqa: E402
from tests.media.conftest import Sfu  # noqa: E402
from tests.media.peer import Peer, wait_for  # noqa: E402
from tests.sync.conftest import Box as ClaimedDataDir  # noqa: E402
from tests.sync.conftest import Central, delivered_at_centre  # noqa: E402
from tests.web.conftest import sign_in  # noqa: E402
from web import create_app  # noqa: E402

# The clinic's LAN as configured: a documentation network, so the lab host is remote.
CLINIC_LAN = "198.51.100.0/24"
QUIET_S = 3.0  # how long the uplink is watched during the call (the agent steps every 1 s)


class CountingRelay:
    """TCP relay to the centre counting the bytes the box sends up (every connection)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = 0
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if count:
                    with self._lock:
                        self.up += len(chunk)
                dst.sendall(chunk)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def main(workdir: Path, host_ip: str) -> dict[str, Any]:
    central = Central(workdir / "central", None)
    relay = CountingRelay(central.port)
    data = ClaimedDataDir(workdir / "box")
    device = data.claim(central, url=f"https://127.0.0.1:{relay.port}").device_id
    data.add_records(10)  # patients and their questionnaires

    settings = Settings(data_dir=data.data_dir, hostname="testbox")
    store = open_store(settings)
    media = MediaLoop()
    box = Box(
        settings=settings,
        tls=None,
        db=store.db,
        media=media,  # type: ignore[arg-type]
        setup_code=SetupCode(settings.secrets_dir / "setup-code.json"),
        store=store,
        rooms=Rooms(AdaptationSettings(tuple(parse_networks(CLINIC_LAN)))),
    )
    restrict_host_addresses([host_ip])
    media.start()
    media.on_shutdown(box.rooms.close_all)
    app = create_app(box, {"TESTING": True})
    user = create_user(store, "facilitator1", "correct horse battery", "clinician")
    group = store.GroupSession.create(
        title="Tuesday group",
        starts_at=dt.datetime.now(dt.UTC),
        facilitator=user,
        capacity=12,
        keep_chat=True,
        state="live",
    )
    staff = app.test_client()
    sign_in(staff, "facilitator1")
    sfu = Sfu(box, app.test_client(), str(group.id), user.id, staff)
    agent = start_sync_agent(box)
    assert agent is not None
    seen: dict[str, Any] = {}

    def delivered() -> int:
        return len(delivered_at_centre(central, device))

    def backlog() -> int:
        return sum(agent.outbox.stats()["lanes"].values())

    try:
        seen["drained_before_call"] = _wait(lambda: backlog() == 0, 30)
        seen["up_before_call"] = relay.up

        async def call() -> None:
            peer = Peer("remote")
            await sfu.join(peer, sfu.admit("Remote patient"))
            seen["connected"] = await wait_for(lambda: peer.pc.connectionState == "connected", 20)
            # The agent takes the pause at its next step.
            seen["paused"] = await wait_for(lambda: agent.status.paused is not None, 10)
            seen["paused_reason"] = agent.status.paused
            seen["remote_call"] = box.rooms.remote_call
            for i in range(5):  # written during the call: due at the centre, held back
                patient = store.Patient.create(display_name=f"Late {i}")
                store.QuestionnaireResponse.create(
                    patient=patient, kind="PHQ9", items=[0] * 9, score=0, severity="minimal"
                )
            up_start = relay.up
            seen["at_centre_in_call"] = delivered()
            await asyncio.sleep(QUIET_S)
            seen["up_during_call"] = relay.up - up_start
            seen["delivered_during_call"] = delivered() - seen["at_centre_in_call"]
            seen["backlog_during_call"] = backlog()
            peer.send({"type": "leave"})
            await asyncio.sleep(0.5)
            await peer.close()

        asyncio.run(call())
        up_after_call = relay.up
        seen["drained_after_call"] = _wait(lambda: backlog() == 0, 30)
        seen["delivered_after_call"] = delivered() - seen["at_centre_in_call"]
        seen["up_after_call"] = relay.up - up_after_call
        seen["paused_after_call"] = agent.status.paused
        seen["remote_call_after"] = box.rooms.remote_call
    finally:
        media.stop(timeout=5)
        store.close()
        central.stop()
    return seen


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2])), flush=True)
