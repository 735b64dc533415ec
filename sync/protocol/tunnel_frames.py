"""Frames of the box's outbound tunnel to the centre (and of the centre's local relay hops).

After `GET /v1/tunnel` is answered `101 Switching Protocols`, both ends exchange frames on
the same TLS connection. A frame is a 9-byte header (payload length u32, type u8, stream id
u32, network order) and its payload. Stream 0 is the tunnel itself (hello, keep-alive);
every relayed patient request is one stream: REQUEST (JSON head), DATA..., END from the
centre; RESPONSE (JSON head), DATA..., END from the box; RESET from either side aborts it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

HEADER = struct.Struct("!IBI")
MAX_PAYLOAD = 64 * 1024
UPGRADE_TOKEN = "clinicbox-tunnel/1"
TUNNEL_PATH = "/v1/tunnel"


class FrameType(IntEnum):
    HELLO = 1
    PING = 2
    PONG = 3
    REQUEST = 4
    RESPONSE = 5
    DATA = 6
    END = 7
    RESET = 8


class FrameError(Exception):
    """The peer sent something that is not a tunnel frame: the tunnel is closed."""


@dataclass(frozen=True)
class Frame:
    kind: FrameType
    stream: int
    payload: bytes = b""

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.payload)
        except ValueError:
            raise FrameError(f"{self.kind.name} frame is not JSON") from None
        if not isinstance(value, dict):
            raise FrameError(f"{self.kind.name} frame is not a JSON object")
        return value


def encode(kind: FrameType, stream: int = 0, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(len(payload), kind, stream) + payload


def encode_json(kind: FrameType, stream: int, value: dict[str, Any]) -> bytes:
    return encode(kind, stream, json.dumps(value, separators=(",", ":")).encode())


def encode_data(stream: int, data: bytes) -> Iterator[bytes]:
    """`data` as DATA frames of at most MAX_PAYLOAD bytes each."""
    view = memoryview(data)
    for start in range(0, len(view), MAX_PAYLOAD):
        yield encode(FrameType.DATA, stream, bytes(view[start : start + MAX_PAYLOAD]))


class FrameReader:
    """Incremental decoder: feed bytes, take whole frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            length, kind, stream = HEADER.unpack_from(self._buffer)
            if length > MAX_PAYLOAD:
                raise FrameError(f"frame of {length} bytes exceeds {MAX_PAYLOAD}")
            if len(self._buffer) < HEADER.size + length:
                break
            try:
                frame_type = FrameType(kind)
            except ValueError:
                raise FrameError(f"unknown frame type {kind}") from None
            payload = bytes(self._buffer[HEADER.size : HEADER.size + length])
            del self._buffer[: HEADER.size + length]
            frames.append(Frame(frame_type, stream, payload))
        return frames
