"""A real call in the weak-link lab: `clinicbox serve` in the box host, real browsers in the
participants' hosts, joining the box's own call page as clinicians and patients do.

```python
with Lab() as lab:
    box = lab.host("box")
    seats = [BrowserSeat("nurse", role="facilitator"), BrowserSeat("p1", link=profiles.THREE_G)]
    hosts = {s.name: lab.host(s.name, link=s.link and profiles.UNSHAPED) for s in seats}
    run = run_browser_call(lab, box, hosts, seats, seconds=20, workdir=tmp)
    run.video("p1")                   # VideoFigures over the measured window
```

Each browser runs inside its host's namespace (`ip netns exec`): headless Debian Chromium
through Playwright (`executable_path`, fake camera and microphone, a fresh user-data-dir), or
Debian's Firefox ESR through `harness/firefox/patient.mjs` (puppeteer-core over WebDriver
BiDi). The facilitator signs in, schedules and starts a session; patients enter its code and
their name, consent, wait, are admitted with "Admit all", and join the call; the facilitator
joins from the session page. `harness/call_probe.js` in every page samples `getStats()`
once a second and counts reconnect notices. Links get their profile before anyone joins (join
times are the link's); the window measured starts `settle_s` after the last participant first
played audio and lasts `seconds`.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import browserstats
from harness.lab import Host, Lab
from harness.profiles import Profile

CHROMIUM = "/usr/bin/chromium"
FIREFOX = "/usr/bin/firefox-esr"
PROBE = Path(__file__).with_name("call_probe.js")
FIREFOX_DRIVER = Path(__file__).with_name("firefox") / "patient.mjs"
CLINICBOX = str(Path(sys.executable).with_name("clinicbox"))
#: The flags every lab Chromium runs with (headless is Playwright's own `--headless`).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # Host candidates as plain addresses: the lab has no mDNS responder.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
CLINICIAN = "dr.lab"
PASSWORD = "lab horse battery staple"
PORT = 8443


class BrowserCallError(RuntimeError):
    """A step of joining the call failed (the message says which participant and step)."""


@dataclass(frozen=True)
class BrowserSeat:
    """A participant: lab host name (also the name shown), link (None: clinic LAN), browser
    ("chromium" or "firefox") and role ("facilitator": the clinician, on the LAN, Chromium)."""

    name: str
    link: Profile | None = None
    browser: str = "chromium"
    role: str = "patient"


@dataclass
class Participant:
    """What one browser recorded: probe samples, notices, page-open and first-audio times."""

    seat: BrowserSeat
    samples: list[dict[str, Any]] = field(default_factory=list)
    notices: list[list[Any]] = field(default_factory=list)
    opened_at: float | None = None
    first_audio_at: float | None = None
    me: str | None = None  # the id the box gave this participant
    #: The call page's join timeline: [ms since page open, step] (harness/call_probe.js) and
    #: its requests (Resource Timing: path, start, response start and end in ms, bytes, and
    #: the time spent opening a connection for it, TCP and TLS: 0 on a kept-alive one).
    steps: list[list[Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    audio_only_start: bool = False  # the page's pre-call check ticked "audio only"

    @property
    def join_s(self) -> float | None:
        """Seconds from opening the call page to the first audio played (None: never)."""
        if self.opened_at is None or self.first_audio_at is None:
            return None
        return round(self.first_audio_at - self.opened_at, 1)

    def join_timeline(self) -> dict[str, float]:
        """Where the join's seconds went: each step's time (s since the call page opened).

        page: the call page's HTML in; scripts: its last static file in; pressed: "Join the
        call"; checks: the pre-call check's timed requests answered by then; offer_sent /
        answer_first_byte / answered: the last offer request's start, its answer's first
        byte and end (the upload, the box's work and a round trip before the first byte);
        then the connection's ICE and DTLS (connected), data channel, first slot message,
        first track and first audio played."""
        steps: dict[str, float] = {}

        def at(name: str, ms: float | None) -> None:
            if ms is not None and name not in steps:
                steps[name] = round(ms / 1000, 1)

        reqs = self.requests
        page = next((r for r in reqs if r["path"].endswith("/call")), None)
        at("page", page and page["end"])
        static = [r["end"] for r in reqs if "/static/" in r["path"]]
        at("scripts", max(static) if static else None)
        pressed = next((ms for ms, what in self.steps if what == "join pressed"), None)
        at("pressed", pressed)
        offers = [r for r in reqs if r["path"].endswith("/api/media/offer")]
        if offers:
            pings = [
                r for r in reqs if r["path"].endswith("/ping") and r["end"] <= offers[-1]["start"]
            ]
            steps["checks"] = float(len(pings))
            at("check_done", max((r["end"] for r in pings), default=None))
            at("offer_sent", offers[-1]["start"])
            at("answer_first_byte", offers[-1]["response"])
            at("answered", offers[-1]["end"])
        last = f"pc{max(1, len(offers))} "
        for name, marker in (
            ("ice_connected", "iceConnectionState connected"),
            ("connected", "connectionState connected"),
            ("data_channel", "data channel open"),
            ("first_message", "first data message"),
            ("first_track", "first track audio"),
        ):
            at(name, next((ms for ms, what in self.steps if what == last + marker), None))
        at("first_audio", next((ms for ms, w in self.steps if w == "first audio played"), None))
        return steps


@dataclass
class BrowserCallRun:
    """Every participant's recording and the window measured (epoch seconds)."""

    participants: dict[str, Participant]
    window: tuple[float, float]
    box_log: str = ""

    def _others(self, name: str) -> set[str]:
        return {p.me for n, p in self.participants.items() if n != name and p.me}

    def id_of(self, name: str) -> str | None:
        return self.participants[name].me

    def audio(self, name: str, from_names: list[str] | None = None) -> browserstats.AudioFigures:
        who = None if from_names is None else {self.id_of(n) or "?" for n in from_names}
        return browserstats.audio(self.participants[name].samples, self.window, who)

    def video(self, name: str, from_names: list[str] | None = None) -> browserstats.VideoFigures:
        """Video `name` decoded; every other participant's picture is expected (4 at most)."""
        if from_names is None:
            expected = min(4, len(self._others(name)))
            return browserstats.video(self.participants[name].samples, self.window, expected)
        who = {self.id_of(n) or "?" for n in from_names}
        return browserstats.video(self.participants[name].samples, self.window, len(who), who)

    def notices(self, name: str) -> int:
        """Reconnect notices `name`'s page showed from joining to the window's end."""
        return browserstats.notices_in(self.participants[name].notices, (0.0, self.window[1]))


def _box_env(data_dir: Path, box: Host, lan: list[str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICBOX_")}
    env.update(
        CLINICBOX_DATA_DIR=str(data_dir),
        CLINICBOX_HOST=box.ip,
        CLINICBOX_PORT=str(PORT),
        CLINICBOX_DISCOVERY_ENABLED="false",
        CLINICBOX_MEDIA_ADDRESSES=box.ip,
        # Every lab host shares one subnet: which of them are the clinic's LAN is said here.
        CLINICBOX_MEDIA_LAN_NETWORKS=",".join(f"{ip}/32" for ip in lan),
        **extra,
    )
    return env


def _in_namespace(netns: str, executable: str, directory: Path) -> str:
    """An executable path that starts `executable` inside `netns` (Playwright keeps talking to
    it over inherited pipes)."""
    wrapper = directory / f"{Path(executable).name}-in-{netns}"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {netns} {executable} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def run_browser_call(
    lab: Lab,
    box: Host,
    hosts: dict[str, Host],
    seats: list[BrowserSeat],
    seconds: float,
    workdir: Path,
    settle_s: float = 5.0,
    join_timeout_s: float = 120.0,
    on_start: Callable[[], None] | None = None,
    box_env: dict[str, str] | None = None,
) -> BrowserCallRun:
    """One call: a fresh box, every seat joins, `seconds` measured after everyone hears.

    `join_timeout_s` bounds reaching the waiting room, and again joining from admission to
    everyone's first audio; whoever has not heard by then is measured anyway (a patient who
    hears nothing reads as 100% concealed)."""
    from playwright.sync_api import sync_playwright

    facilitators = [s for s in seats if s.role == "facilitator"]
    if len(facilitators) != 1 or facilitators[0].browser != "chromium":
        raise ValueError("a lab call needs exactly one facilitator, in Chromium")
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="call-", dir=workdir))
    data_dir = run_dir / "data"
    data_dir.mkdir()
    lan = [box.ip, *(hosts[s.name].ip for s in seats if s.link is None)]
    env = _box_env(data_dir, box, lan, **(box_env or {}))
    _add_clinician(env)
    log_path = run_dir / "box.log"
    with log_path.open("w") as log:
        box_proc = lab.popen(
            box, [CLINICBOX, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log, text=True
        )
    base = f"https://{box.ip}:{PORT}"
    if on_start is not None:
        on_start()
    participants = {s.name: Participant(s) for s in seats}
    with ExitStack() as stack:
        # Unwound last: the box stops after every browser closed, whatever failed.
        stack.callback(_stop_box, box_proc)
        pw = stack.enter_context(sync_playwright())
        ca_file = _box_ca(data_dir, box_proc, log_path)
        pages: dict[str, Any] = {}
        for seat in seats:
            if seat.browser == "chromium":
                pages[seat.name] = stack.enter_context(
                    _chromium(pw, hosts[seat.name].netns, run_dir, seat.name, ca_file)
                )
            elif seat.browser != "firefox":
                raise ValueError(f"unknown browser {seat.browser!r}: chromium or firefox")
        doc = pages[facilitators[0].name]
        _wait_healthy(doc, base, box_proc, log_path)
        session_url, code = _start_session(doc, base)
        firefoxes: dict[str, subprocess.Popen[str]] = {}
        deadline = time.time() + join_timeout_s
        patients = [s for s in seats if s.role != "facilitator"]
        for seat in patients:
            if seat.browser == "firefox":
                firefoxes[seat.name] = _start_firefox(lab, hosts[seat.name], base, code, seat.name)
                stack.callback(_stop, firefoxes[seat.name])
            else:
                _enter_waiting_room(pages[seat.name], base, code, seat.name)
        for name, proc in firefoxes.items():
            _expect_event(proc, "waiting", name, deadline)
        _admit_all(doc, session_url, len(patients), deadline)
        # Joining has its own allowance from admission on: on GPRS reaching the waiting room
        # alone takes a patient ~50 s, one after another.
        deadline = time.time() + join_timeout_s
        waiting = {s.name: pages[s.name] for s in patients if s.browser == "chromium"}
        for name, audio_only in _join_when_ready(waiting, deadline).items():
            participants[name].audio_only_start = audio_only
        doc.goto(session_url)
        doc.get_by_role("link", name="Open the call").click()
        _join_when_ready({facilitators[0].name: doc}, deadline)
        for name, proc in firefoxes.items():
            _expect_event(proc, "joining", name, deadline)
        # Everyone has played some audio (or the join timed out): the window starts.
        while time.time() < deadline:
            heard = [_read_page(pages[n]).get("firstAudioAt") for n in pages]
            heard += [
                _ask(proc, "status", name, deadline).get("firstAudioAt")
                for name, proc in firefoxes.items()
            ]
            if all(heard):
                break
            time.sleep(0.5)
        start = time.time() + settle_s
        window = (start, start + seconds)
        time.sleep(max(0.0, window[1] - time.time()) + 1.0)
        for name, page in pages.items():
            _fill(participants[name], _read_page(page))
        for name, proc in firefoxes.items():
            _fill(participants[name], _ask(proc, "report", name, time.time() + 60))
    # The run's directory (browser profiles, box data) stays in `workdir`, the caller's.
    return BrowserCallRun(participants, window, log_path.read_text(errors="replace"))


def _stop_box(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _add_clinician(env: dict[str, str]) -> None:
    done = subprocess.run(
        [CLINICBOX, "user", "add", CLINICIAN, "--role", "clinician"],
        env=env | {"CLINICBOX_NEW_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise BrowserCallError(f"adding the lab's clinician failed: {done.stderr.strip()}")


def _box_ca(data_dir: Path, proc: subprocess.Popen[Any], log: Path) -> Path:
    """The box's CA certificate, once `clinicbox serve` has made it (at most 60 s)."""
    ca_file = data_dir / "tls" / "ca.pem"
    deadline = time.monotonic() + 60
    while not ca_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BrowserCallError(f"clinicbox serve made no CA: {log.read_text()[-500:]}")
        time.sleep(0.2)
    return ca_file


def _trusting_home(directory: Path, ca_file: Path) -> Path:
    """A HOME whose NSS database trusts `ca_file` (Chromium reads extra roots from
    ~/.pki/nssdb on Linux): it refuses TURN over TLS with a certificate it does not trust,
    and caches nothing from a site whose certificate errors it was told to ignore."""
    nssdb = directory / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for argv in (
        ["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"],
        ["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "lab-ca", "-i", str(ca_file)],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise BrowserCallError(f"certutil failed (libnss3-tools): {done.stderr.strip()}")
    return directory


@contextmanager
def _chromium(pw: Any, netns: str, run_dir: Path, name: str, ca_file: Path) -> Iterator[Any]:
    """A page of a fresh headless Chromium (its own user-data-dir) inside `netns`, trusting
    the box's CA as a clinic tablet that installed it does (or, through the centre's relay,
    the centre's public certificate): with the certificate error only ignored, Chromium
    would cache nothing, and the call script the waiting room prefetches would come again."""
    profile = run_dir / f"chromium-{name}"
    home = _trusting_home(run_dir / f"home-{name}", ca_file)
    context = pw.chromium.launch_persistent_context(
        str(profile),
        executable_path=_in_namespace(netns, CHROMIUM, run_dir),
        env={"HOME": str(home), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        headless=True,
        args=CHROMIUM_ARGS,
        ignore_https_errors=True,
        viewport={"width": 640, "height": 720},
    )
    try:
        context.add_init_script(path=str(PROBE))
        context.set_default_timeout(60_000)
        yield context.pages[0] if context.pages else context.new_page()
    finally:
        context.close()


def _wait_healthy(page: Any, base: str, proc: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrowserCallError(f"clinicbox serve exited: {log.read_text()[-500:]}")
        try:
            if page.goto(base + "/healthz", timeout=5_000).status == 200:
                return
        except Exception:  # refused until the box listens
            time.sleep(0.3)
    raise BrowserCallError("clinicbox serve did not answer /healthz within 60 s")


def _start_session(doc: Any, base: str) -> tuple[str, str]:
    """Sign in as the clinician, schedule and start a session; its page and join code."""
    doc.goto(base + "/login")
    doc.get_by_label("Username").fill(CLINICIAN)
    doc.get_by_label("Password").fill(PASSWORD)
    doc.get_by_role("button", name="Sign in").click()
    doc.wait_for_url(re.compile(r"/dashboard$"))
    doc.goto(base + "/sessions/new")
    doc.get_by_label("Title").fill("Lab call")
    # Ten minutes from now (the box's clock): inside the join window, never in the past.
    soon = datetime.datetime.now() + datetime.timedelta(minutes=10)
    doc.get_by_label("Date and time").fill(soon.strftime("%Y-%m-%dT%H:%M"))
    doc.get_by_role("button", name="Schedule").click()
    code = doc.inner_text("#session-code").replace(" ", "")
    doc.get_by_role("button", name="Start session").click()
    return doc.url, code


def _enter_waiting_room(page: Any, base: str, code: str, name: str) -> None:
    try:
        page.goto(base + "/join", timeout=120_000)
        page.get_by_label(re.compile(r"^Session code")).fill(code)
        page.get_by_label("Your name as others will see it").fill(name)
        page.get_by_role("button", name="Continue").click()
        page.get_by_label("I understand and agree to join").check()
        page.get_by_role("button", name="Join the waiting room").click()
        page.wait_for_url(re.compile(r"/join/wait$"), timeout=120_000)
    except Exception as exc:  # Playwright's timeouts and errors, named for the report
        raise BrowserCallError(f"{name} did not reach the waiting room: {exc}") from exc


def _admit_all(doc: Any, session_url: str, count: int, deadline: float) -> None:
    """Reload the session page until all `count` patients wait, then admit them."""
    while True:
        doc.goto(session_url)
        button = doc.get_by_role("button", name=f"Admit all ({count})")
        if button.count():
            button.click()
            return
        if time.time() > deadline:
            raise BrowserCallError(f"{count} patients did not all reach the waiting room")
        time.sleep(1.0)


def _join_when_ready(pages: dict[str, Any], deadline: float) -> dict[str, bool]:
    """Press "Join the call" on each page as soon as it is the call page and its camera
    works, as each patient would, all at once: waiting for one page after another would
    count one's slow load (GPRS) in the next one's join time. Returns, per page, whether
    the pre-call check ticked "audio only"."""
    ready_js = """() => location.pathname.endsWith("/call") &&
        document.querySelector("#check-cam span")?.textContent === "working" """
    pending, audio_only = dict(pages), {}
    while pending:
        for name, page in list(pending.items()):
            try:
                if not page.evaluate(ready_js):
                    continue
                audio_only[name] = bool(page.is_checked("#start-audio-only"))
                page.click("#join-btn")
                del pending[name]
            except Exception as exc:  # a page between two loads: asked again next round
                if time.time() > deadline:
                    raise BrowserCallError(f"{name} could not join the call: {exc}") from exc
        if pending and time.time() > deadline:
            raise BrowserCallError(f"{', '.join(pending)} never reached a working call page")
        time.sleep(0.2)
    return audio_only


def _read_page(page: Any) -> dict[str, Any]:
    return page.evaluate("""() => { const l = window.__clinicboxLab;
        if (!l) { return {}; }
        const nav = performance.getEntriesByType("navigation")[0];
        const requests = (nav ? [nav] : []).concat(performance.getEntriesByType("resource"))
          .map((r) => ({path: new URL(r.name).pathname, start: Math.round(r.startTime),
                        request: Math.round(r.requestStart), response: Math.round(r.responseStart),
                        end: Math.round(r.responseEnd), bytes: r.transferSize,
                        connect: Math.round(r.connectEnd - r.connectStart),
                        body: r.encodedBodySize}));
        return {samples: l.samples, notices: l.notices, openedAt: l.openedAt,
                firstAudioAt: l.firstAudioAt, steps: l.steps || [], requests}; }""")


def _fill(participant: Participant, lab: dict[str, Any]) -> None:
    participant.samples = lab.get("samples", [])
    participant.notices = lab.get("notices", [])
    participant.opened_at = lab.get("openedAt")
    participant.first_audio_at = lab.get("firstAudioAt")
    participant.steps = lab.get("steps", [])
    participant.requests = lab.get("requests", [])
    participant.me = next((s.get("me") for s in reversed(participant.samples) if s.get("me")), None)


def _start_firefox(lab: Lab, host: Host, base: str, code: str, name: str) -> subprocess.Popen[str]:
    node = shutil.which("node")
    if node is None or not (FIREFOX_DRIVER.parent / "node_modules").is_dir():
        raise BrowserCallError(
            "Firefox needs node and puppeteer-core: run firmware_scripts/dev/install-test-deps.sh"
        )
    spec = {"base": base, "code": code, "name": name, "probe": str(PROBE), "executable": FIREFOX}
    return lab.popen(
        host,
        [node, str(FIREFOX_DRIVER), json.dumps(spec)],
        cwd=str(FIREFOX_DRIVER.parent),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _expect_event(proc: subprocess.Popen[str], event: str, name: str, deadline: float) -> None:
    while _next_message(proc, name, event, deadline).get("event") != event:
        pass


def _ask(proc: subprocess.Popen[str], command: str, name: str, deadline: float) -> dict[str, Any]:
    """Send the Firefox driver a command line; its answer."""
    assert proc.stdin is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    return _next_message(proc, name, command, max(deadline, time.time() + 10))


def _next_message(
    proc: subprocess.Popen[str], name: str, waiting_for: str, deadline: float
) -> dict[str, Any]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.time()))
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise BrowserCallError(f"Firefox patient {name} stopped before {waiting_for!r}")
    message: dict[str, Any] = json.loads(line)
    if "error" in message:
        raise BrowserCallError(f"Firefox patient {name}: {message['error']}")
    return message


def _stop(proc: subprocess.Popen[str]) -> None:
    """Stop the driver and its Firefox.

    puppeteer starts Firefox in a process group of its own, so killing the driver's group
    leaves the browser running: the driver is asked to close it first (end of its input),
    then the groups of the driver and of everything it had started are killed."""
    groups = {proc.pid} | {g for g in map(_group_of, _descendants(proc.pid)) if g is not None}
    if proc.poll() is None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc.poll() is None:
        proc.wait()


def _descendants(root: int) -> list[int]:
    """Every process below `root` in the process tree, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The name field may hold spaces and parentheses: the ppid follows its last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
