"""A UDP probe flow to measure an emulated link: paced sender, recording receiver.

Both ends run in lab namespaces on one machine, so they share CLOCK_MONOTONIC and one-way
delay is measured directly (send time travels in the payload).

    python -m harness.probe recv --port 9000     # until SIGTERM, then prints JSON records
    python -m harness.probe send --to 10.77.0.1 --port 9000 --rate-kbps 300 --size 1000 \
        --seconds 5
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.lab import Host, Lab

#: Bytes a UDP payload grows by on the wire: Ethernet 14 + IPv4 20 + UDP 8.
FRAME_OVERHEAD = 42
_HEADER = struct.Struct("!Id")  # sequence number, send time (monotonic seconds)


@dataclass(frozen=True)
class Record:
    """One received probe packet."""

    seq: int
    sent: float
    received: float
    size: int

    @property
    def delay_ms(self) -> float:
        """One-way delay of this packet."""
        return (self.received - self.sent) * 1000.0


class Flow:
    """What a receiver saw, with the measures the lab's tests and benchmark need."""

    def __init__(self, records: list[Record]) -> None:
        self.records = sorted(records, key=lambda r: r.received)

    def sent_between(self, start: float, end: float) -> Flow:
        """Only the packets sent in [start, end) (monotonic seconds)."""
        return Flow([r for r in self.records if start <= r.sent < end])

    def received_between(self, start: float, end: float) -> Flow:
        """Only the packets received in [start, end) (monotonic seconds)."""
        return Flow([r for r in self.records if start <= r.received < end])

    def rate_kbps(self) -> float:
        """Frame bits per second between the first and the last arrival."""
        if len(self.records) < 2:
            return 0.0
        span = self.records[-1].received - self.records[0].received
        bits = sum(r.size + FRAME_OVERHEAD for r in self.records[1:]) * 8
        return bits / span / 1000.0 if span > 0 else 0.0

    def delay_ms(self, quantile: float = 0.5) -> float:
        """A quantile of the one-way delay (0.5: median)."""
        delays = sorted(r.delay_ms for r in self.records)
        if not delays:
            return float("nan")
        return delays[min(len(delays) - 1, int(quantile * len(delays)))]

    def delay_stdev_ms(self) -> float:
        """Spread of the one-way delay."""
        delays = [r.delay_ms for r in self.records]
        return statistics.pstdev(delays) if len(delays) > 1 else 0.0

    def longest_gap_s(self) -> float:
        """Longest time between two consecutive arrivals."""
        times = [r.received for r in self.records]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def seqs(self) -> set[int]:
        """Sequence numbers received."""
        return {r.seq for r in self.records}

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def from_json(cls, text: str) -> Flow:
        """Parse the receiver's output."""
        return cls([Record(*row) for row in json.loads(text)["records"]])


class ProbeRun:
    """One probe flow between two lab hosts, started now; result() waits for what arrived."""

    def __init__(self, lab: Lab, src: Host, dst: Host, *, rate_kbps: float, size: int = 1000,
                 seconds: float = 3.0, port: int = 9000, drain: float = 0.8) -> None:
        self.seconds = seconds
        self._drain = drain
        self._receiver = lab.python_module(
            dst, "harness.probe", "recv", "--port", str(port),
            "--seconds", str(seconds + drain + 20), stdout=subprocess.PIPE, text=True,
        )
        assert self._receiver.stdout is not None
        if self._receiver.stdout.readline().strip() != "ready":  # bound before the first send
            raise RuntimeError("probe receiver did not start")
        self.started = time.monotonic()
        self._sender = lab.python_module(
            src, "harness.probe", "send", "--to", dst.ip, "--port", str(port),
            "--rate-kbps", str(rate_kbps), "--size", str(size), "--seconds", str(seconds),
            stdout=subprocess.DEVNULL,
        )

    def result(self) -> Flow:
        """Wait for the sender, let the link drain, stop the receiver, return its records."""
        self._sender.wait(timeout=self.seconds + 15)
        time.sleep(self._drain)
        self._receiver.terminate()
        out, _ = self._receiver.communicate(timeout=15)
        return Flow.from_json(out)


def send(to: str, port: int, rate_kbps: float, size: int, seconds: float, count: int) -> int:
    """Send paced probe packets (rate counts whole frames); returns how many were sent."""
    interval = (size + FRAME_OVERHEAD) * 8 / (rate_kbps * 1000.0)
    padding = b"\0" * (size - _HEADER.size)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        end = start + seconds
        while sent < count:
            now = time.monotonic()
            if now >= end:
                break
            due = start + sent * interval
            if due > now:
                time.sleep(due - now)
            try:
                sock.sendto(_HEADER.pack(sent, time.monotonic()) + padding, (to, port))
            except OSError:
                pass  # no route yet or buffer full: that packet is simply lost
            sent += 1
    return sent


class _Stop(Exception):
    """SIGTERM: the flow is over."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop


def receive(port: int, seconds: float) -> list[Record]:
    """Record packets until SIGTERM or until seconds pass."""
    records: list[Record] = []
    signal.signal(signal.SIGTERM, _stop)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        sock.bind(("0.0.0.0", port))
        print("ready", flush=True)
        end = time.monotonic() + seconds
        try:
            while (left := end - time.monotonic()) > 0:
                sock.settimeout(left)
                data = sock.recv(65535)
                seq, sent = _HEADER.unpack_from(data)
                records.append(Record(seq, sent, time.monotonic(), len(data)))
        except (_Stop, TimeoutError):
            pass
    return records


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m harness.probe`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    tx = sub.add_parser("send")
    tx.add_argument("--to", required=True)
    tx.add_argument("--port", type=int, required=True)
    tx.add_argument("--rate-kbps", type=float, required=True)
    tx.add_argument("--size", type=int, default=1000)
    tx.add_argument("--seconds", type=float, default=5.0)
    tx.add_argument("--count", type=int, default=10**9)
    rx = sub.add_parser("recv")
    rx.add_argument("--port", type=int, required=True)
    rx.add_argument("--seconds", type=float, default=60.0, help="stop at the latest after")
    args = parser.parse_args(argv)
    if args.role == "send":
        if not _HEADER.size <= args.size <= 1472:
            parser.error(f"--size must be between {_HEADER.size} and 1472")
        sent = send(args.to, args.port, args.rate_kbps, args.size, args.seconds, args.count)
        print(json.dumps({"sent": sent}))
    else:
        records = receive(args.port, args.seconds)
        print(json.dumps({"records": [[r.seq, r.sent, r.received, r.size] for r in records]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
