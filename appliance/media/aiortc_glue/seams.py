"""The module-level aiortc and aioice replacements the SFU relies on, installed in one place.

(Per sender, receiver and transport operations are `aiortc_glue.rtp` and `.transport`.)

aiortc 1.16.0 is pinned exactly because of these; `tests/media/test_aiortc_seams.py` fails
loudly when an upgrade moves them:
- `aiortc.rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error)`: the thread
  each receiver starts to decode (it calls `get_decoder` by its module-level name). For
  receivers running on a forwarding loop (the box's media loop) ours puts each reassembled
  frame on the track's queue as an `EncodedFrame` instead of decoding it; peer connections on
  any other loop (tests' clients, the low tier) keep aiortc's decoding.
- `aiortc.rtcrtpreceiver.JitterBuffer`: the receiver builds its jitter buffer from this name
  (on its own loop); ours bounds how long a lost packet can hold video, and audio receivers
  on a forwarding loop get a buffer that releases each Opus packet as it arrives.
- `RTCRtpSender._send_keyframe` (subscriber PLI/FIR) and `RTCRtpReceiver._send_rtcp_pli`
  (publisher PLI): in pack mode the sender ignores keyframe requests, so the SFU routes them.
- `aiortc.rtcrtpreceiver.depayload(codec, payload)`: the receiver depacketizes every packet
  by this name before its jitter buffer; ours hands back the payload of a VP8 packet whose
  frames nobody wants (`forwarding.UNWANTED`) as it is, and is aiortc's otherwise.
- `aiortc.codecs.vpx.Vp8Encoder.pack`: splits a frame into RTP payloads; ours honours an
  `EncodedFrame.max_payload` (smaller packets for weak links) and is aiortc's otherwise.
- `aioice.ice.get_host_addresses`: which local addresses ICE offers as host candidates.
- `aioice.ice.Connection.query_consent`: replaced by `aiortc_glue.consent` (installed by
  `Rooms`), since aioice's gives up on a consent check after 0.5 s and so drops every peer
  whose round trip is longer (EDGE, GPRS) about 30 s after connecting.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from collections.abc import Sequence

import aioice.ice
from aiortc import rtcrtpreceiver
from aiortc.codecs import vpx
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from appliance.media.aiortc_glue.forwarding import UNWANTED
from appliance.media.encoded import PassthroughDecoder
from appliance.media.jitter import BoundedJitterBuffer, ForwardingAudioBuffer

_original_worker = rtcrtpreceiver.decoder_worker
_original_depayload = rtcrtpreceiver.depayload
_original_vp8_pack = vpx.Vp8Encoder.pack
_original_host_addresses = aioice.ice.get_host_addresses
_forwarding_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _passthrough_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue,
    output_q: asyncio.Queue,
    decode_error: threading.Event,
) -> None:
    decoder: PassthroughDecoder | None = None
    while True:
        task = input_q.get()
        if task is None:
            asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
            return
        codec, encoded_frame = task
        if decoder is None:
            kind = "video" if codec.mimeType.lower().startswith("video/") else "audio"
            decoder = PassthroughDecoder(kind)
        for frame in decoder.decode(encoded_frame):
            asyncio.run_coroutine_threadsafe(output_q.put(frame), loop)


def _select_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue,
    output_q: asyncio.Queue,
    decode_error: threading.Event,
) -> None:
    worker = _passthrough_worker if is_forwarding_loop(loop) else _original_worker
    worker(loop, input_q, output_q, decode_error)


def is_forwarding_loop(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """True if receivers on `loop` (default: the running loop, if any) forward, not decode."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
    return loop in _forwarding_loops


def _select_jitter_buffer(
    capacity: int, prefetch: int = 0, is_video: bool = False
) -> BoundedJitterBuffer | ForwardingAudioBuffer:
    # The receiver is built on its loop, so the running loop says whether it forwards.
    if not is_video and is_forwarding_loop():
        return ForwardingAudioBuffer(capacity, prefetch=prefetch)
    return BoundedJitterBuffer(capacity, prefetch=prefetch, is_video=is_video)


def _depayload_wanted(codec: RTCRtpCodecParameters, payload: bytes) -> bytes:
    if payload is UNWANTED.payload and codec.name == "VP8":
        return payload  # dropped by its jitter buffer unread; forwarded from its raw bytes
    return _original_depayload(codec, payload)


def _pack_vp8(self: vpx.Vp8Encoder, packet: object) -> tuple[list[bytes], int]:
    limit = getattr(packet, "max_payload", None)
    if limit is None:
        return _original_vp8_pack(self, packet)  # type: ignore[arg-type]
    data = bytes(packet)  # type: ignore[call-overload]
    descriptor = vpx.VpxPayloadDescriptor(partition_start=1, partition_id=0,
                                          picture_id=self.picture_id)
    payloads = []
    for pos in range(0, len(data), limit):
        payloads.append(bytes(descriptor) + data[pos:pos + limit])
        descriptor.partition_start = 0
    self.picture_id = (self.picture_id + 1) % (1 << 15)
    timestamp = vpx.convert_timebase(packet.pts, packet.time_base,  # type: ignore[attr-defined]
                                     vpx.VIDEO_TIME_BASE)
    return payloads, timestamp


def install_forwarding(loop: asyncio.AbstractEventLoop) -> None:
    """Make remote tracks of peer connections on `loop` yield encoded frames (idempotent)."""
    _forwarding_loops.add(loop)
    rtcrtpreceiver.decoder_worker = _select_worker
    rtcrtpreceiver.JitterBuffer = _select_jitter_buffer  # type: ignore[misc,assignment]
    rtcrtpreceiver.depayload = _depayload_wanted
    vpx.Vp8Encoder.pack = _pack_vp8  # type: ignore[method-assign]


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Offer only `addresses` as ICE host candidates (empty: every non-loopback address).

    aioice leaves 127.0.0.1 out; tests name it here so media stays on loopback.
    """
    chosen = [a.strip() for a in addresses if a.strip()]
    if not chosen:
        aioice.ice.get_host_addresses = _original_host_addresses
        return

    def _configured(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = _configured
