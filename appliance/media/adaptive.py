"""Adaptation driven from the room: RTCP in, plans out, notices to the clients.

Every subscriber slot's `RTCRtpSender` hands its RTCP here (receiver reports: loss and RTT;
REMB) before aiortc's own handling, and the room's tick (`TICK_S`) measures what each
publication brings in and each subscriber is sent, asks `SessionAdaptation` for plans, keeps
them on the participants (the room's `assign_slots` turns them into slot sources) and sends
each notice to its client as a `quality` event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiortc import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from appliance.media.adaptation import (
    Costs,
    EstimatorConfig,
    LinkState,
    Publisher,
    Reason,
    SessionAdaptation,
    UplinkBudget,
)
from appliance.media.aiortc_glue.rtp import sender_ssrc, sender_ssrcs, tap_rtcp
from appliance.media.aiortc_glue.transport import datagrams_received
from appliance.media.encoded import PACKET_OVERHEAD_BYTES, PACKET_PAYLOAD_BYTES
from appliance.media.locality import Network, is_lan, peer_address
from appliance.media.pacer import Pacer
from appliance.media.retransmit import FreshLosses, RetransmitBudget
from appliance.media.round_trip import SenderReportClock

if TYPE_CHECKING:
    from appliance.media.participant import Participant
    from appliance.media.publication import Publication

log = logging.getLogger(__name__)

TICK_S = 0.5
# Where a remote subscriber's estimate starts: it may be GPRS (80 kbps), so voices only
# first; probes find the rest (LAN subscribers start at the top).
REMOTE_INITIAL_BPS = 100_000
# Loss is judged over the reports of the last this many seconds (aiortc's receivers report
# about every 0.5-1.5 s).
LOSS_WINDOW_S = 2.0
# A publisher's forwarded video costs this much more than its average rate: its keyframes
# (one a second from the browser here) reach a weak link's queue as bursts.
VIDEO_BURST_FACTOR = 1.3
# A remote subscriber's video is paced at this multiple of its allowance, except on a weak
# link (an allowance under WEAK_LINK_BPS), where a burst delays voice most: see pacing_rate.
PACING_HEADROOM = 1.25
WEAK_LINK_BPS = 300_000
# On a weak link video is paced at most this multiple of what the plan costs: encoders
# overshoot their targets for a while (a new stream's first keyframe), and on a lossy link
# the low tier's keyframes (4.7 KB at 320x180, one every 2 s or so on EDGE as receivers
# lose packets) made mixed voices and one low tier send 146-170 kbps where 133 are planned.
# At 1.15 the pacer's own queue then grew until it dropped video, which brought more
# keyframe requests.
PLAN_PACING_HEADROOM = 1.3
# On a weak link a voice packet that reaches the bottleneck behind a video packet waits for
# it: 50 ms for a full 1270-byte packet at 200 kbps, most of EDGE's margin (325 ms one way,
# voice late at 400). Video there is split so one packet takes at most this long at the
# estimate, and no smaller than MIN_VIDEO_PAYLOAD (headers would then cost too much).
VIDEO_PACKET_S = 0.02
MIN_VIDEO_PAYLOAD = 300
# Smoothing of measured rates per tick (about a 1.5 s time constant at 0.5 s ticks).
RATE_ALPHA = 0.3


def pacing_rate(allowance_bps: float, plan_bps: float, backing_off: bool = False) -> float:
    """What a remote subscriber's pacer lets out, voices included, in wire bits a second.

    On a weak link no more than the plan needs with some headroom, even when the allowance
    (a probe's) is more: a probe then tests what its plan sends, and a keyframe is spread
    instead of filling the link's queue ahead of voices. Elsewhere a little above the
    allowance, so the pacer smooths bursts but never becomes the bottleneck, except while
    the estimate backs off: then the link has a queue, and the video the pacer holds from
    before the cut must not reach it faster than the allowance (after RMCAT's step from 2.5
    to 0.6 Mbps it left at 740-800 kbps for 2 s, and voices were late)."""
    if allowance_bps >= WEAK_LINK_BPS:
        return allowance_bps * (1.0 if backing_off else PACING_HEADROOM)
    return min(allowance_bps, plan_bps * PLAN_PACING_HEADROOM)


def video_payload_limit(estimate_bps: float, remote: bool) -> int | None:
    """Largest video RTP payload for a subscriber's link (None: aiortc's own)."""
    if not remote or estimate_bps >= WEAK_LINK_BPS:
        return None
    budget = int(estimate_bps / 8 * VIDEO_PACKET_S) - PACKET_OVERHEAD_BYTES
    return max(MIN_VIDEO_PAYLOAD, budget)


@dataclass(frozen=True)
class AdaptationSettings:
    """Box-wide adaptation settings: which networks are the clinic's, and its uplink."""

    lan_networks: tuple[Network, ...] = ()
    uplink_bps: float | None = None  # None: learnt from shared congestion


