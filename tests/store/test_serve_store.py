"""The store inside `clinicbox serve`: passphrase errors at start, a damaged record at runtime."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from appliance.accounts import create_user
from appliance.config import Settings
from appliance.store import open_store
from appliance.store.models import AuditLog
from tests.conftest import CLINICBOX, RunningBox, box_env, free_port, start_box

pytestmark = pytest.mark.timeout(120)

PASSWORD = "correct horse battery"


class Browser:
    """Cookie-keeping HTTPS client for one running box."""

    def __init__(self, box: RunningBox) -> None:
        self.box = box
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            urllib.request.HTTPSHandler(context=box.ssl_context()),
        )

    def open(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.box.base_url + path, data=data, timeout=20) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()


def test_damaged_record_is_a_clear_409_and_the_box_keeps_serving(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", hostname="testbox")
    store = open_store(settings)
    ada = create_user(store, "dr.ada", PASSWORD, "clinician")
    patient = store.Patient.create(display_name="Damaged Person")
    healthy = store.Patient.create(display_name="Healthy Person")
    # Both in dr.ada's group, so their records are in her care.
    group = store.GroupSession.create(title="Group", starts_at=datetime(2026, 1, 6, 10),
                                      facilitator=ada)
    for person in (patient, healthy):
        store.Attendance.create(session=group, patient=person)
    blob = bytearray(store.db.execute_sql(
        "SELECT display_name FROM patient WHERE id = ?", [patient.id]).fetchone()[0])
    blob[-1] ^= 0x80
    store.db.execute_sql("UPDATE patient SET display_name = ? WHERE id = ?",
                         [bytes(blob), patient.id])
    store.close()

    box = start_box(settings.data_dir)
    try:
        browser = Browser(box)
        _, page = browser.open("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        status, _ = browser.open(
            "/login", {"username": "dr.ada", "password": PASSWORD, "csrf_token": token}
        )
        assert status == 200
        status, body = browser.open(f"/patients/{patient.id}")
        assert status == 409
        assert f"patient/{patient.id}" in body and "integrity check" in body
        status, body = browser.open(f"/patients/{healthy.id}")
        assert status == 200 and "Healthy Person" in body
        assert box.get("/healthz")[0] == 200
        assert box.proc.poll() is None
        # Key rotation beside the running box; the box reads rows under the new key at once.
        rotated = subprocess.run(
            [CLINICBOX, "keys", "rotate"], env=box_env(settings.data_dir, free_port()),
            capture_output=True, text=True, timeout=60,
        )
        assert rotated.returncode == 0, rotated.stderr
        assert "retired keys: 1" in rotated.stdout
        status, body = browser.open(f"/patients/{healthy.id}")
        assert status == 200 and "Healthy Person" in body
        # Wiping under a running box is refused.
        wiped = subprocess.run(
            [CLINICBOX, "wipe", "--yes"], env=box_env(settings.data_dir, free_port()),
            capture_output=True, text=True, timeout=60,
        )
        assert wiped.returncode == 2 and "stop it first" in wiped.stderr
    finally:
        assert box.stop() == 0
    reopened = open_store(settings)
    try:
        targets = [a.target for a in AuditLog.select().where(AuditLog.action == "integrity.failed")]
        assert targets == [f"patient/{patient.id}"]
    finally:
        reopened.close()


def test_serve_with_wrong_or_missing_passphrase_is_one_line(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", hostname="testbox")
    open_store(settings, "the right passphrase").close()
    for extra, text in (({}, "passphrase-protected"),
                        ({"CLINICBOX_STORE_PASSPHRASE": "a wrong passphrase"},
                         "wrong store passphrase")):
        done = subprocess.run(
            [CLINICBOX, "serve"], env=box_env(settings.data_dir, free_port(), **extra),
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        assert errors == [done.stderr.strip().splitlines()[-1]]
        assert errors[0].startswith("clinicbox: error:") and text in errors[0]
        assert "Traceback" not in done.stderr
    box = start_box(settings.data_dir, CLINICBOX_STORE_PASSPHRASE="the right passphrase")
    assert box.stop() == 0
