"""Shared fixtures: a real `clinicbox serve` process on a free port with its own data dir,
and a fresh weak-link lab."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import Lab, LabUnavailable

REPO = Path(__file__).resolve().parents[1]
CLINICBOX = str(Path(sys.executable).with_name("clinicbox"))


#: What makes a test real-time: it makes calls (aiortc over loopback, browsers, the lab's
#: shaped links) and judges what arrived on time, or, as the relay's tests do, runs a tunnel
#: whose keep-alive must be answered within 1.5 s. `make test` runs these in one process with
#: nothing else beside them, and the rest on two workers (docs/testing.md): the relay's set-ups
#: timed out and its tunnel answered 500 beside a second worker on a loaded machine.
REALTIME_FOLDERS = ("media", "e2e", "weak_link", "lab", "relay")
REALTIME_MARKERS = ("netns", "browser", "lab_call")
#: `pages`: a browser test that only walks the portal's pages (no call, no namespace, no lab)
#: and judges no timing, so it runs in the parallel part although it lives in tests/e2e and
#: drives a browser. It cannot take a test out of the real-time part for `netns` or
#: `lab_call`, and tests/test_suite_split.py checks such files start no call.
PAGES_MARKER = "pages"
PAGES_FOLDERS = ("e2e",)


def is_realtime(item: pytest.Item) -> bool:
    """Whether a test makes real-time calls: by its folder under tests/ or its markers."""
    try:
        folder = Path(str(item.path)).relative_to(REPO / "tests").parts[0]
    except ValueError:  # a test outside tests/
        folder = ""
    if any(item.get_closest_marker(name) for name in ("netns", "lab_call")):
        return True
    if folder in PAGES_FOLDERS and item.get_closest_marker(PAGES_MARKER):
        return False
    return folder in REALTIME_FOLDERS or any(
        item.get_closest_marker(name) for name in REALTIME_MARKERS
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark real-time tests `realtime`, so `-m realtime` / `-m 'not realtime'` split the
    suite."""
    for item in items:
        if is_realtime(item):
            item.add_marker(pytest.mark.realtime)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def box_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICBOX_")}
    env.update(
        CLINICBOX_DATA_DIR=str(data_dir),
        CLINICBOX_PORT=str(port),
        CLINICBOX_HOST="127.0.0.1",
        CLINICBOX_DISCOVERY_ENABLED="false",
        **extra,
    )
    return env


@dataclass
class RunningBox:
    """A `clinicbox serve` subprocess and how to reach it."""

    proc: subprocess.Popen[str]
    port: int
    data_dir: Path
    log_path: Path | None = None  # where its stderr goes; None: a pipe

    def log_text(self) -> str:
        """What the box wrote to stderr (call after stop)."""
        if self.log_path is None:
            return self.proc.stderr.read() if self.proc.stderr else ""
        return self.log_path.read_text(errors="replace")

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data_dir / "tls" / "ca.pem"))

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                self.base_url + path, context=self.ssl_context(), timeout=timeout
            ) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def start_box(data_dir: Path, port: int | None = None, **env: str) -> RunningBox:
    """Start `clinicbox serve` and wait until `/healthz` answers over verified HTTPS."""
    port = port or free_port()
    proc = subprocess.Popen(
        [CLINICBOX, "serve"],
        env=box_env(data_dir, port, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    box = RunningBox(proc, port, data_dir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"clinicbox serve exited early: {proc.stderr.read()}")
        if (data_dir / "tls" / "ca.pem").exists():
            try:
                status, _ = box.get("/healthz", timeout=2)
                if status == 200:
                    return box
            except OSError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("clinicbox serve did not become healthy within 60 s")


@pytest.fixture
def running_box(tmp_path: Path) -> Iterator[RunningBox]:
    box = start_box(tmp_path / "data")
    yield box
    if box.proc.poll() is None:
        box.proc.kill()
        box.proc.wait(5)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh weak-link lab per test; skipped (with the reason) where namespaces cannot be
    made."""
    try:
        with Lab() as made:
            yield made
    except LabUnavailable as exc:
        pytest.skip(f"weak-link lab unavailable: {exc}")