class _Rate:
    """Bits per second of a byte counter, smoothed over ticks."""

    def __init__(self) -> None:
        self.bps = 0.0
        self._last: tuple[float, int] | None = None

    def update(self, now: float, total_bytes: int) -> float:
        if self._last is not None and total_bytes < self._last[1]:
            self._last = None  # a new counter (a new pacer): start again from it
        if self._last is not None and now > self._last[0]:
            sample = 8 * (total_bytes - self._last[1]) / (now - self._last[0])
            self.bps += RATE_ALPHA * (sample - self.bps)
        self._last = (now, total_bytes)
        return self.bps


@dataclass(eq=False)
class SubscriberLink:
    """What the room's adaptation keeps of one subscriber's link, from its first slot sender
    until it leaves for good (a held seat keeps it): forgetting it is one pop."""

    # LAN (False) or remote (True) once connected; None until then, when no plan is made.
    remote: bool | None = None
    sent: _Rate | None = None  # what the box sends it, measured from its connection on
    pacer: Pacer | None = None  # paces a remote subscriber's video to its estimate
    # When each of its slot senders' SRs left (for RTT).
    clocks: dict[RTCRtpSender, SenderReportClock] = field(default_factory=dict)
    last_rtcp: int | None = None  # id() of the last compound RTCP packet judged
    # Datagrams its transport had received at the last tick: any traffic at all means the
    # link is not cut, whatever its receiver reports do.
    rx_packets: int | None = None
    # RTCP feedback about what the box sends it, by kind ("rr", "remb", "nack", "pli", ...):
    # what its browser really sends back, in the debug log.
    feedback: dict[str, int] = field(default_factory=dict)
    camera_held: bool = False  # told to stop sending video (its link has no room for it)
    # (time, packets expected, packets lost) of each report in the last LOSS_WINDOW_S.
    loss_window: deque[tuple[float, int, int]] = field(default_factory=deque)
    # Per SSRC, (extended highest sequence, cumulative lost) of the last report.
    counters: dict[int, tuple[int, int]] = field(default_factory=dict)
    nacked: int = 0  # packets it asked again for
    withheld: int = 0  # ...and of those, not resent
    resend: RetransmitBudget = field(default_factory=RetransmitBudget)
    losses: FreshLosses = field(default_factory=FreshLosses)  # packets its NACKs named


