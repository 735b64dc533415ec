"""The box gzips its static files and SDP answers for clients that accept it (a remote
patient's join waits on them over a slow link), and nothing that holds a lasting secret."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator

import pytest
from flask import Flask

from appliance.media.aiortc_glue.seams import restrict_host_addresses
from tests.media.peer import Peer
from tests.web.conftest import csrf_from, sign_in
from tests.web.test_call_controls import _off_loop, _token
from tests.web.test_portal import _join, _schedule

GZIP = {"Accept-Encoding": "gzip, deflate, br"}


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    restrict_host_addresses(["127.0.0.1"])
    yield
    restrict_host_addresses([])


def test_the_call_script_and_styles_are_gzipped_for_a_client_that_accepts_it(app: Flask) -> None:
    client = app.test_client()
    for path in ("/static/call.js", "/static/call.css", "/static/portal.css"):
        plain = client.get(path)
        assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
        packed = client.get(path, headers=GZIP)
        assert packed.status_code == 200
        assert packed.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in packed.headers["Vary"]
        assert int(packed.headers["Content-Length"]) == len(packed.data)
        assert gzip.decompress(packed.data) == plain.data
        assert len(packed.data) < len(plain.data) / 2
    refused = client.get("/static/call.js", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers


def test_pages_with_a_csrf_token_are_never_compressed(app: Flask) -> None:
    """A compressed page holding a lasting secret next to text a client chose is what a
    compression side channel (BREACH) reads: pages stay uncompressed."""
    client = app.test_client()
    sign_in(client)
    for path in ("/join", "/dashboard", "/sessions/new"):
        page = client.get(path, headers=GZIP)
        assert page.status_code == 200 and b"csrf" in page.data, path
        assert "Content-Encoding" not in page.headers, path


@pytest.mark.timeout(60)
def test_the_sdp_answer_is_gzipped(app: Flask) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    ana_web = _join(app, code, "Ana")
    clinician.post(
        session_url + "/admit",
        data={"csrf_token": csrf_from(clinician, session_url), "action": "admit_all"},
    )
    token = _token(ana_web, "/call")

    async def scenario() -> None:
        peer = Peer("ana")
        try:
            offer = await peer.offer()
            reply = await _off_loop(
                lambda: app.test_client().post(
                    "/api/media/offer", json={**offer, "token": token}, headers=GZIP
                )
            )
            assert reply.status_code == 200
            assert reply.headers["Content-Encoding"] == "gzip"
            answer = json.loads(gzip.decompress(reply.data))
            assert answer["type"] == "answer" and "a=fingerprint" in answer["sdp"]
            assert len(reply.data) < len(json.dumps(answer)) / 2
            await peer.accept(answer)
        finally:
            await peer.close()

    asyncio.run(scenario())
