"""`clinicbox wipe`: after it, a copy of the old database cannot be read by anyone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.store import IntegrityError, open_store
from appliance.store.keyring import StoreLockedError
from tests.store.cli import clinicbox
from tests.store.conftest import make_session

pytestmark = pytest.mark.timeout(60)


def test_wipe_makes_old_database_bytes_unreadable(settings: Settings, tmp_path: Path) -> None:
    store = open_store(settings)
    _user, patient, _session = make_session(store)
    note = store.SessionNote.create(patient=patient, author=_user, text="wipe-marker note")
    store.close()
    stolen = tmp_path / "stolen.db"
    shutil.copy(settings.database_path, stolen)

    done = clinicbox(settings, "wipe", "--yes")
    assert done.returncode == 0, done.stderr
    assert "keys destroyed" in done.stdout
    assert not settings.database_path.exists()
    assert not list(settings.secrets_dir.glob("store-*"))

    # Put the old bytes back where they were: the box refuses them rather than making new
    # keys over them...
    shutil.copy(stolen, settings.database_path)
    with pytest.raises(StoreLockedError, match="is missing"):
        open_store(settings)
    # ...and with freshly made keys (all an attacker could make), every ciphertext fails.
    fresh = Settings(data_dir=tmp_path / "attacker", hostname="x")
    fresh.data_dir.mkdir()
    shutil.copy(stolen, fresh.database_path)
    (fresh.data_dir / "secrets").mkdir(mode=0o700)
    from appliance.store.keyring import Keyring

    Keyring.open(fresh.secrets_dir)  # keys first, so open_store does not refuse the old db
    attacker = open_store(fresh)
    try:
        with pytest.raises(IntegrityError):
            _ = attacker.SessionNote.get_by_id(note.id).text
        with pytest.raises(IntegrityError):
            _ = attacker.Patient.get_by_id(patient.id).display_name
    finally:
        attacker.close()
    assert b"wipe-marker" not in stolen.read_bytes()


def test_wipe_refuses_while_store_is_open(settings: Settings) -> None:
    store = open_store(settings)
    try:
        busy = clinicbox(settings, "wipe", "--yes")
        assert busy.returncode == 2
        assert busy.stderr.strip().count("\n") == 0
        assert "stop it first" in busy.stderr
        assert settings.database_path.exists()
    finally:
        store.close()


def test_wipe_needs_confirmation(settings: Settings) -> None:
    open_store(settings).close()
    refused = clinicbox(settings, "wipe")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert settings.database_path.exists()
