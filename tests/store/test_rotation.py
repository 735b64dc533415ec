"""Key rotation: batches, resume after a kill, and a box writing throughout."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from appliance.config import Settings
from appliance.store import Store, open_store
from appliance.store.models import OutboxEntry
from appliance.store.rotation import rotate, stale_rows
from tests.conftest import CLINICBOX, box_env, free_port
from tests.store.cli import clinicbox
from tests.store.conftest import make_session

pytestmark = pytest.mark.timeout(120)


def _fill(store: Store, count: int) -> list[str]:
    user, patient, _session = make_session(store)
    ids = []
    with store.transaction():
        for n in range(count):
            note = store.SessionNote.create(patient=patient, author=user, text=f"note {n}")
            ids.append(note.id)
    return ids


def _all_readable(store: Store, ids: list[str]) -> None:
    texts = {n.id: n.text for n in store.SessionNote.select()}
    assert all(texts[i].startswith("note ") for i in ids)


def _key_ids_in_rows(store: Store) -> set[int]:
    rows = store.db.execute_sql("SELECT text FROM session_note").fetchall()
    return {store.keyring.key_id_of(bytes(r[0])) for r in rows}


def test_rotation_reencrypts_everything_and_retires_old_key(store: Store) -> None:
    ids = _fill(store, 120)
    versions = {e.record_id: (e.version, e.state) for e in OutboxEntry.select()}
    report = rotate(store, batch_size=25, pause_s=0)
    assert report.key_id == 2 and report.retired == (1,) and not report.resumed
    assert report.rows == 120 + 2  # the notes, plus make_session's patient and group session
    assert store.keyring.key_ids == [2]
    assert _key_ids_in_rows(store) == {2}
    assert stale_rows(store) == 0
    _all_readable(store, ids)
    # Rotation is not an edit: no version bump, no re-send.
    assert {e.record_id: (e.version, e.state) for e in OutboxEntry.select()} == versions
    # A second rotation works the same way.
    assert rotate(store, batch_size=1000, pause_s=0).key_id == 3
    _all_readable(store, ids)


def test_interrupted_rotation_resumes_while_the_box_writes(settings: Settings) -> None:
    box = open_store(settings)  # stands for the serving box: stays open throughout
    ids = _fill(box, 600)
    user = box.User.get()
    patient = box.Patient.get()
    proc = subprocess.Popen(
        [CLINICBOX, "keys", "rotate", "--batch-size", "20", "--pause-ms", "50"],
        env=box_env(settings.data_dir, free_port()), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    # Kill it once it has done some but not all of the work (each line is one batch).
    done = 0
    for n in range(100):
        # The box writes while the rotation runs (between its batches).
        ids.append(box.SessionNote.create(patient=patient, author=user, text=f"note mid {n}").id)
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        done = int(re.fullmatch(r"re-encrypted (\d+) rows\n", line).group(1))
        if done >= 60:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert 60 <= done < 600

    # Meanwhile the box keeps writing and reading; it picks the new key up by itself.
    for n in range(20):
        ids.append(box.SessionNote.create(patient=patient, author=user, text=f"note late {n}").id)
    _all_readable(box, ids)
    assert box.keyring.active_id == 2
    status = clinicbox(settings, "keys", "status")
    assert "a rotation is unfinished" in status.stdout
    assert int(status.stdout.split("rows under older keys: ")[1].split()[0]) > 0

    resumed = clinicbox(settings, "keys", "rotate", "--batch-size", "100", "--pause-ms", "0")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the unfinished rotation to key 2" in resumed.stdout
    assert "retired keys: 1" in resumed.stdout
    _all_readable(box, ids)
    assert _key_ids_in_rows(box) == {2}
    # Writes after the old key left the keys file still work in the long-running process.
    box.SessionNote.create(patient=patient, author=user, text="note after")
    box.close()
    reopened = open_store(settings)
    try:
        assert reopened.keyring.key_ids == [2]
        _all_readable(reopened, ids)
        assert stale_rows(reopened) == 0
    finally:
        reopened.close()
