"""ICE consent freshness on a slow path: two real aioice connections on loopback, with the
answering side's STUN responses held back as a long round trip would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import aioice.ice
import pytest
from aioice import stun

from appliance.media.aiortc_glue import consent

#: An EDGE-like round trip: longer than aioice's 0.5 s wait for a consent answer.
ROUND_TRIP_S = 0.8
QueryConsent = Callable[[aioice.ice.Connection], Coroutine[Any, Any, None]]


@pytest.fixture(autouse=True)
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consent checks every 0.2 s (both implementations), ours expiring after 2 s."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(consent, "INTERVAL_S", 0.2)
    monkeypatch.setattr(consent, "EXPIRY_S", 2.0)


async def connected_pair() -> tuple[aioice.ice.Connection, aioice.ice.Connection]:
    a = aioice.ice.Connection(ice_controlling=True, components=1, use_ipv6=False)
    b = aioice.ice.Connection(ice_controlling=False, components=1, use_ipv6=False)
    for conn in (a, b):
        await conn.gather_candidates()
    for near, far in ((a, b), (b, a)):
        near.remote_username, near.remote_password = far.local_username, far.local_password
        for candidate in far.local_candidates:
            await near.add_remote_candidate(candidate)
        await near.add_remote_candidate(None)
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 10)
    return a, b


def answer_late(conn: aioice.ice.Connection, delay_s: float | None) -> None:
    """Hold `conn`'s STUN responses for delay_s (None: drop them)."""
    loop = asyncio.get_running_loop()
    for protocol in conn._protocols:
        send = protocol.send_stun

        def held(message: stun.Message, addr: tuple[str, int], send=send) -> None:
            if message.message_class != stun.Class.RESPONSE:
                send(message, addr)
            elif delay_s is not None:
                loop.call_later(delay_s, send, message, addr)

        protocol.send_stun = held  # type: ignore[method-assign]


def open_after(query_consent: QueryConsent, delay_s: float | None,
               seconds: list[float], monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the checking side is still open at each of `seconds` after answers slow."""
    monkeypatch.setattr(aioice.ice.Connection, "query_consent", query_consent)

    async def scenario() -> list[bool]:
        a, b = await connected_pair()
        answer_late(b, delay_s)
        start, seen = asyncio.get_running_loop().time(), []
        for at in seconds:
            await asyncio.sleep(max(0.0, start + at - asyncio.get_running_loop().time()))
            seen.append(bool(a._nominated))
        await a.close()
        await b.close()
        return seen

    return asyncio.run(scenario())


def test_stock_aioice_drops_a_connection_whose_round_trip_is_long(monkeypatch):
    # The control: why the replacement exists (six unanswered checks, each waited on 0.5 s,
    # 0.2 s apart: ~4.2 s).
    assert open_after(consent.AIOICE_QUERY_CONSENT, ROUND_TRIP_S, [6.0], monkeypatch) == [
        False]


def test_late_answers_keep_consent(monkeypatch):
    # Twice the expiry, ~20 checks each answered 0.8 s late.
    assert open_after(consent.query_consent, ROUND_TRIP_S, [4.0], monkeypatch) == [True]


def test_consent_expires_when_nothing_answers(monkeypatch):
    # Open before the 2 s expiry; closed once the check in flight then (up to 7.5 s with its
    # retransmissions) has failed too.
    assert open_after(consent.query_consent, None, [1.5, 10.0], monkeypatch) == [True, False]


def test_install_replaces_aioice_consent(monkeypatch):
    monkeypatch.setattr(aioice.ice.Connection, "query_consent", consent.AIOICE_QUERY_CONSENT)
    consent.install()
    assert aioice.ice.Connection.query_consent is consent.query_consent
