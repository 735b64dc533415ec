"""Patient pages through the centre's relay, with real processes and real TLS.

A real `clinicbox-central serve` (2 workers) and a real claimed `clinicbox serve` whose
tunnel is up; a patient's HTTPS client (cookies kept by Path) talks only to the centre.
The tests that only make requests share one such pair (`relayed_module`), each from its own
source addresses so no test's wrong codes hold back another's; the one that stops the box
has its own (`relayed`).
"""

from __future__ import annotations

import gzip
import http.client
import json
import re
import ssl
from urllib.parse import urlsplit

import pytest

from tests.relay.conftest import PASSWORD, SLUG, Patient, RelayedBox

pytestmark = pytest.mark.timeout(120)


def announce_large_body(url: str) -> int:
    parts = urlsplit(url)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=10)
    try:
        conn.putrequest("POST", parts.path)
        conn.putheader("Content-Type", "application/x-www-form-urlencoded")
        conn.putheader("Content-Length", str(3 * 1024 * 1024))
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_patient_joins_through_the_relay(relayed_module: RelayedBox) -> None:
    patient = relayed_module.patient()
    token = patient.csrf("/join")
    # The session cookie is confined to the clinic's prefix on the centre's host.
    paths = {c.path for c in patient.jar}
    assert paths == {f"/c/{SLUG}/"}, paths
    status, _h, page = patient.request(
        "/join", {"code": relayed_module.code, "name": "Sam", "csrf_token": token}
    )
    assert status == 200 and b"agree" in page
    status, headers, _ = patient.request(
        "/join/consent",
        {"code": relayed_module.code, "name": "Sam", "agree": "yes", "csrf_token": token},
    )
    assert status == 302
    assert headers["Location"] == f"/c/{SLUG}/join/wait"
    status, _h, page = patient.request("/join/wait")
    assert status == 200 and b"will let you in soon" in page
    # Links in the page stay under the clinic's prefix.
    assert all(
        href.startswith(f"/c/{SLUG}/".encode())
        for href in re.findall(rb'(?:href|action|src)="(/[^"]*)"', page)
    )
    status, headers, body = patient.request("/join/state", headers={"Accept": "application/json"})
    assert status == 200 and json.loads(body)["status"] == "waiting"
    assert headers["Cache-Control"] == "no-store"
    status, _h, script = patient.request("/static/call.js")
    assert status == 200 and b"probeUrl" in script
    # A browser's Accept-Encoding reaches the box, and its gzip comes back through the relay.
    status, headers, packed = patient.request(
        "/static/call.js", headers={"Accept-Encoding": "gzip"}
    )
    assert status == 200 and headers.get("Content-Encoding") == "gzip", headers
    assert gzip.decompress(packed) == script and len(packed) < len(script) / 2
    assert patient.request("/join/ping")[0] == 204
    # Signalling is reachable (a forged join token is refused by the box itself, not a 404).
    status, _h, body = patient.request(
        "/api/media/offer", json_body=b'{"token": "x", "sdp": "v=0", "type": "offer"}'
    )
    assert status == 403 and json.loads(body)["error"] == "media"
    # Another patient without the cookie is not in the waiting room.
    assert Patient(relayed_module.relay).request("/join/wait")[0] == 403


STAFF_PATHS = [
    "/dashboard",
    "/login",
    "/setup",
    "/technician",
    "/healthz",
    "/ca.pem",
    "/sessions",
    "/sessions/x/call",
    "/patients",
    "/",
]


def test_staff_setup_and_technician_routes_are_404_through_the_relay(
    relayed_module: RelayedBox,
) -> None:
    patient = relayed_module.patient()
    answers = {path: patient.request(path)[0] for path in STAFF_PATHS}
    assert answers == dict.fromkeys(STAFF_PATHS, 404)
    # A staff form post is a 404 too (not a CSRF error that would show the route exists).
    status, _h, _b = patient.request(
        "/login", {"username": "dr.ada", "password": "correct horse battery"}
    )
    assert status == 404
    # Bodies are bounded at the centre, before anything reaches the box (answered as soon as
    # the headers announce too much).
    assert announce_large_body(relayed_module.relay + "/join") == 413
    # On the clinic's LAN the same routes answer; the technician page shows the tunnel.
    assert relayed_module.box.get("/healthz")[0] == 200
    technician = Patient(relayed_module.box.base_url)
    token = technician.csrf("/login")
    status, _h, _b = technician.request(
        "/login", {"username": "tech.tom", "password": PASSWORD, "csrf_token": token}
    )
    assert status == 302
    status, _h, page = technician.request("/technician")
    assert status == 200
    assert f"connected through the centre: {relayed_module.relay}/join".encode() in page


def test_the_centre_answers_a_plain_page_when_the_box_is_offline(relayed: RelayedBox) -> None:
    relayed.box.stop()
    status, headers, page = relayed.patient().request("/join")
    assert status == 503
    assert b"cannot be reached right now" in page
    assert headers["Retry-After"] == "30"
    status, _h, page = Patient(f"{relayed.central.url}/c/no-such-clinic").request("/join")
    assert status == 404 and b"No such clinic" in page


def test_wrong_codes_are_limited_per_address_the_centre_saw(relayed_module: RelayedBox) -> None:
    """The box counts wrong session codes per remote address as the centre saw it; what a
    patient claims in X-Forwarded-For changes nothing."""
    guesser = relayed_module.patient(source="127.0.0.2")
    token = guesser.csrf("/join")
    wrong = "000000000" if relayed_module.code != "000000000" else "111111111"
    statuses = []
    for i in range(11):
        statuses.append(
            guesser.request(
                "/join",
                {"code": wrong, "name": "X", "csrf_token": token},
                headers={"X-Forwarded-For": f"10.9.8.{i}"},
            )[0]
        )
    assert statuses == [404] * 10 + [429]
    # Another address (another patient) is not held back.
    other = relayed_module.patient(source="127.0.0.3")
    token = other.csrf("/join")
    assert other.request("/join", {"code": wrong, "name": "Y", "csrf_token": token})[0] == 404


def test_x_forwarded_for_is_not_trusted_on_a_direct_request(relayed_module: RelayedBox) -> None:
    """On the LAN the box ignores X-Forwarded-For: rotating it does not escape the limit."""
    # Its own address: the other tests' relayed requests reach the box as 127.0.0.1.
    direct = Patient(relayed_module.box.base_url, source="127.0.0.4")
    token = direct.csrf("/join")
    wrong = "000000000" if relayed_module.code != "000000000" else "111111111"
    statuses = [
        direct.request(
            "/join",
            {"code": wrong, "name": "X", "csrf_token": token},
            headers={"X-Forwarded-For": f"10.1.2.{i}"},
        )[0]
        for i in range(11)
    ]
    assert statuses[-1] == 429