class RoomAdaptation:
    """The adaptation of one room; `apply` is the room's way to re-fill slots after a tick."""

    def __init__(
        self,
        settings: AdaptationSettings,
        participants: Callable[[], list[Participant]],
        apply: Callable[[], None],
        announce: Callable[[dict[str, Any], str], None],
        costs: Costs | None = None,
    ) -> None:
        self.settings = settings
        self.session = SessionAdaptation(
            UplinkBudget(settings.uplink_bps),
            costs,
            # Probes of at most 2x: on a link that only carries voices, 2.5x (to reach a video
            # rung at once) overflows it for seconds; voice comes first.
            EstimatorConfig(initial_bps=REMOTE_INITIAL_BPS, probe_max_gain=2.0),
        )
        self._participants = participants
        self._apply = apply
        self._announce = announce
        # Each subscriber's link by participant id; the session plans for those connected.
        self.links: dict[str, SubscriberLink] = {}
        # What each publication brings in (a publisher's side, dropped on the tick after
        # its publisher is gone).
        self._received: dict[Publication, _Rate] = {}
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0

    # --- subscribers ------------------------------------------------------------------
    @property
    def has_remote(self) -> bool:
        """Some subscriber the session plans for is on a remote link (held seats count)."""
        return any(link.remote for link in self.links.values())

    def _link(self, participant_id: str) -> SubscriberLink:
        """The subscriber's link record, made on first use."""
        return self.links.setdefault(participant_id, SubscriberLink())

    def tap(self, participant: Participant, sender: RTCRtpSender) -> None:
        """Route a slot sender's RTCP through the estimator of its subscriber first."""
        clock = SenderReportClock()
        clock.watch(sender)
        self._link(participant.id).clocks[sender] = clock

        async def handle(packet: Any) -> Any | None:
            self._on_rtcp(participant, sender, packet)
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                return self._rationed(participant, packet)
            return packet

        tap_rtcp(sender, handle)

    def connected(self, participant: Participant) -> None:
        """The participant's transport is up: classify its link and plan for it at once.

        A participant resuming a held seat keeps its estimator (which restarts carefully
        after the silence) and its policy, so what it had is what it climbs back to."""
        link = self._link(participant.id)
        link.sent = _Rate()
        if link.remote is not None:
            participant.remote = link.remote
        else:
            address = peer_address(participant.pc)
            participant.remote = not is_lan(address, self.settings.lan_networks)
            link.remote = participant.remote
            self.session.add_subscriber(participant.id, time.monotonic(), remote=participant.remote)
            log.info(
                "media: %s connected (%s link)",
                participant.id,
                "remote" if participant.remote else "LAN",
            )
        if participant.remote:
            self._pace(participant)
        self._ensure_task()
        self.tick(time.monotonic())

    def _sent_bytes(self, participant: Participant) -> int:
        """Bytes sent to a remote participant so far: what its pacer let out to the link
        (what its slots hand over may wait there, or be dropped as stale), else its slots'."""
        link = self.links.get(participant.id)
        if link is not None and link.pacer is not None:
            return link.pacer.wire_bytes_out
        return sum(s.bytes_out for s in participant.all_slots())

    def _pace(self, participant: Participant) -> None:
        """Pace a remote subscriber's video (on its bundled transport) to its estimate."""
        link = self._link(participant.id)
        _stop_pacer(link)
        senders = [s.sender for s in participant.video_slots if s.sender is not None]
        transceivers = participant.pc.getTransceivers()
        if not senders or not transceivers:
            return
        ssrcs = {ssrc for sender in senders for ssrc in sender_ssrcs(sender)}
        estimate = self.session.estimator(participant.id).estimate_bps
        link.pacer = Pacer(transceivers[0].sender.transport, ssrcs, estimate)

    def remove(self, participant_id: str) -> None:
        """Forget a participant who left for good."""
        link = self.links.pop(participant_id, None)
        if link is None:
            return
        _stop_pacer(link)
        if link.remote is not None:
            self.session.remove_subscriber(participant_id)

    # --- RTCP -------------------------------------------------------------------------
    def _on_rtcp(self, participant: Participant, sender: RTCRtpSender, packet: Any) -> None:
        link = self.links.get(participant.id)
        if link is None or link.remote is None:
            return
        kind = _feedback_kind(packet)
        link.feedback[kind] = link.feedback.get(kind, 0) + 1
        estimator = self.session.estimator(participant.id)
        now = time.monotonic()
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            # One compound packet reaches every slot sender it reports on: judge it once.
            if link.last_rtcp == id(packet):
                return
            link.last_rtcp = id(packet)
            senders = {
                sender_ssrc(s.sender): s.sender
                for s in participant.all_slots()
                if s.sender is not None
            }
            reports = [r for r in packet.reports if r.ssrc in senders]
            if not reports:
                return
            loss = _recent_loss(link, now, reports)
            wall = time.time()
            clocks = link.clocks
            # Per block: its RTT, and when the SR it echoes left (the path it describes).
            blocks = [
                (rtt, sent)
                for r in reports
                if (clock := clocks.get(senders[r.ssrc])) is not None
                and (sent := clock.sent_at(r.lsr)) is not None
                and (rtt := clock.rtt(r.lsr, r.dlsr, wall)) is not None
            ]
            if blocks:
                rtts = sorted(rtt for rtt, _ in blocks)
                estimator.on_receiver_report(
                    now, loss, rtts[len(rtts) // 2], sr_age_s=wall - max(sent for _, sent in blocks)
                )
            else:
                estimator.on_receiver_report(now, loss, None)
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            link.nacked += len(packet.lost)
            if participant.remote:  # a LAN estimate (>= 1 Mbps) never heeds NACKs
                fresh = link.losses.add(now, packet.media_ssrc, packet.lost)
                if fresh:
                    estimator.on_nack(now, fresh)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, _ = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            estimator.on_remb(now, bitrate)

    def _rationed(self, participant: Participant, nack: RtcpRtpfbPacket) -> RtcpRtpfbPacket | None:
        """The part of a NACK to answer: LAN subscribers all of it, remote ones what their
        retransmission budget allows (the newest packets first), nothing while backing off."""
        estimate = participant.link
        if not participant.remote or estimate is None or not nack.lost:
            return nack
        link = self._link(participant.id)
        congested = estimate.state in (LinkState.BACKING_OFF, LinkState.SILENT)
        size = video_payload_limit(estimate.estimate_bps, True) or PACKET_PAYLOAD_BYTES
        granted = link.resend.allow(
            time.monotonic(),
            len(nack.lost),
            size + PACKET_OVERHEAD_BYTES,
            estimate.allowance_bps,
            congested,
        )
        if granted < len(nack.lost):
            link.withheld += len(nack.lost) - granted
        if granted == 0:
            return None
        return RtcpRtpfbPacket(
            fmt=nack.fmt, ssrc=nack.ssrc, media_ssrc=nack.media_ssrc, lost=nack.lost[-granted:]
        )

    # --- the tick ---------------------------------------------------------------------
    def _ensure_task(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.tick(time.monotonic())
            except Exception:  # adaptation must never take the call down
                log.exception("media: adaptation tick failed")

    def tick(self, now: float) -> None:
        """Measure, plan, apply and announce."""
        self.ticks += 1
        people = {p.id: p for p in self._participants()}
        for sub, link in self.links.items():
            if link.remote is None:
                continue  # not connected yet: the session does not plan for it
            if sub in people:
                self._note_traffic(people[sub], link, now)
            if sub in people and link.sent is not None:
                self.session.set_sending(sub, link.sent.update(now, self._sent_bytes(people[sub])))
            else:
                self.session.set_sending(sub, 0.0)  # a held seat: nothing goes out
        updates = self.session.tick(
            now,
            self._roster(now, list(people.values())),
            groups={p.id: p.breakout for p in people.values()},
        )
        for sub, update in updates.items():
            participant = people.get(sub)
            link = self._link(sub)
            if participant is None:
                _stop_pacer(link)  # a held seat: its connection is gone
                continue
            limit = video_payload_limit(update.estimate.estimate_bps, participant.remote)
            for slot in participant.video_slots:
                slot.max_payload = limit
            if (pacer := link.pacer) is not None:
                # Above what the plan sends: the pacer smooths bursts, it must not become the
                # bottleneck (its drops would read as the link's loss and cut the estimate).
                pacer.set_rate(
                    pacing_rate(
                        update.estimate.allowance_bps,
                        update.plan.used_bps,
                        update.estimate.state is LinkState.BACKING_OFF,
                    )
                )
            silent = update.estimate.state is LinkState.SILENT
            was_silent = participant.link is not None and participant.link.state is LinkState.SILENT
            participant.plan = update.plan
            participant.link = update.estimate
            log.debug(
                "media: %s %s allowance %.0f estimate %.0f loss %.3f rtt %s sending %.0f "
                "nacked %d withheld %d audio %s video %s feedback %s",
                sub,
                update.estimate.state.value,
                update.estimate.allowance_bps,
                update.estimate.estimate_bps,
                update.estimate.loss,
                update.estimate.rtt_s,
                link.sent.bps if link.sent is not None else 0.0,
                link.nacked,
                link.withheld,
                update.plan.audio.value,
                ",".join(f"{p}:{t.name.lower()}" for p, t in update.plan.tiers.items()),
                ",".join(f"{k}:{n}" for k, n in sorted(link.feedback.items())),
            )
            for notice in update.notices:
                participant.send(notice.event())
            self._hold_camera(participant, link)
            if silent != was_silent:
                # No feedback for seconds: their link is cut. The others see it, not "left".
                self._announce(
                    {"type": "participant", "participant": sub, "reconnecting": silent}, sub
                )
        for publication in [p for p in self._received if p.participant_id not in people]:
            del self._received[publication]
        self._apply()

    def _hold_camera(self, participant: Participant, link: SubscriberLink) -> None:
        """Tell a remote participant to stop sending video while its link has no room for it
        (a thin link whose delay leaves voices little margin: GPRS), and to start again.

        A browser told nothing kept sending 640 px video (24-29 kbps, black frames in audio
        only) into a 20 kbps uplink, and its own voice was 58% concealed in the clinic."""
        if not participant.remote:
            return
        held = not self.session.estimator(participant.id).room_for_video
        if held == link.camera_held:
            return
        reason = Reason.CAMERA_HELD if held else Reason.CAMERA_BACK
        if not participant.send({"type": "send-video", "on": not held, "reason": reason.text}):
            return  # the data channel is not open yet: the next tick tries again
        link.camera_held = held
        log.info("media: %s camera %s", participant.id, "held" if held else "released")

    def _note_traffic(self, participant: Participant, link: SubscriberLink, now: float) -> None:
        """Tell the subscriber's estimator if anything arrived from it since the last tick.

        Chromium reports on what it receives only in its audio stream's RTCP while the box
        sends it audio alone (about every 4.5 s), so "no receiver report for 3 s" is no sign of
        a cut link; the transport's datagram count (media, RTCP of any kind, data channel,
        DTLS) is."""
        received = received_datagrams(participant.pc)
        if received is None:
            return
        if received != link.rx_packets:
            link.rx_packets = received
            self.session.estimator(participant.id).on_traffic(now)

    def _roster(self, now: float, people: list[Participant]) -> list[Publisher]:
        spoke = sorted((p for p in people if p.last_spoke > 0), key=lambda p: -p.last_spoke)
        rank = {p.id: i for i, p in enumerate(spoke)}
        roster = []
        for p in people:
            rates: dict[str, int | None] = {"audio": None, "video": None}
            for kind, publication in p.publications.items():
                rate = self._received.setdefault(publication, _Rate())
                bps = rate.update(now, publication.bytes_in)
                if kind == "video":
                    bps *= VIDEO_BURST_FACTOR
                rates[kind] = int(bps) if bps > 0 else None
            roster.append(
                Publisher(
                    p.id,
                    has_video="video" in p.publications,
                    facilitator=p.is_facilitator,
                    speaking_rank=rank.get(p.id),
                    audio_bps=rates["audio"],
                    video_bps=rates["video"],
                )
            )
        return roster

    async def stop(self) -> None:
        for link in self.links.values():
            if link.pacer is not None:
                pacer, link.pacer = link.pacer, None
                await pacer.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _stop_pacer(link: SubscriberLink) -> None:
    if link.pacer is not None:
        asyncio.get_running_loop().create_task(link.pacer.stop())
        link.pacer = None


def _recent_loss(link: SubscriberLink, now: float, reports: list[Any]) -> float:
    """Packets lost over packets expected in the last `LOSS_WINDOW_S`, all streams.

    Each block's own fraction weighs a 50 packet/s voice like a 1 packet/s thumbnail, and
    one report of a 25 packet/s mixed voice moves in 4% steps; counting packets from the
    cumulative fields over a short window does neither."""
    expected = lost = 0
    for r in reports:
        before = link.counters.get(r.ssrc)
        link.counters[r.ssrc] = (r.highest_sequence, r.packets_lost)
        if before is None:
            continue
        span = (r.highest_sequence - before[0]) & 0xFFFFFFFF
        if 0 < span < 1 << 16:
            expected += span
            lost += max(0, r.packets_lost - before[1])
    window = link.loss_window
    window.append((now, expected, lost))
    while window and window[0][0] < now - LOSS_WINDOW_S:
        window.popleft()
    total = sum(e for _, e, _ in window)
    if total == 0:
        return sum(r.fraction_lost for r in reports) / len(reports) / 256
    return min(1.0, sum(lost for _, _, lost in window) / total)


def received_datagrams(pc: Any) -> int | None:
    """Datagrams the peer connection's (bundled) transport has received from the peer so far:
    media, RTCP, data channel and DTLS alike (None before there is a transport).

    Read through `aiortc_glue.transport.datagrams_received`."""
    for transceiver in pc.getTransceivers():
        transport = transceiver.sender.transport
        if transport is None:
            continue
        received = datagrams_received(transport)
        if received is not None:
            return received
    return None


def _feedback_kind(packet: Any) -> str:
    """A short name for an RTCP packet a slot sender got: rr, sr, remb, nack, pli, fir, ..."""
    if isinstance(packet, RtcpSrPacket):
        return "sr"
    if isinstance(packet, RtcpRrPacket):
        return "rr"
    if isinstance(packet, RtcpRtpfbPacket):
        return "nack" if packet.fmt == RTCP_RTPFB_NACK else f"rtpfb{packet.fmt}"
    if isinstance(packet, RtcpPsfbPacket):
        return {1: "pli", 4: "fir", RTCP_PSFB_APP: "remb"}.get(packet.fmt, f"psfb{packet.fmt}")
    return type(packet).__name__.removeprefix("Rtcp").removesuffix("Packet").lower()
