"""A real box provisioned with `clinicbox provision`, then the technician page over HTTPS."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from appliance.store.keyring import DEVICE_SECRET_FILE, KEYS_FILE
from tests.conftest import CLINICBOX, RunningBox, box_env, free_port, start_box
from tests.provisioning.conftest import central_voucher

pytestmark = pytest.mark.timeout(120)

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """Cookie-keeping HTTPS client for one box."""

    def __init__(self, box: RunningBox) -> None:
        self.box = box
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=box.ssl_context()),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.box.base_url + path, timeout=20) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def post(self, path: str, form_page: str, **fields: str) -> tuple[int, str]:
        _, page = self.get(form_page)
        fields["csrf_token"] = _CSRF.search(page).group(1)
        data = urllib.parse.urlencode(fields).encode()
        try:
            with self.opener.open(self.box.base_url + path, data=data, timeout=60) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def sign_in(self, username: str) -> None:
        status, _ = self.post("/login", "/login", username=username, password=PASSWORD)
        assert status == 200


def _provision(data: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    return subprocess.run(
        [CLINICBOX, "provision", "--clinic-name", "Hill Clinic", "--admin-user", "admin.ana",
         "--admin-password-file", str(secret), "--tech-user", "tech.tom",
         "--tech-password-file", str(secret), *extra],
        env=box_env(data, free_port()), capture_output=True, text=True, timeout=60)


def test_cli_provision_refusals(tmp_path: Path) -> None:
    data = tmp_path / "data"
    weak = tmp_path / "weak"
    weak.write_text("1234567890")
    result = subprocess.run(
        [CLINICBOX, "provision", "--clinic-name", "X", "--admin-user", "admin.ana",
         "--admin-password-file", str(weak), "--tech-user", "tech.tom",
         "--tech-password-file", str(weak)],
        env=box_env(data, free_port()), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "at least 12 characters" in result.stderr
    assert _provision(data, tmp_path, "--claim-token", "t").returncode == 2
    assert _provision(data, tmp_path).returncode == 0
    again = _provision(data, tmp_path)
    assert again.returncode == 2 and "already provisioned" in again.stderr


def test_technician_page_self_test_rotation_and_factory_reset(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = _provision(data, tmp_path)
    assert result.returncode == 0, result.stderr
    box = start_box(data)
    try:
        clinician = Browser(box)
        clinician.sign_in("admin.ana")
        assert clinician.get("/technician")[0] == 403

        tech = Browser(box)
        assert "/login" in tech.get("/technician")[1]  # redirected to sign in
        tech.sign_in("tech.tom")
        status, page = tech.get("/technician")
        assert status == 200
        for field in ("cpu", "temperature", "memory", "disk", "uptime", "sessions",
                      "sync-backlog", "last-sync", "link", "tls"):
            assert f'id="{field}"' in page
        assert "Hill Clinic" in page and "unclaimed" in page
        assert re.search(r'id="tls">valid until \d{4}-\d\d-\d\d \((39[0-7]) days', page)

        status, page = tech.post("/technician/self-test", "/technician")
        assert status == 200
        assert "Default route" in page and "FAIL · Central server: not configured" in page

        status, page = tech.post("/technician/claim", "/technician",
                                 central_url="https://centre.example", voucher="")
        assert status == 400 and "claim token or a voucher" in page
        # A centre address that resolves nowhere: a sentence saying what to check, on the
        # technician page with what was typed kept (not a bare error page naming gaierror).
        token = "s" * 20 + "." + "A" * 43 + "." + "B" * 43
        status, page = tech.post("/technician/claim", "/technician",
                                 central_url="https://centre.invalid", claim_token=token)
        assert status == 400 and "gaierror" not in page
        assert ("Claim failed: the box cannot reach the centre at https://centre.invalid: no "
                "computer has that name. Check the centre&#39;s address for typos and that the "
                "box is connected to the internet, then try again.") in page
        assert 'value="https://centre.invalid"' in page and f'value="{token}"' in page
        status, page = tech.post("/technician/claim", "/technician",
                                 central_url="https://centre.example",
                                 voucher=central_voucher(tmp_path / "centre"))
        assert status == 200 and "checks it on first contact" in page
        assert '<strong id="claim-state">claimed</strong>' in page

        status, page = tech.post("/technician/rotate-keys", "/technician", confirm="rotate")
        assert status == 400 and "ROTATE KEYS" in page
        status, page = tech.post("/technician/rotate-keys", "/technician", confirm="ROTATE KEYS")
        assert status == 200 and "Keys rotated: data key 2 active" in page

        status, page = tech.post("/technician/factory-reset", "/technician", confirm="yes")
        assert status == 400
        assert (data / "state" / "provisioned").exists()
        status, page = tech.post("/technician/factory-reset", "/technician",
                                 confirm="FACTORY RESET")
        assert status == 202 and "Factory reset done" in page
        # The service exits with 75 so systemd (Restart=on-failure) starts it clean.
        assert box.proc.wait(15) == 75
    finally:
        if box.proc.poll() is None:
            box.proc.kill()
    assert not (data / "state").exists()
    assert not (data / "secrets" / "device-ed25519.pem").exists()
    assert not (data / "clinicbox.db").exists()
    assert not (data / "secrets" / KEYS_FILE).exists()
    assert not (data / "secrets" / DEVICE_SECRET_FILE).exists()

    again = start_box(data)
    try:
        deadline = time.monotonic() + 10
        out = ""
        while "setup code" not in out and time.monotonic() < deadline:
            out += again.proc.stdout.readline()
        assert "One-time setup code" in out
    finally:
        again.stop()
