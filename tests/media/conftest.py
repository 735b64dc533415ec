"""An in-process box (store, media loop, portal) with a live group session to join."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from appliance.accounts import create_user
from appliance.box import Box
from appliance.config import Settings
from appliance.media.aiortc_glue.seams import restrict_host_addresses
from appliance.media.join_token import issue
from appliance.media_loop import MediaLoop
from appliance.setup_code import SetupCode
from appliance.store import open_store
from tests.media.peer import Peer
from tests.web.conftest import PASSWORD, sign_in
from web import create_app


@dataclass
class Sfu:
    box: Box
    client: FlaskClient
    session_id: str
    facilitator_id: int
    # Signed in as the facilitator: a staff seat needs its clinician's own live session.
    staff_client: FlaskClient
    seats: int = 0
    peers: list[Peer] = field(default_factory=list)

    def admit(self, name: str) -> str:
        """An admitted patient seat; returns its participant id."""
        store = self.box.store
        person = store.Patient.create(display_name=name)
        attendance = store.Attendance.create(
            session=self.session_id, patient=person, display_name=name, status="admitted"
        )
        return f"attendance/{attendance.id}"

    def token(self, participant: str, role: str = "patient") -> str:
        return issue(self.box, session_id=self.session_id, participant=participant, role=role)

    def post_offer(
        self, body: dict[str, Any], role: str = "patient"
    ) -> tuple[int, dict[str, Any]]:
        client = self.staff_client if role == "facilitator" else self.client
        reply = client.post("/api/media/offer", json=body)
        return reply.status_code, reply.get_json()

    async def join(
        self, peer: Peer, participant: str, role: str = "patient", resume: str | None = None
    ) -> None:
        offer = await peer.offer()
        loop = asyncio.get_running_loop()
        request = {**offer, "token": self.token(participant, role)}
        if resume is not None:
            request["resume"] = resume
        status, body = await loop.run_in_executor(None, self.post_offer, request, role)
        assert status == 200, body
        await peer.accept(body)
        self.peers.append(peer)

    def stats(self) -> dict[str, Any]:
        return self.box.media.call(self.box.rooms.snapshot(), timeout=5)


@pytest.fixture
def sfu(tmp_path: Path) -> Iterator[Sfu]:
    restrict_host_addresses(["127.0.0.1"])
    settings = Settings(data_dir=tmp_path, hostname="testbox")
    store = open_store(settings)
    media = MediaLoop()
    box = Box(
        settings=settings, tls=None, db=store.db, media=media,  # type: ignore[arg-type]
        setup_code=SetupCode(settings.secrets_dir / "setup-code.json"), store=store,
    )
    media.start()
    media.on_shutdown(box.rooms.close_all)
    app = create_app(box, {"TESTING": True})
    user = create_user(store, "facilitator1", PASSWORD, "clinician")
    group = store.GroupSession.create(
        title="Tuesday group", starts_at=dt.datetime.now(dt.UTC), facilitator=user,
        capacity=12, keep_chat=True, state="live",
    )
    staff = app.test_client()
    sign_in(staff, "facilitator1")
    yield Sfu(box, app.test_client(), str(group.id), user.id, staff)
    media.stop(timeout=5)
    store.close()
    restrict_host_addresses([])
