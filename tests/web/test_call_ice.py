"""The call page gives the centre's TURN relay to remote seats only.

A patient reaching the box from outside the clinic LAN (or through the centre's tunnel) gets
iceServers with TURN REST credentials that expire with their join token; a LAN participant
gets none, so their media never hairpins through the centre.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from appliance.box import Box
from appliance.media.join_token import verify
from sync.agent.downsync import apply_change
from tests.web.conftest import csrf_from, sign_in
from tests.web.test_portal import _join, _schedule
from web.remote_seat import RELAYED_ENVIRON_KEY

SECRET = "a-shared-secret-of-the-centre"
URLS = [
    "turn:turn.example.org:3478?transport=udp",
    "turn:turn.example.org:3478?transport=tcp",
    "turns:turn.example.org:443?transport=tcp",
]
_ICE = re.compile(r'data-ice-servers="([^"]*)"')
_TOKEN = re.compile(r'data-token="([^"]+)"')


def _page_ice(client: FlaskClient, path: str, **environ: Any) -> tuple[list[Any], str]:
    page = client.get(path, environ_overrides=environ).get_data(as_text=True)
    ice, token = _ICE.search(page), _TOKEN.search(page)
    assert ice and token, f"no call page at {path}"
    return json.loads(html.unescape(ice.group(1))), token.group(1)


def _admitted_patient(app: Flask) -> tuple[FlaskClient, FlaskClient, str]:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    patient = _join(app, code, "Ana")
    token = csrf_from(clinician, session_url)
    clinician.post(session_url + "/admit", data={"csrf_token": token, "action": "admit_all"})
    return clinician, patient, session_url


def _centre_sends_turn(box: Box) -> None:
    apply_change(
        box.settings.data_dir,
        {
            "type": "turn",
            "key": "relay",
            "seq": 1,
            "body": {"urls": URLS, "secret": SECRET},
        },
    )


def test_remote_patient_gets_turn_with_credentials_that_expire_with_the_seat(
    app: Flask, box: Box
) -> None:
    _clinician, patient, _ = _admitted_patient(app)
    _centre_sends_turn(box)
    servers, token = _page_ice(patient, "/call", REMOTE_ADDR="203.0.113.9")
    assert len(servers) == 1 and servers[0]["urls"] == URLS
    claims = verify(box, token)
    expiry, label = servers[0]["username"].split(":")
    assert int(expiry) == int(claims.expires_at)
    assert "attendance" not in label and "Ana" not in label  # coturn logs usernames
    # coturn's use-auth-secret check: base64(HMAC-SHA1(secret, username)).
    mac = hmac.new(SECRET.encode(), servers[0]["username"].encode(), hashlib.sha1).digest()
    assert servers[0]["credential"] == base64.b64encode(mac).decode()
    # Through the centre's tunnel the address is the tunnel's own (loopback): still remote.
    relayed, _ = _page_ice(patient, "/call", REMOTE_ADDR="127.0.0.1", **{RELAYED_ENVIRON_KEY: True})
    assert relayed and relayed[0]["urls"] == URLS


def test_lan_participants_get_no_turn(app: Flask, box: Box) -> None:
    clinician, patient, session_url = _admitted_patient(app)
    _centre_sends_turn(box)
    lan_patient, _ = _page_ice(patient, "/call", REMOTE_ADDR="127.0.0.1")
    lan_staff, _ = _page_ice(clinician, session_url + "/call", REMOTE_ADDR="127.0.0.1")
    assert lan_patient == [] and lan_staff == []
    # A client cannot claim to be relayed with a header: only the tunnel sets the environ key.
    spoofed, _ = _page_ice(patient, "/call", REMOTE_ADDR="127.0.0.1", HTTP_X_CLINICBOX_RELAYED="1")
    assert spoofed == []


def test_no_turn_until_the_centre_sends_it(app: Flask, box: Box) -> None:
    _clinician, patient, _ = _admitted_patient(app)
    servers, _ = _page_ice(patient, "/call", REMOTE_ADDR="203.0.113.9")
    assert servers == []
    # A malformed description from the centre is ignored (logged), not served.
    apply_change(
        box.settings.data_dir,
        {
            "type": "turn",
            "key": "relay",
            "seq": 2,
            "body": {"urls": ["http://x"], "secret": "s"},
        },
    )
    servers, _ = _page_ice(patient, "/call", REMOTE_ADDR="203.0.113.9")
    assert servers == []
