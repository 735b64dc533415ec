"""Root-run scripts over the service user's data dir follow no link the service user planted:
factory reset (and the `clinicbox factory-reset` it runs) and first boot, with real symlinks
and hard links made as the service user would."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.store.keyring import DEVICE_SECRET_FILE, KEYS_FILE
from appliance.store.store import LOCK_FILE
from tests.conftest import CLINICBOX, REPO, box_env, free_port

SCRIPTS = REPO / "firmware_scripts"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="root runs these scripts; the test needs root"),
]


def _victim(path: Path, text: str = "precious, not the box's\n") -> Path:
    """A root-owned 0644 file outside the data dir."""
    path.write_text(text)
    path.chmod(0o644)
    return path


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    for root, dirs, files in os.walk(top):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, uid, gid, follow_symlinks=False)


def test_factory_reset_overwrites_and_deletes_no_link_target(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = dict(box_env(data, free_port()), CLINICBOX_BIN=CLINICBOX)
    secret = tmp_path / "pw"
    secret.write_text("correct horse battery\n")
    provision = subprocess.run(
        [
            CLINICBOX,
            "provision",
            "--clinic-name",
            "Hill Clinic",
            "--admin-user",
            "admin.ana",
            "--admin-password-file",
            str(secret),
            "--tech-user",
            "tech.tom",
            "--tech-password-file",
            str(secret),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert provision.returncode == 0, provision.stderr
    nobody = pwd.getpwnam("nobody")
    _chown_tree(data, nobody.pw_uid, nobody.pw_gid)  # the service user's, as on a box

    outside = tmp_path / "outside"
    outside.mkdir()
    keys_target = _victim(outside / "keys-target")
    linked_target = _victim(outside / "hard-linked")
    lock_target = outside / "created-by-root"
    state_target = outside / "state-target"
    state_target.mkdir()
    _victim(state_target / "keep")
    # What a compromised service could plant before a technician runs the reset as root:
    secrets = data / "secrets"
    (secrets / KEYS_FILE).unlink()
    (secrets / KEYS_FILE).symlink_to(keys_target)
    (secrets / DEVICE_SECRET_FILE).unlink(missing_ok=True)
    os.link(linked_target, secrets / DEVICE_SECRET_FILE)
    (data / LOCK_FILE).unlink(missing_ok=True)
    (data / LOCK_FILE).symlink_to(lock_target)
    shutil.rmtree(data / "state")
    (data / "state").symlink_to(state_target)

    done = subprocess.run(
        [str(SCRIPTS / "factory-reset.sh"), "--yes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for victim in (keys_target, linked_target, state_target / "keep"):
        assert victim.read_bytes() == b"precious, not the box's\n", victim
        assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not lock_target.exists()
    assert "factory reset done" in done.stdout and "Traceback" not in done.stderr
    assert "symbolic link" in done.stderr and "hard links" in done.stderr
    # The links themselves are gone, and so is everything the reset must remove.
    for gone in (
        secrets / KEYS_FILE,
        secrets / DEVICE_SECRET_FILE,
        data / "state",
        data / "clinicbox.db",
        data / "tls",
        secrets / "device-ed25519.pem",
    ):
        assert not os.path.lexists(gone), gone


@pytest.fixture
def netns() -> Iterator[str]:
    if shutil.which("nft") is None:
        pytest.skip("first boot loads the firewall: it needs nftables")
    name = f"clfw{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True, timeout=10)


def test_first_boot_writes_and_chmods_no_link_target(tmp_path: Path, netns: str) -> None:
    prefix = tmp_path / "opt"
    (prefix / "lib").mkdir(parents=True)
    shutil.copy2(SCRIPTS / "firewall.sh", prefix / "lib" / "firewall.sh")
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    victim = _victim(tmp_path / "victim")
    (data / ".first-boot-done").symlink_to(victim)
    env = dict(
        os.environ,
        CLINICBOX_PREFIX=str(prefix),
        CLINICBOX_DATA_DIR=str(data),
        CLINICBOX_USER="no-such-user-here",
    )
    run = ["ip", "netns", "exec", netns, str(SCRIPTS / "first-boot.sh")]
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious, not the box's\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    marker = data / ".first-boot-done"
    assert not marker.is_symlink() and stat.S_IMODE(marker.stat().st_mode) == 0o600

    linked = tmp_path / "linked-data"
    linked.symlink_to(tmp_path / "victim-dir")
    (tmp_path / "victim-dir").mkdir(mode=0o755)
    refused = subprocess.run(
        run,
        env=dict(env, CLINICBOX_DATA_DIR=str(linked)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2 and "symbolic link" in refused.stderr
    assert stat.S_IMODE((tmp_path / "victim-dir").stat().st_mode) == 0o755
