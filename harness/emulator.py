"""The link emulator process: forwards frames between veth ends in userspace, shaped.

Run inside the lab's "wan" namespace as its own process, so stalls of the test or benchmark
process do not skew the forwarding loop:

    python -m harness.emulator --control /tmp/x/emulator.sock --parent-pid 1234

Each link joins two interfaces of that namespace: `host_if` faces the emulated host and
`box_if` faces the LAN bridge. Frames read on one (AF_PACKET) are shaped by a DirectionShaper
and written to the other. It is controlled with one JSON object per line over a unix socket:

    {"op": "add", "link": "p1", "host_if": "h1", "box_if": "b1", "profile": {...}}
    {"op": "set", "link": "p1", "profile": {...}}     apply a profile (restarts its schedule)
    {"op": "cut", "link": "p1", "seconds": 5}          seconds null: until "restore"
    {"op": "restore", "link": "p1"}
    {"op": "stats"}                                    counters, lateness, CPU time
    {"op": "quit"}

Each request gets one JSON line back: {"ok": true, ...} or {"ok": false, "error": "..."}.
The process exits on quit, SIGTERM, SIGINT, or when its parent process goes away.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import asdict
from typing import Any

from harness.profiles import Profile, Step
from harness.shaper import DirectionShaper

ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
SOL_PACKET = 263  # linux/socket.h; Python's socket module does not name it
PACKET_IGNORE_OUTGOING = 23  # linux/if_packet.h, Linux >= 4.20
SO_TIMESTAMPNS = 35  # asm-generic/socket.h (SO_TIMESTAMPNS_OLD); not named by Python either
TIMESPEC = struct.Struct("qq")
STAMP_SPACE = socket.CMSG_SPACE(TIMESPEC.size)
#: epoll rounds its timeout up to a whole millisecond; frames due within half of one leave
#: early, so the average error of the delay is about zero rather than +0.5 ms.
EARLY_S = 0.0005
#: A frame leaving this much later than planned means the forwarder was stalled.
LATE_S = 0.010
#: Frames read from one socket per wake-up, so one busy direction cannot starve the others.
READ_BURST = 64
PARENT_CHECK_S = 0.5


def open_packet_socket(ifname: str) -> socket.socket:
    """A raw socket that sees every frame arriving on ifname and can send on it."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass  # older kernels: outgoing frames are filtered by pkttype in the loop instead
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    # The kernel stamps each frame as it arrives: a forwarder slow to read it (a busy
    # machine) then still times the link from the arrival.
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((ifname, ETH_P_ALL))
    sock.setblocking(False)
    return sock


def read_wait(ancillary: list[tuple[int, int, bytes]]) -> float:
    """How long a frame waited in its socket before it was read, from the kernel's stamp (0
    without one). Not lateness by itself: a frame read late still leaves on time unless the
    wait outlasts the link's delay, and a late departure is counted in Link.tick."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            return max(0.0, time.time() - (seconds + nanoseconds / 1e9))
    return 0.0


class Link:
    """Two veth ends, two shapers (down: box -> host, up: host -> box) and a schedule."""

    def __init__(self, name: str, host_if: str, box_if: str, profile: Profile, now: float):
        self.name = name
        self.host_sock = open_packet_socket(host_if)
        self.box_sock = open_packet_socket(box_if)
        self.late_frames = 0
        self.max_late_ms = 0.0
        self._cut_until: float | None = None
        self._manual_cut = False
        step = profile.steps[0]
        self.down = DirectionShaper(step.down, random.Random(), now)
        self.up = DirectionShaper(step.up, random.Random(), now)
        self.apply(profile, now)

    def apply(self, profile: Profile, now: float) -> None:
        """Start profile's schedule at now; its seed restarts the loss and jitter draws."""
        self.down.reseed(profile.seed * 2)
        self.up.reseed(profile.seed * 2 + 1)
        self.profile = profile
        self._started = now
        self._step: Step | None = None
        self._enter_step(profile.steps[0], now)

    def cut(self, seconds: float | None, now: float) -> None:
        """Cut both directions, for seconds or until restore()."""
        self._manual_cut = True
        self._cut_until = None if seconds is None else now + seconds
        self._update_cut(now)

    def restore(self, now: float) -> None:
        """End a manual cut (a cut step of the schedule still applies)."""
        self._manual_cut = False
        self._cut_until = None
        self._update_cut(now)

    def receive(self, sock: socket.socket, now: float) -> None:
        """Read what arrived on one side and hand it to that direction's shaper."""
        shaper = self.up if sock is self.host_sock else self.down
        for _ in range(READ_BURST):
            try:
                frame, ancillary, _flags, address = sock.recvmsg(65535, STAMP_SPACE)
            except BlockingIOError:
                return
            if address[2] == PACKET_OUTGOING:
                continue
            arrived = now - read_wait(ancillary)
            shaper.offer(frame, arrived, exempt=address[1] == ETH_P_ARP)

    def tick(self, now: float) -> None:
        """Advance the schedule and the cut timer, and send what is due."""
        step = self.profile.step_at(now - self._started)
        if step is not self._step:
            self._enter_step(step, now)
        if self._cut_until is not None and now >= self._cut_until:
            self.restore(now)
        horizon = now + EARLY_S
        for shaper, sock in ((self.down, self.host_sock), (self.up, self.box_sock)):
            deadline = shaper.next_deadline()
            if deadline is None or deadline > horizon:
                continue
            late = now - deadline
            if late > LATE_S and deadline != float("-inf"):
                self.late_frames += 1
                self.max_late_ms = max(self.max_late_ms, late * 1000.0)
            for frame in shaper.due(horizon):
                try:
                    sock.send(frame)
                except OSError:
                    shaper.stats.dropped_queue += 1  # the veth refused it: count as a drop

    def next_deadline(self) -> float | None:
        """The earliest time this link needs the loop to wake up."""
        times = [t for t in (self.down.next_deadline(), self.up.next_deadline()) if t is not None]
        change = self.profile.next_change(time.monotonic() - self._started)
        if change is not None:
            times.append(self._started + change)
        if self._cut_until is not None:
            times.append(self._cut_until)
        return min(times) if times else None

    def report(self) -> dict[str, Any]:
        """Counters for the stats request."""
        return {
            "profile": self.profile.name,
            "cut": self.down.is_cut,
            "down": {**asdict(self.down.stats), "queued_bytes": self.down.queued_bytes},
            "up": {**asdict(self.up.stats), "queued_bytes": self.up.queued_bytes},
            "late_frames": self.late_frames,
            "max_late_ms": round(self.max_late_ms, 2),
        }

    def close(self) -> None:
        """Close both sockets."""
        self.host_sock.close()
        self.box_sock.close()

    def _enter_step(self, step: Step, now: float) -> None:
        self._step = step
        self.down.configure(step.down, now)
        self.up.configure(step.up, now)
        self._update_cut(now)

    def _update_cut(self, now: float) -> None:
        cut = self._manual_cut or bool(self._step and self._step.cut)
        self.down.set_cut(cut, now)
        self.up.set_cut(cut, now)


