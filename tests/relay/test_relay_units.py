"""The relay's small rules: cookie confinement, the relayed-request environ, frames."""

from __future__ import annotations

import pytest

from sync.agent.relayed_requests import RELAYED, BadRelayedRequest, relayed_environ
from sync.protocol.tunnel_frames import (
    HEADER,
    MAX_PAYLOAD,
    FrameError,
    FrameReader,
    FrameType,
    encode,
    encode_data,
)
from sync.server.relay import RelayFront, confine_cookie


def test_cookies_are_confined_to_the_clinic_prefix() -> None:
    prefix = "/c/hill/"
    assert confine_cookie("session=abc; HttpOnly; Path=/; SameSite=Lax", prefix) == (
        "session=abc; Path=/c/hill/; HttpOnly; SameSite=Lax"
    )
    assert confine_cookie("a=1; Domain=centre.example; Path=/join", prefix) == (
        "a=1; Path=/c/hill/join"
    )
    assert confine_cookie("a=1", prefix) == "a=1; Path=/c/hill/"
    assert confine_cookie("a=1; path=relative", prefix) == "a=1; Path=/c/hill/"


def _head(**changes: object) -> dict:
    head = {
        "method": "POST",
        "script": "/c/hill",
        "path": "/join",
        "query": "a=1",
        "host": "centre.example:8443",
        "headers": [
            ["Content-Type", "application/x-www-form-urlencoded"],
            ["Cookie", "session=x"],
        ],
        "client": "203.0.113.7",
    }
    head.update(changes)
    return head


def test_relayed_environ_takes_the_client_address_from_the_centre() -> None:
    environ = relayed_environ(_head(), b"code=1")
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert environ[RELAYED] is True
    assert environ["SCRIPT_NAME"] == "/c/hill" and environ["PATH_INFO"] == "/join"
    assert environ["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert environ["CONTENT_LENGTH"] == "6" and environ["wsgi.input"].read() == b"code=1"
    assert environ["HTTP_COOKIE"] == "session=x"
    assert "HTTP_X_FORWARDED_FOR" not in environ
    assert environ["wsgi.url_scheme"] == "https"


def test_the_centre_forwards_accept_encoding_and_no_client_claims() -> None:
    """Accept-Encoding reaches the box (it gzips static files and SDP answers for the
    patient's slow link); a patient's X-Forwarded-For does not (the centre writes its own,
    for boxes of earlier releases)."""
    headers = RelayFront._headers(
        {
            "HTTP_ACCEPT_ENCODING": "gzip, br",
            "HTTP_X_FORWARDED_FOR": "10.9.8.7",
            "HTTP_X_REAL_IP": "10.9.8.6",
            "REMOTE_ADDR": "203.0.113.7",
        }
    )
    assert headers == [["Accept-Encoding", "gzip, br"], ["X-Forwarded-For", "203.0.113.7"]]


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_a_forwarding_header_never_sets_the_client_address(header: str) -> None:
    """Only the head's `client` field (what the centre saw) names the client: an
    X-Forwarded-For among the headers, whoever put it there, is dropped."""
    head = _head()
    head["headers"] = [*head["headers"], [header, "198.51.100.99"]]
    environ = relayed_environ(head, b"")
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert "198.51.100.99" not in str(sorted(environ.items(), key=str))
    del head["client"]
    with pytest.raises(BadRelayedRequest):
        relayed_environ(head, b"")


@pytest.mark.parametrize(
    "changes",
    [
        {"method": "DELETE"},
        {"path": "join"},
        {"script": "/admin"},
        {"client": "not an address"},
        {"client": ""},
        {"client": None},
        {"headers": [["Cookie"]]},
        {"query": 3},
    ],
)
def test_a_malformed_head_is_refused(changes: dict) -> None:
    with pytest.raises(BadRelayedRequest):
        relayed_environ(_head(**changes), b"")


def test_frames_round_trip_in_pieces_and_refuse_garbage() -> None:
    wire = encode(FrameType.PING) + b"".join(encode_data(7, b"x" * (MAX_PAYLOAD + 10)))
    reader = FrameReader()
    frames = []
    for i in range(0, len(wire), 1000):
        frames += reader.feed(wire[i : i + 1000])
    assert [(f.kind, f.stream, len(f.payload)) for f in frames] == [
        (FrameType.PING, 0, 0),
        (FrameType.DATA, 7, MAX_PAYLOAD),
        (FrameType.DATA, 7, 10),
    ]
    with pytest.raises(FrameError):
        FrameReader().feed(HEADER.pack(MAX_PAYLOAD + 1, FrameType.DATA, 1))
    with pytest.raises(FrameError):
        FrameReader().feed(HEADER.pack(0, 99, 1))
