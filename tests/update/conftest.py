"""Bundles built once per test session from this checkout: 1.0.0 (full), 1.0.1 (a one-line
change, as a delta) and 1.0.2 (a release whose SFU forwards no video, as a delta). Dependency
wheels are cached outside the repo across sessions; nothing is written into the checkout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

# The centre's fixtures (a real `clinicbox-central serve`, a real PostgreSQL) for the tests of
# updates over the sync link.
from tests.sync.conftest import central_sqlite, postgres  # noqa: F401

CENTRAL = str(Path(sys.executable).with_name("clinicbox-central"))
CLINICBOX = str(Path(sys.executable).with_name("clinicbox"))
LAUNCHER = REPO / "appliance" / "update" / "releases.py"
WHEEL_CACHE = Path(os.environ.get("CLINICBOX_TEST_WHEELS", "/var/tmp/clinicbox-test-wheels"))


@dataclass
class Bundles:
    dir: Path
    key: Path
    keys_dir: Path
    v100: Path
    v101: Path
    v102_broken: Path


def _source_copy(dest: Path, extra_line: str | None = None, break_video: bool = False) -> Path:
    dest.mkdir(parents=True)
    for name in ("appliance", "web", "sync", "firmware_scripts"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    if extra_line:
        with (dest / "web" / "health.py").open("a") as fh:
            fh.write(f"# {extra_line}\n")
    if break_video:
        room = dest / "appliance" / "media" / "subscriptions.py"
        text = room.read_text()
        assert "_fill(viewer.video_slots, video)" in text
        room.write_text(
            text.replace("_fill(viewer.video_slots, video)", "_fill(viewer.video_slots, [])")
        )
    return dest


def _build(
    source: Path,
    version: str,
    key: Path,
    out: Path,
    delta_from: Path | None = None,
    whole_wheels: bool = False,
) -> None:
    cmd = [
        CENTRAL,
        "bundle",
        "build",
        "--source",
        str(source),
        "--version",
        version,
        "--key",
        str(key),
        "--out",
        str(out),
        "--platform",
        "x86_64",
        "--wheel-cache",
        str(WHEEL_CACHE),
    ]
    if delta_from is not None:
        cmd += ["--delta-from", str(delta_from)]
    if whole_wheels:
        cmd.append("--whole-wheels")
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    work = tmp_path_factory.mktemp("bundles")
    key = work / "release.key"
    public = subprocess.run(
        [CENTRAL, "bundle", "keygen", str(key)], check=True, capture_output=True, text=True
    ).stdout.strip()
    keys_dir = work / "trusted"
    keys_dir.mkdir()
    (keys_dir / "release-1.pub").write_text(public + "\n")
    v100 = work / "clinicbox-1.0.0.cbup"
    _build(_source_copy(work / "src100"), "1.0.0", key, v100)
    v101 = work / "clinicbox-1.0.1.cbup"
    _build(_source_copy(work / "src101", "1.0.1: one line"), "1.0.1", key, v101, v100)
    v102 = work / "clinicbox-1.0.2.cbup"
    _build(_source_copy(work / "src102", "1.0.2", break_video=True), "1.0.2", key, v102, v101)
    return Bundles(work, key, keys_dir, v100, v101, v102)


def with_whole_wheels(bundles: Bundles, delta: Path, base: Path, out: Path) -> Path:
    """`delta` again with its patched wheels sent whole (as `--whole-wheels` builds it), made
    without a rebuild: for tests of the download itself, which need a delta of some size."""
    import tarfile
    from dataclasses import replace

    from appliance.update.bundle import PATCH_SUFFIX, PATCHES, WHEELS, write_bundle
    from appliance.update.manifest import Manifest, load_release_key, sign
    from appliance.update.wheel_patch import apply_patch

    with tarfile.open(delta) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    manifest = Manifest.from_bytes(members["manifest.json"])
    with tarfile.open(base) as tar:
        base_wheels = {
            m.name.removeprefix(WHEELS): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.name.startswith(WHEELS)
        }
        base_manifest = Manifest.from_bytes(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    base_by_sha = {w.sha256: base_wheels[w.name] for w in base_manifest.wheels}
    sizes = {w.name: w.size for w in manifest.wheels}
    files = {}
    for patch in manifest.patches:
        made = apply_patch(
            base_by_sha[patch.base_sha256],
            members[PATCHES + patch.name + PATCH_SUFFIX],
            sizes[patch.name],
        )
        files[patch.name] = out.parent / patch.name
        files[patch.name].write_bytes(made)
    for name, data in members.items():
        if name.startswith(WHEELS):
            files[name.removeprefix(WHEELS)] = out.parent / name.removeprefix(WHEELS)
            files[name.removeprefix(WHEELS)].write_bytes(data)
    whole = replace(manifest, patches=[])
    extra = {n: d for n, d in members.items() if n.startswith("system/")}
    write_bundle(out, whole, sign(whole, load_release_key(bundles.key)), files, extra)
    return out


@dataclass
class Box:
    """A release root, a data dir and the environment `clinicbox update` runs with."""

    root: Path
    data: Path
    port: int
    env: dict[str, str]

    def update(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLINICBOX, "update", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def launch(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["python3", str(LAUNCHER), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def make_box(tmp: Path, bundles: Bundles) -> Box:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICBOX_")}
    env.update(
        CLINICBOX_RELEASE_ROOT=str(tmp / "opt"),
        CLINICBOX_RELEASE_KEYS=str(bundles.keys_dir),
        CLINICBOX_DATA_DIR=str(tmp / "data"),
        CLINICBOX_PORT=str(port),
        CLINICBOX_HOST="127.0.0.1",
        CLINICBOX_DISCOVERY_ENABLED="false",
        CLINICBOX_UPDATE_RESTART="pidfile",
        # The units and firewall script a release owns land here, never in the host's /etc.
        CLINICBOX_SYSTEM_ROOT=str(tmp / "system"),
    )
    return Box(tmp / "opt", tmp / "data", port, env)


class Supervisor:
    """What systemd does for the unit (Restart=always): start the launcher, and start it
    again whenever the service exits."""

    def __init__(self, box: Box, log: Path) -> None:
        self.box = box
        self.log = log
        self.stopping = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(
                    ["python3", str(LAUNCHER), "run", "serve"],
                    env=self.box.env,
                    stdout=out,
                    stderr=out,
                )
                self.starts += 1
                self.proc.wait()
            self.stopping.wait(0.5)

    def start(self) -> Supervisor:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.thread.join(20)


@pytest.fixture
def supervised(tmp_path: Path, bundles: Bundles) -> Iterator[tuple[Box, Supervisor]]:
    box = make_box(tmp_path, bundles)
    installed = box.update("import", str(bundles.v100))
    assert installed.returncode == 0, installed.stderr
    supervisor = Supervisor(box, tmp_path / "serve.log").start()
    yield box, supervisor
    supervisor.stop()


def wait_serving(box: Box, version: str, timeout: float = 120) -> dict[str, object]:
    """Poll /healthz over verified TLS until `version` answers healthy."""
    import json
    import ssl
    import urllib.request

    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        try:
            context = ssl.create_default_context(cafile=str(box.data / "tls" / "ca.pem"))
            with urllib.request.urlopen(
                f"https://127.0.0.1:{box.port}/healthz", context=context, timeout=3
            ) as resp:
                doc = json.loads(resp.read())
            seen = doc.get("version")
            if seen == version and doc.get("status") == "ok":
                return doc
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"release {version} not serving within {timeout} s (saw {seen})")
