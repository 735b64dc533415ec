"""The box takes a gzipped SDP offer (the call page sends one where the browser can: on a
20 kbps GPRS uplink the plain offer's upload was most of the join), with or without the
Content-Encoding header (the centre's relay forwards only a list of request headers), and
bounds what it inflates: a bomb gets a 413, broken gzip a 400, never a 500."""

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

OFFER = "/api/media/offer"


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    restrict_host_addresses(["127.0.0.1"])
    yield
    restrict_host_addresses([])


@pytest.mark.timeout(90)
def test_a_gzipped_offer_is_answered_with_or_without_its_header(app: Flask) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    tokens = []
    for name in ("Ana", "Bea"):
        web = _join(app, code, name)
        tokens.append(web)
    clinician.post(
        session_url + "/admit",
        data={"csrf_token": csrf_from(clinician, session_url), "action": "admit_all"},
    )
    ana_token, bea_token = (_token(web, "/call") for web in tokens)

    async def offer_gzipped(name: str, token: str, headers: dict[str, str]) -> None:
        peer = Peer(name)
        try:
            offer = await peer.offer()
            body = gzip.compress(json.dumps({**offer, "token": token}).encode())
            assert len(body) * 2 < len(offer["sdp"])
            reply = await _off_loop(
                lambda: app.test_client().post(
                    OFFER, data=body, headers={"Content-Type": "application/json", **headers}
                )
            )
            assert reply.status_code == 200, reply.data
            answer = reply.get_json()
            assert answer["type"] == "answer" and "a=fingerprint" in answer["sdp"]
            await peer.accept(answer)
        finally:
            await peer.close()

    async def scenario() -> None:
        await offer_gzipped("ana", ana_token, {"Content-Encoding": "gzip"})
        # Through the centre's relay the header is dropped: the box knows gzip by its bytes.
        await offer_gzipped("bea", bea_token, {})

    asyncio.run(scenario())


def test_an_offer_that_inflates_past_the_bound_is_refused(app: Flask) -> None:
    bomb = gzip.compress(b'{"sdp": "' + b"a" * (4 * 1024 * 1024) + b'"}')
    assert len(bomb) < 10_000
    reply = app.test_client().post(
        OFFER, data=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert reply.status_code == 413
    assert reply.get_json()["message"] == "the offer is too large"


@pytest.mark.parametrize(
    "body",
    # mtime=0 and named ids: gzip stamps the time into its header, and test ids that differ
    # from one collection to the next break the parallel run's workers.
    [
        gzip.compress(b'{"sdp": "v=0"}', mtime=0)[:-6],
        gzip.compress(b"not json at all", mtime=0),
        b"\x1f\x8b\x08 this is not deflate",
        gzip.compress(b"{}", mtime=0) + b"trailing",
    ],
    ids=["cut-short", "not-json", "not-deflate", "trailing-bytes"],
)
def test_broken_gzip_or_json_inside_gets_a_clear_400(app: Flask, body: bytes) -> None:
    reply = app.test_client().post(
        OFFER, data=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert reply.status_code == 400
    assert "send JSON with token, sdp and type" in reply.get_json()["message"]
