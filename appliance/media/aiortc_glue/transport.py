"""Named operations on aiortc's DTLS and ICE transports that reach past its API.

Each one says which private part of aiortc 1.16.0 / aioice 0.13.0 it uses;
`tests/media/test_aiortc_seams.py` fails when an upgrade moves one of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc.rtcdtlstransport import RTCDtlsTransport
    from aiortc.rtcicetransport import RTCIceTransport

Send = Callable[[bytes], Awaitable[None]]


def wrap_transport_send(transport: RTCDtlsTransport, send: Send) -> Send:
    """Make `send` the way every RTP and RTCP packet of the transport leaves; return the send
    it replaced, which `send` must call. Replaces `RTCDtlsTransport._send_rtp`."""
    original: Send = transport._send_rtp
    transport._send_rtp = send  # type: ignore[method-assign,assignment]
    return original


def unwrap_transport_send(transport: RTCDtlsTransport, send: Send, original: Send) -> None:
    """Give the transport `original` back, if `send` is still the one installed."""
    if transport._send_rtp == send:
        transport._send_rtp = original  # type: ignore[method-assign,assignment]


def datagrams_received(transport: RTCDtlsTransport) -> int | None:
    """Datagrams the transport has received so far (media, RTCP, data channel, DTLS alike),
    from `RTCDtlsTransport._get_stats()`; None if it reports none."""
    for stats in transport._get_stats().values():
        return int(getattr(stats, "packetsReceived", 0))
    return None


def nominated_pair(ice: RTCIceTransport) -> Any | None:
    """aioice's nominated candidate pair (None until connected), from
    `RTCIceTransport._connection._nominated`."""
    for pair in getattr(ice._connection, "_nominated", {}).values():
        return pair
    return None
