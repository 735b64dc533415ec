"""arm64 smoke: the aarch64 bundle installed offline into an arm64 Debian bookworm root
(Python 3.11, like Raspberry Pi OS) and run under qemu user emulation.

    sudo python benchmarks/arm64_smoke.py [--root DIR] [--mirror URL] [--keep]

Steps, each reported as ok or with what failed:
1. binfmt: qemu-aarch64 registered in /proc/sys/fs/binfmt_misc (Debian: qemu-user-static).
2. root: `debootstrap --arch=arm64 --foreign` then the second stage inside the root under
   qemu (skipped when --root already holds a finished root).
3. bundle: `clinicbox-central bundle build --platform aarch64` from this checkout.
4. install: inside the root, a bootstrap venv made offline from the bundle's wheels runs
   `clinicbox update import` (signature, wheels, release venv, units and firewall script).
5. serve: the launcher starts `clinicbox serve` from the installed release.
6. healthz: GET /healthz over TLS, checked against the box's own CA.
7. store: one encrypted record written and read back with the release's own code.
Not part of `make test` (minutes under emulation). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CENTRAL = str(Path(sys.executable).with_name("clinicbox-central"))
VERSION = "1.0.0"
INSIDE = Path("/srv/smoke")  # where the smoke's files live inside the root


def _run(cmd: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _last(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return lines[-1][:300] if lines else f"exit {done.returncode}"


def check_binfmt() -> str | None:
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not Path("/proc/sys/fs/binfmt_misc/status").exists():
        return (
            "binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)"
        )
    if not entry.exists():
        return "qemu-aarch64 is not registered (apt-get install qemu-user-static)"
    text = entry.read_text()
    if "enabled" not in text:
        return "qemu-aarch64 is registered but disabled"
    if "flags: " in text and "F" not in text.split("flags: ")[1].split()[0]:
        return "qemu-aarch64 lacks the F flag: it cannot run inside a chroot"
    return None


def make_root(root: Path, mirror: str) -> str | None:
    if (root / "usr/bin/python3.11").exists() and not (root / "debootstrap").exists():
        return None
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed"
    if not (root / "debootstrap").exists():
        done = _run(
            [
                "debootstrap",
                "--arch=arm64",
                "--foreign",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(root),
                mirror,
            ],
            timeout=1800,
        )
        if done.returncode != 0:
            return f"debootstrap --foreign failed: {_last(done)}"
    done = _run(["chroot", str(root), "/debootstrap/debootstrap", "--second-stage"], 3600)
    if done.returncode != 0:
        return f"second stage under qemu failed: {_last(done)}"
    return None


def build_bundle(work: Path, wheel_cache: Path) -> tuple[Path, str]:
    key = work / "release.key"
    public = _run([CENTRAL, "bundle", "keygen", str(key)], 60, check=True).stdout.strip()
    bundle = work / f"clinicbox-{VERSION}-aarch64.cbup"
    done = _run(
        [
            CENTRAL,
            "bundle",
            "build",
            "--source",
            str(REPO),
            "--version",
            VERSION,
            "--key",
            str(key),
            "--platform",
            "aarch64",
            "--wheel-cache",
            str(wheel_cache),
            "--out",
            str(bundle),
        ],
        1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"aarch64 bundle did not build: {_last(done)}")
    return bundle, public


class Mounts:
    """/proc, /dev and /sys inside the root for the length of the smoke."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: list[Path] = []

    def __enter__(self) -> Mounts:
        for source, target, args in (
            ("proc", "proc", ["-t", "proc"]),
            ("/dev", "dev", ["--bind"]),
            ("/dev/pts", "dev/pts", ["--bind"]),
            ("sysfs", "sys", ["-t", "sysfs"]),
        ):
            path = self.root / target
            path.mkdir(exist_ok=True)
            if _run(["mountpoint", "-q", str(path)], 10).returncode == 0:
                continue
            if _run(["mount", *args, source, str(path)], 30).returncode == 0:
                self.done.append(path)
        return self

    def __exit__(self, *exc: object) -> None:
        for path in reversed(self.done):
            _run(["umount", "-l", str(path)], 30)


