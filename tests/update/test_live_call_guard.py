"""Never update during a live session: with a real `clinicbox serve` (started by the launcher)
and a real aiortc patient in a call over loopback, `clinicbox update import` is refused
(exit 2, one line), the 02:30 installer defers and keeps the bundle, and both install once the
patient has left; `--during-call` overrides. A crashed server's file blocks nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from appliance.accounts import create_user
from appliance.config import load_settings
from appliance.live_call import live_call_path, live_participants, write_live_call
from appliance.media.aiortc_glue.seams import restrict_host_addresses
from appliance.media.join_token import issue_join_token, token_secret
from appliance.store import open_store
from tests.media.peer import Peer, wait_for
from tests.update.conftest import Box, Bundles, Supervisor, make_box, wait_serving
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.timeout(600)


def test_a_file_left_by_a_dead_or_hung_server_counts_as_no_call(tmp_path: Path) -> None:
    path = live_call_path(tmp_path)
    write_live_call(path, 3)
    assert live_participants(tmp_path) == 3  # this process is alive and just wrote
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "pid": gone.pid}))
    assert live_participants(tmp_path) == 0  # crashed server (kill -9 leaves the file)
    path.write_text(json.dumps(doc))
    assert live_participants(tmp_path, now=doc["at"] + 31) == 0  # not refreshed for 31 s
    path.write_text("{half a fi")
    assert live_participants(tmp_path) == 0


@pytest.fixture
def serving(tmp_path: Path, bundles: Bundles) -> Iterator[Box]:
    """A box serving 1.0.0 under the launcher, its media on loopback."""
    box = make_box(tmp_path, bundles)
    box.env["CLINICBOX_MEDIA_ADDRESSES"] = "127.0.0.1"
    installed = box.update("import", str(bundles.v100))
    assert installed.returncode == 0, installed.stderr
    supervisor = Supervisor(box, tmp_path / "serve.log").start()
    restrict_host_addresses(["127.0.0.1"])
    try:
        wait_serving(box, "1.0.0")
        yield box
    finally:
        restrict_host_addresses([])
        supervisor.stop()


def _seat(box: Box) -> tuple[str, str]:
    """A live session with one admitted patient, made in the box's own store as the portal
    would; returns the session id and the patient's join token."""
    settings = load_settings(env=box.env)
    store = open_store(settings)
    try:
        clinician = store.User.get_or_none(store.User.username == "dr.ada") or create_user(
            store, "dr.ada", PASSWORD, "clinician"
        )
        group = store.GroupSession.create(
            title="Evening group",
            starts_at=dt.datetime.now(dt.UTC),
            facilitator=clinician,
            capacity=12,
            state="live",
        )
        person = store.Patient.create(display_name="Pat")
        seat = store.Attendance.create(
            session=group, patient=person, display_name="Pat", status="admitted"
        )
        secret = token_secret(SimpleNamespace(settings=settings, store=store))
        token = issue_join_token(secret, str(group.id), f"attendance/{seat.id}", "patient")
    finally:
        store.close()
    return str(group.id), token


async def _join(box: Box, token: str) -> Peer:
    peer = Peer("pat")
    offer = await peer.offer()
    context = ssl.create_default_context(cafile=str(box.data / "tls" / "ca.pem"))

    def post() -> dict[str, str]:
        request = urllib.request.Request(
            f"https://127.0.0.1:{box.port}/api/media/offer",
            data=json.dumps({**offer, "token": token}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=context, timeout=30) as resp:
            return dict(json.loads(resp.read()))

    answer = await asyncio.get_running_loop().run_in_executor(None, post)
    await peer.accept(answer)
    assert await wait_for(lambda: peer.pc.connectionState == "connected", 20)
    return peer


async def _leave(peer: Peer) -> None:
    peer.send({"type": "leave"})  # a goodbye, as the call page sends: no seat is held
    await asyncio.sleep(0.3)
    await peer.close()


def _status(box: Box) -> dict[str, object]:
    shown = box.update("status", "--json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def test_no_install_while_a_patient_is_in_the_call(serving: Box, bundles: Bundles) -> None:
    box = serving
    _, token = _seat(box)
    ready = box.data / "updates" / "ready"
    ready.mkdir(parents=True)
    downloaded = ready / "clinicbox-1.0.1-0123456789ab.cbup"
    shutil.copy(bundles.v101, downloaded)

    async def in_call() -> None:
        peer = await _join(box, token)
        try:
            assert await wait_for(lambda: live_participants(box.data) == 1, 10)
            started = time.monotonic()
            refused = box.update("import", str(bundles.v101))
            print(f"import refused in {time.monotonic() - started:.2f} s")
            assert refused.returncode == 2
            assert refused.stderr.count("\n") == 1
            assert refused.stderr.endswith(
                "a call with 1 participant is live; run again after it ends, "
                "or pass --during-call\n"
            )
            timer = box.update("import-downloaded")
            assert timer.returncode == 0, timer.stderr
            assert json.loads(timer.stdout)["outcome"] == "deferred: call live"
            assert downloaded.exists()  # kept for the next run
            status = _status(box)
            assert status["current"] == "1.0.0"
            last = status["last"]
            assert isinstance(last, dict)
            assert (last["version"], last["outcome"]) == ("1.0.1", "deferred: call live")
            assert "1 participant is live" in last["reason"]
        finally:
            await _leave(peer)
        assert await wait_for(lambda: live_participants(box.data) == 0, 10)

    asyncio.run(in_call())
    # The timer's next run, with nobody in the call: installed and committed.
    started = time.monotonic()
    timer = box.update("import-downloaded")
    print(f"import-downloaded after the call: {time.monotonic() - started:.1f} s")
    assert timer.returncode == 0, timer.stderr
    assert json.loads(timer.stdout)["outcome"] == "committed", timer.stdout
    assert not downloaded.exists()
    wait_serving(box, "1.0.1")

    # --during-call: the technician chooses to end the call.
    async def override() -> None:
        _, token2 = _seat(box)
        peer = await _join(box, token2)
        try:
            assert await wait_for(lambda: live_participants(box.data) == 1, 10)
            forced = box.update("import", str(bundles.v102_broken), "--during-call", "--no-confirm")
            assert forced.returncode == 0, forced.stderr
            assert json.loads(forced.stdout)["outcome"] == "on trial"
        finally:
            await peer.close()

    asyncio.run(override())
