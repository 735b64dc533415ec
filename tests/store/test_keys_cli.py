"""Key modes and the CLI's answers when the keys cannot be opened: one line, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.store import open_store
from appliance.store.keyring import StoreLockedError
from tests.store.cli import clinicbox

pytestmark = pytest.mark.timeout(60)

PASSPHRASE = "correct horse battery staple"


def _one_line_error(result, text: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("clinicbox: error:")
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert text in result.stderr


def test_passphrase_mode(settings: Settings, tmp_path: Path) -> None:
    store = open_store(settings, PASSPHRASE)
    store.Patient.create(display_name="Locked Away")
    store.close()
    with pytest.raises(StoreLockedError, match="wrong store passphrase"):
        open_store(settings, "not the right passphrase")
    with pytest.raises(StoreLockedError, match="passphrase-protected"):
        open_store(settings)

    _one_line_error(clinicbox(settings, "keys", "status"), "passphrase-protected")
    _one_line_error(
        clinicbox(settings, "audit", "verify", CLINICBOX_STORE_PASSPHRASE="wrong wrong wrong"),
        "wrong store passphrase",
    )
    good = tmp_path / "pass"
    good.write_text(PASSPHRASE + "\n")
    status = clinicbox(settings, "keys", "status", "--passphrase-file", str(good))
    assert status.returncode == 0, status.stderr
    assert "mode: passphrase" in status.stdout
    _one_line_error(
        clinicbox(settings, "keys", "rotate", "--passphrase-file", str(tmp_path / "nope")),
        "cannot read passphrase file",
    )
    reopened = open_store(settings, PASSPHRASE)
    assert reopened.Patient.get().display_name == "Locked Away"
    reopened.close()


def test_short_passphrase_refused(settings: Settings) -> None:
    with pytest.raises(StoreLockedError, match="at least 12"):
        open_store(settings, "short")


def test_key_files_are_private(settings: Settings) -> None:
    open_store(settings).close()
    for name in ("store-keys.json", "store-device.key"):
        assert (settings.secrets_dir / name).stat().st_mode & 0o777 == 0o600
    assert settings.secrets_dir.stat().st_mode & 0o777 == 0o700


def test_lost_device_secret_is_one_line(settings: Settings) -> None:
    open_store(settings).close()
    (settings.secrets_dir / "store-device.key").unlink()
    _one_line_error(clinicbox(settings, "keys", "status"), "device secret")


def test_replaced_device_secret_is_wrong_secret(settings: Settings) -> None:
    open_store(settings).close()
    (settings.secrets_dir / "store-device.key").write_bytes(b"\0" * 32)
    _one_line_error(clinicbox(settings, "audit", "verify"), "wrong store device secret")


def test_corrupt_keys_file_is_one_line(settings: Settings) -> None:
    open_store(settings).close()
    (settings.secrets_dir / "store-keys.json").write_text("{not json")
    _one_line_error(clinicbox(settings, "keys", "rotate"), "unreadable")


def test_set_change_and_remove_passphrase(settings: Settings, tmp_path: Path) -> None:
    store = open_store(settings)
    note_id = store.Patient.create(display_name="Rewrapped Person").id
    store.close()
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text(PASSPHRASE)
    second.write_text("another long passphrase")

    done = clinicbox(settings, "keys", "passphrase", "--new-passphrase-file", str(first))
    assert done.returncode == 0, done.stderr
    assert "passphrase mode" in done.stdout
    assert not (settings.secrets_dir / "store-device.key").exists()
    with pytest.raises(StoreLockedError, match="passphrase-protected"):
        open_store(settings)

    done = clinicbox(settings, "keys", "passphrase", "--passphrase-file", str(first),
                     "--new-passphrase-file", str(second))
    assert done.returncode == 0, done.stderr
    with pytest.raises(StoreLockedError, match="wrong store passphrase"):
        open_store(settings, PASSPHRASE)
    store = open_store(settings, "another long passphrase")
    assert store.Patient.get_by_id(note_id).display_name == "Rewrapped Person"
    # Not while another process (here: this one) has the store open.
    busy = clinicbox(settings, "keys", "passphrase", "--passphrase-file", str(second),
                     "--device")
    _one_line_error(busy, "stop it first")
    store.close()

    done = clinicbox(settings, "keys", "passphrase", "--passphrase-file", str(second),
                     "--device")
    assert done.returncode == 0, done.stderr
    store = open_store(settings)
    assert store.keyring.mode == "device"
    assert store.Patient.get_by_id(note_id).display_name == "Rewrapped Person"
    store.close()
    _one_line_error(clinicbox(settings, "keys", "passphrase"), "exactly one of")
    verified = clinicbox(settings, "audit", "verify")
    assert verified.returncode == 0 and "3 entries verified" in verified.stdout