class Emulator:
    """The forwarding loop and its control socket."""

    def __init__(self, control_path: str, parent_pid: int | None) -> None:
        self._links: dict[str, Link] = {}
        self._selector = selectors.DefaultSelector()
        self._parent_pid = parent_pid
        self._running = True
        self._control_path = control_path
        self._control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._control.bind(control_path)
        self._control.listen(8)
        self._control.setblocking(False)
        self._selector.register(self._control, selectors.EVENT_READ, None)

    def stop(self) -> None:
        """Make the loop end at its next turn."""
        self._running = False

    def run(self) -> None:
        """Forward until stopped; always closes sockets and removes the control socket."""
        next_parent_check = time.monotonic() + PARENT_CHECK_S
        try:
            while self._running:
                now = time.monotonic()
                wake = next_parent_check
                for link in self._links.values():
                    deadline = link.next_deadline()
                    if deadline is not None:
                        wake = min(wake, deadline)
                timeout = max(0.0, wake - now - EARLY_S)
                for key, _ in self._selector.select(timeout):
                    if key.data is None:
                        self._serve_control()
                    else:
                        key.data.receive(key.fileobj, time.monotonic())
                now = time.monotonic()
                for link in self._links.values():
                    link.tick(now)
                if now >= next_parent_check:
                    next_parent_check = now + PARENT_CHECK_S
                    if self._parent_pid is not None and os.getppid() != self._parent_pid:
                        break  # orphaned: whoever made the lab is gone
        finally:
            self.close()

    def close(self) -> None:
        """Release every socket and the control path."""
        for link in self._links.values():
            link.close()
        self._links.clear()
        self._control.close()
        try:
            os.unlink(self._control_path)
        except FileNotFoundError:
            pass

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Carry out one control request."""
        now = time.monotonic()
        op = request.get("op")
        if op == "stats":
            usage = os.times()
            return {
                "ok": True,
                "cpu_s": usage.user + usage.system,
                "links": {name: link.report() for name, link in self._links.items()},
            }
        if op == "quit":
            self.stop()
            return {"ok": True}
        name = request.get("link")
        if op == "add":
            if name in self._links:
                raise ValueError(f"link {name!r} exists")
            profile = Profile.from_dict(request["profile"])
            link = Link(str(name), request["host_if"], request["box_if"], profile, now)
            self._links[link.name] = link
            self._selector.register(link.host_sock, selectors.EVENT_READ, link)
            self._selector.register(link.box_sock, selectors.EVENT_READ, link)
            return {"ok": True}
        link = self._links.get(str(name))
        if link is None:
            raise ValueError(f"no link {name!r}")
        if op == "set":
            link.apply(Profile.from_dict(request["profile"]), now)
        elif op == "cut":
            seconds = request.get("seconds")
            link.cut(None if seconds is None else float(seconds), now)
        elif op == "restore":
            link.restore(now)
        else:
            raise ValueError(f"unknown op {op!r}")
        return {"ok": True}

    def _serve_control(self) -> None:
        try:
            conn, _ = self._control.accept()
        except BlockingIOError:
            return
        with conn:
            # The only client is the Lab in the same machine: a short blocking read is fine.
            conn.settimeout(1.0)
            try:
                line = conn.makefile("rb").readline(1 << 20)
                try:
                    reply = self.handle(json.loads(line))
                except Exception as exc:  # noqa: BLE001 - a bad request must not stop forwarding
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass  # the client went away; nothing to answer


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m harness.emulator`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", required=True, help="unix socket path to listen on")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    args = parser.parse_args(argv)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)  # forwarding on time matters more than others
    except OSError:
        pass
    emulator = Emulator(args.control, args.parent_pid)
    signal.signal(signal.SIGTERM, lambda *_: emulator.stop())
    signal.signal(signal.SIGINT, lambda *_: emulator.stop())
    emulator.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
