"""Janus (Debian package `janus`) as the native baseline of `sfu_capacity.py`.

`JanusServer` starts Janus with a config dir of its own (VideoRoom plugin and the HTTP
transport on 127.0.0.1 only, every other plugin off) and stops it; `JanusClient` speaks the
Janus HTTP API: sessions, handles, VideoRoom publishers and multistream subscribers. Janus is
the C server the box is measured against: same participants, same clip, same last-N.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

OTHER_PLUGINS = (
    "audiobridge",
    "duktape",
    "echotest",
    "lua",
    "nosip",
    "recordplay",
    "sip",
    "streaming",
    "textroom",
    "videocall",
    "voicemail",
)
OTHER_TRANSPORTS = ("mqtt", "nanomsg", "pfunix", "rabbitmq", "websockets")


class JanusMissing(RuntimeError):
    """Janus is not installed (firmware_scripts/dev/install-test-deps.sh installs it)."""


def janus_lib_dir() -> Path:
    """Janus's plugin directory for this machine's architecture (aarch64 on a Pi)."""
    for base in Path("/usr/lib").glob("*/janus"):
        if (base / "plugins" / "libjanus_videoroom.so").exists():
            return base
    raise JanusMissing("Janus's VideoRoom plugin is missing: apt-get install janus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JanusServer:
    """One Janus process with its own config dir; `url` is its HTTP API."""

    def __init__(self, workdir: Path, interface: str) -> None:
        if shutil.which("janus") is None:
            raise JanusMissing("janus is not installed: apt-get install janus")
        self.workdir = workdir
        self.interface = interface  # Janus gathers no loopback candidates
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/janus"
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        lib = janus_lib_dir()
        conf = self.workdir
        conf.mkdir(parents=True, exist_ok=True)
        disabled = ",".join(f"libjanus_{p}.so" for p in OTHER_PLUGINS)
        transports = ",".join(f"libjanus_{t}.so" for t in OTHER_TRANSPORTS)
        (conf / "janus.jcfg").write_text(f"""general: {{
  configs_folder = "{conf}"
  plugins_folder = "{lib}/plugins"
  transports_folder = "{lib}/transports"
  events_folder = "{lib}/events"
  loggers_folder = "{lib}/loggers"
  debug_level = 2
  session_timeout = 0
  server_name = "capacity-baseline"
}}
media: {{ rtp_port_range = "40000-49999" }}
nat: {{ ice_enforce_list = "{self.interface}" ignore_mdns = true }}
plugins: {{ disable = "{disabled}" }}
transports: {{ disable = "{transports}" }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
events: {{ broadcast = false }}
""")
        (conf / "janus.transport.http.jcfg").write_text(
            f'general: {{ base_path = "/janus" http = true port = {self.port} '
            f'ip = "127.0.0.1" https = false }}\nadmin: {{ admin_http = false }}\n'
        )
        (conf / "janus.plugin.videoroom.jcfg").write_text("general: { }\n")

    def start(self, timeout: float = 20.0) -> int:
        """Start Janus and wait until its HTTP API answers; returns its pid."""
        self._write_config()
        log = (self.workdir / "janus.log").open("wb")
        self.proc = subprocess.Popen(
            ["janus", "-C", str(self.workdir / "janus.jcfg"), "-F", str(self.workdir), "-o"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited: {self.log_tail()}")
            try:
                post(self.url, {"janus": "info"})
                return self.proc.pid
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"janus did not answer within {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.workdir / "janus.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


_transactions = itertools.count()


def post(url: str, body: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    body = {**body, "transaction": f"t{os.getpid()}-{next(_transactions)}"}
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        answer: dict[str, Any] = json.loads(reply.read())
    if answer.get("janus") == "error":
        raise RuntimeError(f"janus error: {answer.get('error')}")
    return answer


def get(url: str, timeout: float = 40.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        answer: dict[str, Any] = json.loads(reply.read())
    return answer


class JanusHandle:
    """One VideoRoom plugin handle in a session of its own (so its events are its own)."""

    def __init__(self, url: str) -> None:
        self.base = url
        self.session = post(url, {"janus": "create"})["data"]["id"]
        self.session_url = f"{url}/{self.session}"
        handle = post(self.session_url, {"janus": "attach", "plugin": "janus.plugin.videoroom"})[
            "data"
        ]["id"]
        self.url = f"{self.session_url}/{handle}"

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous VideoRoom request (create, list ...): its plugin data."""
        reply = post(self.url, {"janus": "message", "body": body})
        data: dict[str, Any] = reply["plugindata"]["data"]
        if data.get("error"):
            raise RuntimeError(f"videoroom: {data['error']}")
        return data

    def message(
        self, body: dict[str, Any], jsep: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """An asynchronous VideoRoom request: the plugin event answering it, and its jsep."""
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        post(self.url, msg)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = get(f"{self.session_url}?maxev=1")
            if event.get("janus") != "event":
                continue
            data = event.get("plugindata", {}).get("data", {})
            if data.get("error"):
                raise RuntimeError(f"videoroom: {data['error']}")
            return data, event.get("jsep")
        raise TimeoutError(f"no answer from janus to {body.get('request')}")

    def destroy(self) -> None:
        try:
            post(self.session_url, {"janus": "destroy"}, timeout=5)
        except OSError:
            pass


def create_room(url: str, room: int, publishers: int) -> None:
    """A VideoRoom room for `publishers` participants: VP8 and Opus, as the box negotiates."""
    handle = JanusHandle(url)
    handle.request(
        {
            "request": "create",
            "room": room,
            "publishers": publishers,
            "videocodec": "vp8",
            "audiocodec": "opus",
            "bitrate": 0,
            "fir_freq": 0,
            "notify_joining": False,
        }
    )
    handle.destroy()


async def publish(url: str, room: int, feed: int, offer_sdp: str) -> tuple[JanusHandle, str]:
    """Join `room` as publisher `feed` with a complete offer; returns the answer's SDP."""

    def run() -> tuple[JanusHandle, str]:
        handle = JanusHandle(url)
        _data, jsep = handle.message(
            {
                "request": "joinandconfigure",
                "ptype": "publisher",
                "room": room,
                "id": feed,
                "audio": True,
                "video": True,
            },
            {"type": "offer", "sdp": offer_sdp},
        )
        if jsep is None:
            raise RuntimeError("janus answered the publisher without SDP")
        return handle, str(jsep["sdp"])

    return await asyncio.to_thread(run)


async def subscribe(url: str, room: int, streams: list[dict[str, Any]]) -> tuple[JanusHandle, str]:
    """Subscribe to `streams` (feed, optional mid) in one multistream handle; Janus offers."""

    def run() -> tuple[JanusHandle, str]:
        handle = JanusHandle(url)
        _data, jsep = handle.message(
            {"request": "join", "ptype": "subscriber", "room": room, "streams": streams}
        )
        if jsep is None:
            raise RuntimeError("janus offered no SDP to the subscriber")
        return handle, str(jsep["sdp"])

    return await asyncio.to_thread(run)


async def start_subscription(handle: JanusHandle, answer_sdp: str) -> None:
    await asyncio.to_thread(
        handle.message, {"request": "start"}, {"type": "answer", "sdp": answer_sdp}
    )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of a process, by `name/tid`."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[f"{name}/{task.name}"] = (int(fields[11]) + int(fields[12])) / tick
    return out