def _in_root(root: Path, env: dict[str, str], cmd: list[str], timeout: float) -> Any:
    full = ["chroot", str(root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items())]
    return _run([*full, *cmd], timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def smoke(root: Path, bundle: Path, public: str, steps: dict[str, Any]) -> None:
    inside = root / INSIDE.relative_to("/")
    shutil.rmtree(inside, ignore_errors=True)
    shutil.rmtree(root / "opt/clinicbox", ignore_errors=True)
    (inside / "keys").mkdir(parents=True)
    (inside / "keys" / "release.pub").write_text(public + "\n")
    shutil.copy(bundle, inside / bundle.name)
    shutil.copy(REPO / "appliance/update/releases.py", inside / "releases.py")
    shutil.copy(REPO / "appliance/update/system_files.py", inside / "system_files.py")
    with tarfile.open(bundle) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("wheels/")]
        tar.extractall(inside, members=members, filter="data")
    port = _free_port()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "CLINICBOX_RELEASE_ROOT": "/opt/clinicbox",
        "CLINICBOX_RELEASE_KEYS": f"{INSIDE}/keys",
        "CLINICBOX_SYSTEM_ROOT": f"{INSIDE}/system",
        "CLINICBOX_DATA_DIR": f"{INSIDE}/data",
        "CLINICBOX_PORT": str(port),
        "CLINICBOX_HOST": "127.0.0.1",
        "CLINICBOX_DISCOVERY_ENABLED": "false",
        "CLINICBOX_UPDATE_RESTART": "none",
    }
    done = _in_root(root, env, ["python3", "--version"], 120)
    steps["python"] = done.stdout.strip() or _last(done)

    started = time.monotonic()
    boot = f"{INSIDE}/boot"
    for cmd in (
        ["python3", "-m", "venv", boot],
        [
            f"{boot}/bin/pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            f"{INSIDE}/wheels",
            f"clinicbox=={VERSION}",
        ],
        [f"{boot}/bin/clinicbox", "update", "import", f"{INSIDE}/{bundle.name}"],
    ):
        done = _in_root(root, env, cmd, 3600)
        if done.returncode != 0:
            steps["install"] = f"failed: {' '.join(cmd[:3])}: {_last(done)}"
            return
    steps["install"] = f"ok: {done.stdout.strip()}"
    steps["install_s"] = round(time.monotonic() - started, 1)
    placed = sorted(str(p.relative_to(inside / "system")) for p in (inside / "system").rglob("*"))
    steps["system_files_placed"] = [p for p in placed if (inside / "system" / p).is_file()]

    started = time.monotonic()
    log = (inside / "serve.log").open("wb")
    full = ["chroot", str(root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items())]
    service = subprocess.Popen(
        [*full, "python3", f"{INSIDE}/releases.py", "run", "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        steps["healthz"] = _healthz(inside, port, service, deadline_s=900)
        steps["serve_s"] = round(time.monotonic() - started, 1)
        store = (
            "from appliance.config import load_settings\n"
            "from appliance.store.store import open_store\n"
            "s = open_store(load_settings())\n"
            "with s.transaction():\n"
            "    p = s.Patient.create(display_name='Arm Smoke')\n"
            "print(s.Patient.get_by_id(p.id).display_name)\n"
            "s.close()\n"
        )
        python = "/opt/clinicbox/current/venv/bin/python"
        done = _in_root(root, env, [python, "-c", store], 600)
        read = done.stdout.strip()
        steps["store"] = "ok: wrote and read one record" if read == "Arm Smoke" else _last(done)
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        try:
            service.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()
        log.close()
        tail = (inside / "serve.log").read_text(errors="replace").strip().splitlines()
        steps["serve_log_tail"] = tail[-5:]


def _healthz(inside: Path, port: int, service: subprocess.Popen[bytes], deadline_s: float) -> str:
    deadline = time.monotonic() + deadline_s
    seen = "no answer"
    while time.monotonic() < deadline:
        if service.poll() is not None:
            return f"failed: serve exited with {service.returncode}"
        ca = inside / "data" / "tls" / "ca.pem"
        if ca.exists():
            try:
                context = ssl.create_default_context(cafile=str(ca))
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/healthz", context=context, timeout=10
                ) as resp:
                    doc = json.loads(resp.read())
                if doc.get("status") == "ok":
                    return f"ok: {doc.get('version')} over TLS, status ok"
                seen = f"status {doc.get('status')}"
            except (OSError, ValueError) as exc:
                seen = exc.__class__.__name__
        time.sleep(2)
    return f"failed: {seen} after {deadline_s:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("/var/tmp/clinicbox-arm64/root"))
    parser.add_argument("--mirror", default="http://deb.debian.org/debian")
    parser.add_argument("--wheel-cache", type=Path, default=Path("/var/tmp/clinicbox-wheels"))
    args = parser.parse_args()
    steps: dict[str, Any] = {}
    failed = None
    if os.geteuid() != 0:
        failed = "needs root (debootstrap, chroot, mounts)"
    failed = failed or check_binfmt()
    steps["binfmt"] = failed or "ok"
    if failed is None:
        started = time.monotonic()
        failed = make_root(args.root, args.mirror)
        steps["root"] = failed or f"ok ({time.monotonic() - started:.0f} s)"
    if failed is None:
        with tempfile.TemporaryDirectory(prefix="clinicbox-arm64-") as tmp:
            try:
                bundle, public = build_bundle(Path(tmp), args.wheel_cache)
                steps["bundle_bytes"] = bundle.stat().st_size
                with Mounts(args.root):
                    smoke(args.root, bundle, public, steps)
            except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
                steps["error"] = str(exc)[:300]
    for name, value in steps.items():
        print(f"{name}: {value}")
    result = {
        "binfmt": steps.get("binfmt"),
        "python": steps.get("python"),
        "install": str(steps.get("install", "not run")).split(":")[0],
        "install_s": steps.get("install_s"),
        "healthz": str(steps.get("healthz", "not run")).split(":")[0],
        "serve_s": steps.get("serve_s"),
        "store": str(steps.get("store", "not run")).split(":")[0],
        "failed": failed or steps.get("error"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
