"""Portal actions that reach the running call: breakout rooms split the media, and removing
a patient un-admits them as well as dropping them from the call.

Real aiortc peers join through the portal's own pages and signalling endpoint; the SFU runs
on the box's media loop (tests/web/conftest.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance.box import Box
from appliance.media.aiortc_glue.seams import restrict_host_addresses
from tests.media.peer import Peer, wait_for
from tests.web.conftest import csrf_from, sign_in
from tests.web.test_portal import _join, _schedule

_TOKEN = re.compile(r'data-token="([^"]+)"')


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    restrict_host_addresses(["127.0.0.1"])
    yield
    restrict_host_addresses([])


def _token(client: FlaskClient, path: str) -> str:
    match = _TOKEN.search(client.get(path).get_data(as_text=True))
    assert match, f"no join token on {path}"
    return match.group(1)


async def _off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Flask calls block on the media loop; keep this loop (the peers') running meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args, **kwargs))


async def _enter(client: FlaskClient, peer: Peer, token: str) -> None:
    offer = await peer.offer()
    reply = await _off_loop(
        lambda: client.post("/api/media/offer", json={**offer, "token": token})
    )
    assert reply.status_code == 200, reply.get_json()
    await peer.accept(reply.get_json())


def _got(peer: Peer, **event: Any) -> bool:
    return any(all(e.get(k) == v for k, v in event.items()) for e in peer.events)


@pytest.mark.timeout(120)
def test_breakouts_split_the_call_and_remove_unadmits(app: Flask, box: Box) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    group_id = session_url.rsplit("/", 1)[1]
    ana_web, ben_web = _join(app, code, "Ana"), _join(app, code, "Ben")
    token = csrf_from(clinician, session_url)
    clinician.post(session_url + "/admit", data={"csrf_token": token, "action": "admit_all"})
    Attendance = box.store.Attendance  # noqa: N806
    by_name = {a.display_name: a.id for a in Attendance.select()}
    ana_id, ben_id = f"attendance/{by_name['Ana']}", f"attendance/{by_name['Ben']}"
    me = "user:1"
    tokens = {
        "ana": _token(ana_web, "/call"), "ben": _token(ben_web, "/call"),
        "me": _token(clinician, session_url + "/call"),
    }
    signalling = app.test_client()

    def post(path: str, **form: str) -> Any:
        return clinician.post(session_url + path, data={"csrf_token": token, **form})

    async def scenario() -> None:
        ana, ben, fac = Peer("ana"), Peer("ben"), Peer("fac")
        try:
            for peer, name in ((ana, "ana"), (ben, "ben")):
                await _enter(signalling, peer, tokens[name])
            # A staff seat's token is not enough without that clinician's own session.
            stranger = Peer("stranger")
            try:
                with pytest.raises(AssertionError, match="sign in as this staff member"):
                    await _enter(signalling, stranger, tokens["me"])
            finally:
                await stranger.close()
            await _enter(clinician, fac, tokens["me"])
            assert await wait_for(lambda: ana.mid_showing("audio", ben_id) is not None
                                  and fac.mid_showing("audio", ana_id) is not None, 20)

            # Two rooms, dealt in joining order: Ana in 1, Ben in 2, the facilitator stays in
            # the main room.
            assert (await _off_loop(post, "/breakout", action="split", rooms="2")
                    ).status_code == 302
            room = box.rooms.rooms[group_id]
            assert room.breakouts == {ana_id: 1, ben_id: 2}
            assert await wait_for(lambda: _got(ana, type="breakout", room=1)
                                  and _got(ben, type="breakout", room=2), 5)
            assert await wait_for(
                lambda: ana.mid_showing("audio", ben_id) is None
                and ben.mid_showing("audio", ana_id) is None
                and fac.mid_showing("audio", ana_id) is None
                and ana.mid_showing("audio", me) is None, 5
            ), (ana.slots, ben.slots, fac.slots)
            page = await _off_loop(lambda: clinician.get(session_url).get_data(as_text=True))
            assert "In the call you are in the main room." in page

            # The facilitator joins breakout room 2: Ben hears them, Ana does not.
            assert (await _off_loop(post, "/breakout", action="visit", room="5")
                    ).status_code == 400
            assert (await _off_loop(post, "/breakout", action="visit", room="2")
                    ).status_code == 302
            assert room.breakouts == {ana_id: 1, ben_id: 2, me: 2}
            assert await wait_for(lambda: _got(fac, type="breakout", room=2)
                                  and ben.mid_showing("audio", me) is not None
                                  and fac.mid_showing("audio", ben_id) is not None, 5)
            assert ana.mid_showing("audio", me) is None

            # Everyone back: all hear each other again.
            assert (await _off_loop(post, "/breakout", action="back")).status_code == 302
            assert room.breakouts == {}
            assert await wait_for(lambda: _got(ana, type="breakout", room=0)
                                  and _got(fac, type="breakout", room=0)
                                  and ana.mid_showing("audio", ben_id) is not None, 5)

            # The call view's Remove: un-admitted in the portal and dropped from the call.
            reply = await _off_loop(lambda: clinician.post(
                session_url + "/admit", data={"action": "remove", "attendance": by_name["Ben"]},
                headers={"Accept": "application/json", "X-CSRF-Token": token},
            ))
            assert reply.status_code == 200 and reply.get_json()["status"] == "removed"
            assert await wait_for(lambda: _got(ben, type="removed")
                                  and _got(ana, type="participant", participant=ben_id), 5)
            assert Attendance.get_by_id(by_name["Ben"]).status == "removed"
            again = Peer("ben-again")
            try:
                offer = await again.offer()
                refused = await _off_loop(lambda: signalling.post(
                    "/api/media/offer", json={**offer, "token": tokens["ben"]}))
                assert refused.status_code == 403
                assert "not been admitted" in refused.get_json()["message"]
            finally:
                await again.close()
        finally:
            for peer in (ana, ben, fac):
                await peer.close()

    asyncio.run(scenario())


def test_remove_without_csrf_or_for_someone_absent_is_refused(app: Flask) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    _join(app, code, "Ana")
    json_headers = {"Accept": "application/json"}
    reply = clinician.post(session_url + "/admit", data={"action": "remove", "attendance": "x"},
                           headers=json_headers)
    assert reply.status_code == 400 and "form expired" in reply.get_json()["message"]
    token = csrf_from(clinician, session_url)
    reply = clinician.post(session_url + "/admit", data={"action": "remove", "attendance": "x"},
                           headers=json_headers | {"X-CSRF-Token": token})
    assert reply.status_code == 404
    assert reply.get_json()["message"] == "That person is not in the session."
    patient = _join(app, code, "Ben")
    ben_token = csrf_from(patient, "/join")
    reply = patient.post(session_url + "/admit", data={"action": "remove", "attendance": "x"},
                         headers=json_headers | {"X-CSRF-Token": ben_token})
    assert reply.status_code == 401  # a patient is no facilitator
