"""firmware_scripts/: shellcheck, install.sh into a temporary root, units, firewall."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import CLINICBOX, REPO

SCRIPTS = REPO / "firmware_scripts"
PREFIX = "opt/clinicbox"

pytestmark = pytest.mark.timeout(120)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _install(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WHEELHOUSE"}
    env["DESTDIR"] = str(root)
    return subprocess.run([str(SCRIPTS / "install.sh")], env=env, capture_output=True,
                          text=True, timeout=90)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    first = _install(root)
    assert first.returncode == 0, first.stderr
    # Operator edits to the config survive a re-install; everything else converges.
    config = root / "etc/clinicbox/clinicbox.toml"
    config.write_text(config.read_text() + "# edited by the operator\n")
    second = _install(root)
    assert second.returncode == 0, second.stderr
    assert config.read_text().endswith("# edited by the operator\n")
    return root


def test_shellcheck_clean() -> None:
    scripts = sorted(SCRIPTS.glob("*.sh"))
    assert {p.name for p in scripts} >= {"install.sh", "first-boot.sh", "firewall.sh",
                                         "factory-reset.sh"}
    scripts.append(REPO / "tests/discovery/avahi_browse.sh")
    result = subprocess.run(["shellcheck", "--severity=style", *map(str, scripts)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_install_tree_and_modes(staged: Path) -> None:
    expected = {
        f"{PREFIX}": 0o755,
        f"{PREFIX}/bin/clinicbox": 0o755,
        f"{PREFIX}/lib/first-boot.sh": 0o755,
        f"{PREFIX}/lib/firewall.sh": 0o755,
        f"{PREFIX}/lib/factory-reset.sh": 0o755,
        f"{PREFIX}/app/appliance/commands/main.py": 0o644,
        f"{PREFIX}/app/web/templates/setup.html": 0o644,
        f"{PREFIX}/docs/technician-guide.md": 0o644,
        "etc/clinicbox/clinicbox.toml": 0o640,
        "etc/systemd/system/clinicbox.service": 0o644,
        "etc/systemd/system/clinicbox-firstboot.service": 0o644,
        "usr/lib/sysusers.d/clinicbox.conf": 0o644,
        "usr/lib/tmpfiles.d/clinicbox.conf": 0o644,
        "var/lib/clinicbox": 0o700,
    }
    for rel, mode in expected.items():
        path = staged / rel
        assert path.exists(), rel
        assert _mode(path) == mode, f"{rel}: {oct(_mode(path))}"
    assert (staged / PREFIX / "venv/bin/python").exists()
    pth = list((staged / PREFIX / "venv").glob("lib/python3*/site-packages/clinicbox-app.pth"))
    assert [p.read_text() for p in pth] == [f"/{PREFIX}/app\n"]
    assert not list((staged / PREFIX / "app").rglob("__pycache__"))
    # Paths inside the staged files name the real root, never the staging dir.
    assert str(staged) not in (staged / PREFIX / "bin/clinicbox").read_text()
    sysusers = (staged / "usr/lib/sysusers.d/clinicbox.conf").read_text()
    assert "u clinicbox" in sysusers
    # The service user lives in the image's own passwd (once, after two runs) and owns the
    # data dir; the config is root-owned, readable by the service's group.
    users = [line.split(":") for line in (staged / "etc/passwd").read_text().splitlines()]
    service = [u for u in users if u[0] == "clinicbox"]
    assert len(service) == 1, users
    uid, gid = int(service[0][2]), int(service[0][3])
    assert uid != 0 and service[0][6] == "/usr/sbin/nologin"
    data = (staged / "var/lib/clinicbox").stat()
    assert (data.st_uid, data.st_gid) == (uid, gid)
    config = (staged / "etc/clinicbox/clinicbox.toml").stat()
    assert (config.st_uid, config.st_gid) == (0, gid)


def _verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", *map(str, units)],
                          capture_output=True, text=True, timeout=60)


def test_units_pass_systemd_analyze_verify(staged: Path, tmp_path: Path) -> None:
    # verify checks that ExecStart exists, so point the units at the staged tree.
    # Every unit install.sh ships (timers beside the services they start).
    shipped = sorted(p.name for p in (staged / "etc/systemd/system").iterdir())
    assert {"clinicbox.service", "clinicbox-firstboot.service",
            "clinicbox-update-confirm.timer", "clinicbox-update-install.timer"} <= set(shipped)
    units = []
    for name in shipped:
        text = (staged / "etc/systemd/system" / name).read_text()
        unit = tmp_path / name
        unit.write_text(text.replace("/opt/clinicbox", str(staged / PREFIX)))
        units.append(unit)
    result = _verify(units)
    assert result.returncode == 0 and result.stderr == "", result.stderr

    service = (tmp_path / "clinicbox.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ReadWritePaths=/var/lib/clinicbox",
                 "PrivateTmp=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"):
        assert line in service, line

    # The check can fail: a misspelt directive is reported.
    broken = tmp_path / "broken.service"
    broken.write_text(service.replace("Restart=on-failure", "Restart=sometimes"))
    assert "sometimes" in _verify([broken]).stderr


@pytest.fixture
def netns() -> str:
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("the firewall test needs root and nftables")
    name = f"cbfw{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True, timeout=10)


def test_firewall_loads_idempotently(netns: str) -> None:
    env = dict(os.environ, MEDIA_PORTS="40000-40999")
    for _ in range(2):
        result = subprocess.run(["ip", "netns", "exec", netns, str(SCRIPTS / "firewall.sh")],
                                env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    listing = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "ruleset"],
                             capture_output=True, text=True, timeout=30).stdout
    assert listing.count("table inet clinicbox") == 1
    assert "policy drop" in listing
    assert "tcp dport { 443, 8443 } accept" in listing
    assert "udp dport 5353" in listing
    assert "udp dport 40000-40999 accept" in listing
    # Only these inbound services: no other dport is opened.
    assert listing.count("dport") == 4


def test_firewall_opens_only_the_configured_media_range(tmp_path: Path) -> None:
    # The service's own setting decides the range (not the kernel's ephemeral ports).
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin/clinicbox").symlink_to(CLINICBOX)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CLINICBOX_") and k != "MEDIA_PORTS"}
    env.update(CLINICBOX_PREFIX=str(prefix), CLINICBOX_MEDIA_PORTS="41000-41099",
               CLINICBOX_DATA_DIR=str(tmp_path / "data"))
    printed = subprocess.run([str(SCRIPTS / "firewall.sh"), "--print"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert "udp dport 41000-41099 accept" in printed.stdout
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    assert f"{low}-{high}" not in printed.stdout
    del env["CLINICBOX_MEDIA_PORTS"]
    default = subprocess.run([str(SCRIPTS / "firewall.sh"), "--print"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert "udp dport 40000-40999 accept" in default.stdout
    env["MEDIA_PORTS"] = "40000"
    bad = subprocess.run([str(SCRIPTS / "firewall.sh"), "--print"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_first_boot_is_idempotent(staged: Path, netns: str, tmp_path: Path) -> None:
    data = tmp_path / "var-lib-clinicbox"
    env = dict(os.environ, CLINICBOX_PREFIX=str(staged / PREFIX), CLINICBOX_DATA_DIR=str(data),
               CLINICBOX_USER="no-such-user-here")
    for _ in range(2):
        result = subprocess.run(["ip", "netns", "exec", netns,
                                 str(staged / PREFIX / "lib/first-boot.sh")],
                                env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    assert _mode(data) == 0o700
    assert _mode(data / ".first-boot-done") == 0o600
    listing = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"],
                             capture_output=True, text=True, timeout=30).stdout
    assert listing.split() == ["table", "inet", "clinicbox"]


def test_factory_reset_script(tmp_path: Path) -> None:
    from tests.conftest import CLINICBOX, box_env, free_port

    data = tmp_path / "data"
    env = dict(box_env(data, free_port()), CLINICBOX_BIN=CLINICBOX)
    secret = tmp_path / "pw"
    secret.write_text("correct horse battery\n")
    provision = subprocess.run(
        [CLINICBOX, "provision", "--clinic-name", "Hill Clinic", "--admin-user", "admin.ana",
         "--admin-password-file", str(secret), "--tech-user", "tech.tom",
         "--tech-password-file", str(secret)], env=env, capture_output=True, text=True,
        timeout=60)
    assert provision.returncode == 0, provision.stderr
    script = str(SCRIPTS / "factory-reset.sh")

    refused = subprocess.run([script], env=env, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "add --yes" in refused.stderr
    assert (data / "state" / "provisioned").exists()

    for _ in range(2):  # a second reset of a reset box is harmless
        done = subprocess.run([script, "--yes"], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
    assert "factory reset done" in done.stdout
    assert not (data / "state").exists()
    assert not (data / "clinicbox.db").exists()
    assert not (data / "secrets" / "device-ed25519.pem").exists()
