"""The last few hundred packets of one stream, by sequence number, to answer NACKs from."""

from __future__ import annotations

# A second of 500 kbps video is ~50 packets; NACKs come within a few round trips.
CACHE_PACKETS = 512


class PacketCache:
    """A ring of packets indexed by their 16-bit RTP sequence number."""

    def __init__(self, size: int = CACHE_PACKETS) -> None:
        self.size = size
        self._seqs: list[int] = [-1] * size
        self._packets: list[bytes | None] = [None] * size

    def put(self, seq: int, packet: bytes) -> None:
        slot = seq % self.size
        self._seqs[slot] = seq
        self._packets[slot] = packet

    def get(self, seq: int) -> bytes | None:
        """The packet with sequence number `seq`, if it is still held."""
        slot = seq % self.size
        return self._packets[slot] if self._seqs[slot] == seq else None

    def clear(self) -> None:
        self._seqs = [-1] * self.size
        self._packets = [None] * self.size
