"""Per-subscriber downlink estimate from what aiortc gives: REMB, RTCP receiver reports
(loss fraction) and RTT; no transport-cc, no simulcast.

How it decides, per receiver report:
- this report's loss above 10%: decrease to 95% of what got through (sent x (1 - loss)),
  at most once a second; RTT above the path's minimum by half the voice deadline's margin
  (or 40 ms plus twice its usual jitter, but at most twice that margin, and at most 150 ms)
  and still rising, or standing there a round trip and a second after the last cut (a
  queue): decrease to 85% of what is sent;
- smoothed loss under 2% and RTT not inflated: clean; after 2 s clean the estimate grows
  8%/s, but never far above what has been sent, since capacity not used is not proven;
- in between: hold.
A REMB that fell below what is being sent while reports show trouble (loss 2 points above the
link's usual, or a queue) is a receiver that cannot keep up: the estimate drops to it (at most
to 70% of what is sent). During a probe it only ends the probe, back where it started.

Multiplicative growth alone takes ~25 s to climb back from a dip, so the estimator probes
deliberately: after a clean spell, when the plan wants more than the estimate, it offers a
higher allowance for a few seconds. If the SFU really sends near it and reports stay clean, the
estimate jumps there; if loss or RTT rise, or NACKs name 5 newly lost packets within a second
(also up to 2 s after a success), it falls back and waits twice as long before the next probe
(2 s doubling to 8 s; after three failures in a row, 30 s). The plan that failed waits 8 s
(30 s if it failed from under 120 kbps and under the start value, where it is a thumbnail and
each failure costs voices seconds). Probes go up to 1.5x the estimate; when the next better
plan is further (up to 2.5x), a failed one waits 30 s.

On a clean, short path (round trip under 300 ms, no cut or failed probe in the last 30 s, no
loss) the next better plan may be up to 8x away: the ladder's rungs are far apart (a thumbnail
with the voices sends ~130 kbps, a forwarded 640 px picture ~600), and proving a rung only by
sending it, in steps of at most 2x that each prove what was sent, never reached forwarded video
from a remote patient's 100 kbps start (a real Chromium patient on an unconstrained link sat at
a 160 px still). Such a probe, confirmed clean, proves its whole target, and the first may
start after one round trip (other paths wait for two).

On a tight link (thin, with little of the voice deadline left after the path's delay: EDGE,
GPRS) probes ask only what the next plan needs and prove it, there is no passive growth, and
far probes wait a minute after any cut, longer after each that fails. A thin link whose delay
leaves voices under 55 ms of their deadline (GPRS as the lab measures it) gets no probe for
video at all: a voice behind one burst of video would already be late.

Nothing at all from the subscriber for 3 s (no packet, no RTCP of any kind: a cut link) is
SILENT: the allowance drops to the floor (voice only) and the estimate restarts conservatively
when reports return. A missing receiver report alone is not silence: Chromium reports on an
audio-only downlink once every ~4.5 s (its audio RTCP interval) while its own media and RTCP
keep coming, so the caller tells the estimator of any traffic (`on_traffic`).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class LinkState(enum.Enum):
    """What the estimator currently believes about the link."""

    STEADY = "steady"
    BACKING_OFF = "backing_off"
    PROBING = "probing"
    SILENT = "silent"


@dataclass(frozen=True)
class EstimatorConfig:
    """Tuning of the estimator; the defaults suit 20 kbps GPRS up to a few Mbps of LAN.

    Why each value is what it is, with what the weak-link lab measured: docs/weak-links.md,
    "How the box decides" and "Tight links".
    """

    initial_bps: float = 300_000
    min_bps: float = 30_000
    max_bps: float = 4_000_000
    loss_weight: float = 0.3  # EWMA weight of a new receiver report's loss fraction
    rtt_weight: float = 0.25
    high_loss: float = 0.10
    low_loss: float = 0.02
    #: RTT this far above the path's minimum would make voices late there: a queue.
    voice_deadline_s: float = 0.4
    rtt_inflation_s: float = 0.04
    rtt_inflation_max_s: float = 0.15
    rtt_jitter_weight: float = 0.1  # EWMA weight of |RTT - previous RTT| (a plain mean at first)
    #: RTT says nothing about a queue until this many samples show the path's own jitter.
    rtt_samples_before_queue: int = 2
    rtt_window_s: float = 30.0
    #: Off on the LAN: a long round trip there is a busy CPU, not a queue to shorten.
    queue_from_rtt: bool = True
    decrease_interval_s: float = 1.0
    growth_per_s: float = 0.08
    clean_before_growth_s: float = 2.0
    #: Growth stops this far above what is being sent (plus 20 kbps): beyond, only probes.
    proven_headroom: float = 1.1
    probe_after_s: float = 2.0
    probe_again_s: float = 1.0  # after a successful probe
    probe_s: float = 2.0
    probe_step_gain: float = 1.5  # a probe asks up to this multiple of the estimate...
    probe_max_gain: float = 2.5  # ...or, if the next rung is further, at most this
    #: Tight links probe in 10% steps: an overshoot queues voices within a report.
    fine_probe_below_bps: float = 300_000
    tight_margin_s: float = 0.15
    #: Less voice margin than this on a thin link: no video (one packet costs ~50 ms).
    video_margin_s: float = 0.055
    probe_fail_loss: float = 0.05
    probe_report_lag_s: float = 0.5  # a report interval, beyond the RTT
    #: A probe is confirmed by an SR sent this long after it filled (time to show a queue).
    probe_settle_s: float = 0.75
    probe_backoff_max_s: float = 8.0  # caps how long a step up can go unnoticed...
    probe_failures_before_long_wait: int = 3  # ...until this many probes in a row failed
    #: Far probes and links whose probes keep failing wait this long: both overshoot more.
    long_probe_wait_s: float = 30.0
    #: Retrying a plan as big as one that failed costs voices ~2 s; this bounds step-up lag.
    failed_target_wait_s: float = 8.0
    #: ...long_probe_wait_s below this (learnt) or on a tight link: the link rarely grows.
    thin_link_bps: float = 120_000
    #: A tight link's far probe waits this long, doubling per failure: each costs voices.
    tight_far_wait_s: float = 60.0
    tight_far_wait_max_s: float = 240.0
    #: NACKs fail a slow link's probe a report interval before loss reports can.
    probe_fail_nacks: int = 5
    nack_probe_max_bps: float = 300_000
    nack_window_s: float = 1.0
    probe_regret_s: float = 2.0
    silence_s: float = 3.0
    #: A REMB is obeyed when it fell this much below the previous one (receivers' delay-based
    #: estimators cut multiplicatively on overuse), is below what is being sent, and the
    #: last receiver report showed loss or a queue.
    remb_fall: float = 0.9
    remb_floor: float = 0.7  # one REMB cut goes at most this far below what is sent
    #: A clean, short path (see the module's docs) may probe this far above the estimate.
    clean_probe_max_gain: float = 8.0
    clean_rtt_max_s: float = 0.3
    clean_quiet_s: float = 30.0  # ...with no cut or failed probe for this long
    #: A probe counts as filled once the SFU sends this share of what its plan would send:
    #: plans count video with a burst factor (1.3x the publisher's measured rate), so a
    #: forwarded picture fills ~0.77 of its planned cost.
    probe_fill: float = 0.7


@dataclass(frozen=True)
class Estimate:
    """The estimator's answer at one moment.

    allowance_bps is what the plan may use now (the probe's target while probing);
    estimate_bps is the confirmed capacity.
    """

    allowance_bps: float
    estimate_bps: float
    state: LinkState
    loss: float
    rtt_s: float | None


@dataclass
class _Probe:
    target_bps: float
    started: float
    before_bps: float
    rtt_s: float | None
    use_bps: float  # what the SFU should send under the probe's allowance
    peak_bps: float = 0.0  # the most the SFU really sent during it
    reached_at: float | None = None  # when the SFU first sent about use_bps...
    confirmed: bool = False  # ...and a clean report came back after that
    tight: bool = False  # started on a thin link with little voice margin
    clean: bool = False  # started on a clean, short path: a confirmed probe proves its target


class DownlinkEstimator:
    """One subscriber's downlink. Feed it reports; ask it with tick(now)."""

    def __init__(self, now: float, config: EstimatorConfig | None = None) -> None:
        self.config = config or EstimatorConfig()
        self._estimate = self.config.initial_bps
        self._loss = 0.0
        self._srtt: float | None = None
        self._last_rtt: float | None = None
        self._rtt_jitter = 0.0
        self._rtt_samples = 0
        self._rtts: deque[tuple[float, float]] = deque()
        self._sending_bps = 0.0
        self._last_feedback = now
        self._last_traffic = now
        self._last_decrease = float("-inf")
        self._clean_since: float | None = None
        self._last_tick = now
        self._probe: _Probe | None = None
        self._probe_wait = self.config.probe_after_s
        self._next_probe = now + self.config.probe_after_s
        self._next_far_probe = now
        self._tight_far_wait = self.config.tight_far_wait_s
        self._failures = 0
        self._failed_use = float("inf")  # what the last failed probe's plan sent...
        self._failed_until = now  # ...not to be tried again before this
        self._failed_at: float | None = None  # when the last probe failed
        self._silent = False
        self._last_remb: float | None = None
        self._troubled = False  # the last receiver report showed unusual loss or a queue
        self._nacks: deque[tuple[float, int]] = deque()  # (when, newly lost packets named)
        self._succeeded: _Probe | None = None  # the last probe that succeeded...
        self._succeeded_at = float("-inf")  # ...and when

    # -- inputs --------------------------------------------------------------------------

    def set_sending(self, bps: float, now: float | None = None) -> None:
        """What the SFU is sending this subscriber now (measured, all streams)."""
        self._sending_bps = max(0.0, bps)
        if self._probe:
            self._probe.peak_bps = max(self._probe.peak_bps, self._sending_bps)
            if (self._sending_bps >= self.config.probe_fill * self._probe.use_bps
                    and self._probe.reached_at is None):
                self._probe.reached_at = self._last_tick if now is None else now

    def on_traffic(self, now: float) -> None:
        """Something arrived from the subscriber (any packet: its media, RTCP of any kind):
        its link is not cut, whether or not it reported on what it receives."""
        self._last_traffic = max(self._last_traffic, now)

    def on_receiver_report(self, now: float, loss_fraction: float, rtt_s: float | None = None,
                           sr_age_s: float | None = None) -> None:
        """An RTCP receiver report: fraction lost since the last one (0-1), the RTT, and how
        long before now the sender report it echoes left (None: unknown)."""
        self._feedback(now)
        cfg = self.config
        loss = min(1.0, max(0.0, loss_fraction))
        # Loss is trouble above what the link usually loses: on EDGE's 1% random loss a
        # report of ~45 packets loses one (2.2%) a third of the time, and a REMB wobble then
        # cut a patient's video (180 -> 105 kbps) with no queue on the link.
        self._troubled = loss > cfg.low_loss + self._loss or self._rtt_inflated(rtt_s)
        self._loss += cfg.loss_weight * (loss - self._loss)
        if rtt_s is not None and rtt_s > 0:
            self._srtt = rtt_s if self._srtt is None else self._srtt + cfg.rtt_weight * (
                rtt_s - self._srtt)
            self._rtts.append((now, rtt_s))
            while self._rtts and self._rtts[0][0] < now - cfg.rtt_window_s:
                self._rtts.popleft()
        inflated = self._rtt_inflated(rtt_s)
        rising = rtt_s is not None and self._last_rtt is not None and (
            rtt_s > self._last_rtt + 0.01)
        falling = rtt_s is not None and self._last_rtt is not None and (
            rtt_s < self._last_rtt - 0.01)
        if rtt_s is not None:
            if self._last_rtt is not None:
                weight = max(cfg.rtt_jitter_weight, 1 / self._rtt_samples)
                self._rtt_jitter += weight * (abs(rtt_s - self._last_rtt) - self._rtt_jitter)
            self._last_rtt = rtt_s
            self._rtt_samples += 1
        if self._probe is not None:
            # A probe is judged on this report alone: smoothing would hide the queue it builds.
            grew = (cfg.queue_from_rtt and rtt_s is not None and self._probe.rtt_s is not None
                    and rtt_s > self._probe.rtt_s + self._queue_threshold())
            if loss > cfg.probe_fail_loss or inflated or grew:
                self._end_probe(now, success=False)
            elif self._probe.reached_at is not None and self._describes_since(
                    now, sr_age_s, self._probe.reached_at):
                self._probe.confirmed = True
            return
        # Decide on this report's own loss: smoothing would keep cutting for seconds after
        # the link already recovered. RTT counts while it still rises, or when a queue stands
        # long after the last cut: a queue takes a round trip and a while to drain after the
        # cut that fixed it, and cutting again meanwhile would overshoot.
        drained = now - self._last_decrease >= 2 * (self._srtt or 0.0) + 1.0
        # A report about the time of a probe that failed tells of its overshoot, which
        # ending the probe already undid: cutting for it again (EDGE: from 214 kbps to 76
        # after one probe) would cost the video that fitted before the probe.
        about_probe = (self._failed_at is not None
                       and not self._describes_since(now, sr_age_s, self._failed_at))
        if loss > cfg.high_loss or (inflated and (rising or (drained and not falling))):
            self._clean_since = None
            if now - self._last_decrease >= cfg.decrease_interval_s and not about_probe:
                base = self._estimate
                if 0 < self._sending_bps < base:
                    base = self._sending_bps
                if loss > cfg.high_loss:
                    # What got through, a little under: the queue must drain too.
                    self._set_estimate(base * (1 - loss) * 0.95)
                else:
                    self._set_estimate(base * 0.85)
                self._last_decrease = now
                self._failures = 0  # the link changed: past failed probes say little now
        elif self._loss < cfg.low_loss and not inflated:
            if self._clean_since is None:
                self._clean_since = now
        else:
            self._clean_since = None

    def on_nack(self, now: float, fresh: int) -> None:
        """A NACK from the subscriber naming `fresh` packets it had not asked for before."""
        cfg = self.config
        regret = self._succeeded if now - self._succeeded_at <= cfg.probe_regret_s else None
        probe = self._probe or regret
        if probe is None or probe.before_bps >= cfg.nack_probe_max_bps:
            return
        self._nacks.append((now, fresh))
        while self._nacks and self._nacks[0][0] < now - cfg.nack_window_s:
            self._nacks.popleft()
        if sum(n for _, n in self._nacks) < cfg.probe_fail_nacks:
            return
        # Failed, also if it succeeded just now: its overshoot showed only after the verdict.
        self._probe, self._succeeded = probe, None
        self._end_probe(now, success=False)
        self._nacks.clear()

    def on_remb(self, now: float, bitrate_bps: float) -> None:
        """A REMB from the subscriber's browser: the most it wants to receive."""
        self._feedback(now)
        # A receiver's estimator starts low, ramps up with what it gets and wobbles (aiortc's
        # by tens of percent), so a REMB under what is sent is not by itself an overload. It
        # sets how far to cut when the receiver cut it (a REMB that fell, below what is sent)
        # while receiver reports show trouble too. Above what is sent, a REMB only echoes the
        # rate it was given (browsers cap it near 1.5x the incoming rate), so it says nothing
        # about spare capacity and must not hold the estimate down.
        previous, self._last_remb = self._last_remb, bitrate_bps
        fell = previous is not None and bitrate_bps < self.config.remb_fall * previous
        if (fell and self._troubled and 0 < bitrate_bps < 0.95 * self._sending_bps
                and bitrate_bps < self._estimate
                and now - self._last_decrease >= self.config.decrease_interval_s):
            if self._probe is not None:
                # The probe's own overshoot, which ending it undoes: cutting below where it
                # started (EDGE: from 105 kbps to 55) left a patient without video for the
                # rest of the call, the next far probe being a minute away.
                self._end_probe(now, success=False)
                return
            # At most to remb_floor of what is sent in one cut: a receiver's estimator can
            # overshoot downwards by far more than the link did (aiortc's reported 20 kbps on
            # a 300 kbps link).
            self._set_estimate(max(bitrate_bps, self.config.remb_floor * self._sending_bps))
            self._last_decrease = now
            self._clean_since = None

    # -- output --------------------------------------------------------------------------

    @property
    def estimate_bps(self) -> float:
        """The confirmed capacity (without a probe's allowance)."""
        return self._estimate

    @property
    def tight(self) -> bool:
        """Whether this is a thin link whose delay leaves voices little margin (see
        EstimatorConfig.fine_probe_below_bps)."""
        cfg = self.config
        if self._rtt_samples < cfg.rtt_samples_before_queue:
            return False
        return (self._estimate < cfg.fine_probe_below_bps
                and self._voice_margin() < cfg.tight_margin_s)

    @property
    def room_for_video(self) -> bool:
        """Whether video may be asked of this link at all (see EstimatorConfig.video_margin_s);
        True until the path's RTT is known."""
        cfg = self.config
        if self._rtt_samples < cfg.rtt_samples_before_queue:
            return True
        return (self._estimate >= cfg.fine_probe_below_bps
                or self._voice_margin() >= cfg.video_margin_s)

    @property
    def probe_gain_cap(self) -> float:
        """How far above the estimate a probe may go now (see the module's docs)."""
        cfg = self.config
        if self._clean_path(self._last_tick):
            return max(cfg.probe_max_gain, cfg.clean_probe_max_gain)
        return cfg.probe_max_gain

    def _clean_path(self, now: float) -> bool:
        # One round trip is enough here: Chromium receiving voices only reports every ~4.5 s
        # (waiting for two put a patient's first picture 10 s into the call), and a path
        # this short leaves voices ample margin whatever its jitter turns out to be.
        cfg = self.config
        return (self._rtt_samples >= 1
                and self._base_rtt() <= cfg.clean_rtt_max_s
                and now - self._last_decrease >= cfg.clean_quiet_s
                and self._failures == 0 and self._loss < cfg.low_loss and not self.tight)

    def tick(self, now: float, wanted_bps: float | None = None,
             wanted_use_bps: float | None = None, *,
             goal: Callable[[], tuple[float, float] | None] | None = None) -> Estimate:
        """Advance to now. wanted_bps: the allowance the next better plan needs (a probe's
        target); wanted_use_bps: what that plan sends (default: all of wanted_bps). A probe
        counts only once the SFU really sent about that much.

        goal: instead of the two, a function giving (wanted_bps, wanted_use_bps) or None,
        called only on a tick that could start a probe (finding the next better plan is the
        costly part of a tick, and most ticks cannot use it)."""
        cfg = self.config
        dt = max(0.0, now - self._last_tick)
        self._last_tick = now
        if now - max(self._last_feedback, self._last_traffic) >= cfg.silence_s:
            if not self._silent:
                self._silent = True
                self._probe = None
                self._clean_since = None
            return Estimate(cfg.min_bps, self._estimate, LinkState.SILENT, self._loss, self._srtt)
        probe = self._probe
        if probe is not None and now - probe.started >= cfg.probe_s:
            if probe.confirmed:
                self._end_probe(now, success=True)
            elif now - probe.started >= 2 * cfg.probe_s + (self._srtt or 0.0):
                self._end_probe(now, success=None)  # never sent near it: nothing learnt
        clean_for = None if self._clean_since is None else now - self._clean_since
        if self._probe is None and clean_for is not None:
            tight = self.tight
            # Not on a tight link: there probes prove what they ask, and growth beyond
            # crept past EDGE's 200 kbps (to 226 while sending ~170) and let a still join
            # the one moving picture without a probe; the queue that made cost voices seconds.
            if clean_for >= cfg.clean_before_growth_s and not tight:
                ceiling = cfg.proven_headroom * self._sending_bps + 20_000
                if self._estimate < ceiling:
                    grown = self._estimate * (1 + cfg.growth_per_s) ** dt
                    self._set_estimate(min(grown, ceiling))
            # A probe is judged against the path's own RTT: none before that is known.
            ready = ((self._rtt_samples >= cfg.rtt_samples_before_queue
                      or self._clean_path(now))
                     and clean_for >= cfg.probe_after_s and now >= self._next_probe)
            if ready and goal is not None:
                wanted_bps, wanted_use_bps = goal() or (None, None)
            far = (wanted_bps is not None
                   and wanted_bps > self._estimate * cfg.probe_step_gain * 1.001)
            if far and tight:
                # After any cut (a failed probe is one): the link showed it is thin.
                far_after = max(self._next_far_probe,
                                self._last_decrease + self._tight_far_wait)
            else:
                far_after = self._next_far_probe
            if (wanted_bps is not None and wanted_bps > self._estimate and ready
                    and (not far or now >= far_after)):
                clean = self._clean_path(now)
                gain = max(cfg.probe_max_gain, cfg.clean_probe_max_gain) if clean else (
                    cfg.probe_max_gain)
                target = min(wanted_bps, self._estimate * gain, cfg.max_bps)
                use = min(target, wanted_use_bps if wanted_use_bps is not None else target)
                if now >= self._failed_until or use < 0.9 * self._failed_use:
                    self._probe = _Probe(target, now, self._estimate, self._last_rtt, use,
                                         tight=tight, clean=clean)
        if self._probe is not None:
            return Estimate(self._probe.target_bps, self._estimate, LinkState.PROBING,
                            self._loss, self._srtt)
        recent_cut = now - self._last_decrease < cfg.clean_before_growth_s
        state = LinkState.BACKING_OFF if recent_cut else LinkState.STEADY
        return Estimate(self._estimate, self._estimate, state, self._loss, self._srtt)

    # -- internals -----------------------------------------------------------------------

    def _feedback(self, now: float) -> None:
        self._last_traffic = max(self._last_traffic, now)
        if self._silent:
            # Back after a cut: the link may be another one now; restart low and probe up.
            self._silent = False
            self._set_estimate(min(self._estimate, self.config.initial_bps))
            self._loss = 0.0
            self._srtt = None
            self._last_rtt = None
            self._rtt_jitter = 0.0
            self._rtt_samples = 0
            self._rtts.clear()
            self._clean_since = now
            self._next_probe = now + self.config.probe_after_s
            self._failed_use = float("inf")
        self._last_feedback = now

    def _rtt_inflated(self, rtt_s: float | None) -> bool:
        """Whether this report's RTT (the smoothed one if it has none) shows a queue."""
        rtt = rtt_s if rtt_s is not None else self._srtt
        if (not self.config.queue_from_rtt or rtt is None
                or self._rtt_samples < self.config.rtt_samples_before_queue):
            return False
        return rtt - self._base_rtt() > self._queue_threshold()

    def _base_rtt(self) -> float:
        """The path's RTT without a queue: the least seen over the RTT window."""
        return min((sample for _, sample in self._rtts), default=0.0)

    def _describes_since(self, now: float, sr_age_s: float | None, since: float) -> bool:
        """Whether a report arriving now tells of the path after `since` plus a settling time:
        by the SR it echoes when known, else by one round trip and a report interval."""
        cfg = self.config
        if sr_age_s is not None:
            return now - sr_age_s >= since + cfg.probe_settle_s
        return now - since >= (self._srtt or 0.0) + cfg.probe_report_lag_s

    def _voice_margin(self) -> float:
        """What the voice deadline leaves after the path's one-way delay."""
        return self.config.voice_deadline_s - self._base_rtt() / 2

    def _queue_threshold(self) -> float:
        """RTT growth that means a queue worth acting on, rather than the path's jitter."""
        cfg = self.config
        margin = 0.5 * self._voice_margin()
        noise = cfg.rtt_inflation_s + 2 * self._rtt_jitter
        return min(cfg.rtt_inflation_max_s, max(margin, min(noise, 2 * margin)))

    def _end_probe(self, now: float, success: bool | None) -> None:
        probe = self._probe
        assert probe is not None
        self._probe = None
        if success:
            # What was really carried is proven, with the usual headroom; no more: a plan that
            # sent less than the probe's allowance proved nothing about the rest of it.
            proven = self.config.proven_headroom * probe.peak_bps + 20_000
            if probe.clean and probe.peak_bps >= self.config.probe_fill * probe.use_bps:
                # A clean, short path carried the plan it probed for without a sign of
                # queue or loss: the target is proven (1.1x what was sent never covers a
                # plan that counts forwarded video with its burst factor, 1.3x).
                proven = max(proven, probe.target_bps)
            if probe.tight and probe.peak_bps >= 0.9 * probe.use_bps:
                # A thin link's probe asks just what its plan needs (no video below a
                # floor, hysteresis); the plan sent in full and stayed clean: it is proven.
                # Else a thumbnail (~80 kbps sent with the mix) never proves its 120 floor.
                proven = max(proven, probe.target_bps)
            self._set_estimate(max(probe.before_bps, min(probe.target_bps, proven)))
            self._probe_wait = self.config.probe_again_s
            self._failures = 0
            self._failed_use = float("inf")
            self._tight_far_wait = self.config.tight_far_wait_s
            self._succeeded, self._succeeded_at = probe, now
        elif success is False:
            self._set_estimate(min(self._estimate, probe.before_bps))
            cfg = self.config
            self._failures += 1
            self._probe_wait = min(2 * self._probe_wait, cfg.probe_backoff_max_s)
            if self._failures >= cfg.probe_failures_before_long_wait:
                self._probe_wait = cfg.long_probe_wait_s
            if probe.target_bps > probe.before_bps * cfg.probe_step_gain * 1.001:
                self._next_far_probe = now + cfg.long_probe_wait_s
                if probe.tight:
                    self._tight_far_wait = min(2 * self._tight_far_wait,
                                               cfg.tight_far_wait_max_s)
            self._failed_use = probe.use_bps
            thin = probe.before_bps < min(cfg.thin_link_bps, cfg.initial_bps) or (
                probe.tight and probe.before_bps != cfg.initial_bps)
            self._failed_at = now
            self._failed_until = now + (cfg.long_probe_wait_s if thin
                                        else cfg.failed_target_wait_s)
            self._last_decrease = now
            self._clean_since = None
        self._next_probe = now + self._probe_wait

    def _set_estimate(self, bps: float) -> None:
        self._estimate = min(self.config.max_bps, max(self.config.min_bps, bps))
