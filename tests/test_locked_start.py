"""A passphrase-protected box restarts locked: it serves only /unlock until a staff member
enters the store passphrase, then starts as usual. Real `clinicbox serve`, real TLS."""

from __future__ import annotations

import http.cookiejar
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.conftest import CLINICBOX, RunningBox, box_env, free_port, start_box

PASSPHRASE = "river stones under the old bridge"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A cookie-keeping HTTPS client that trusts the box's CA."""

    def __init__(self, box: RunningBox) -> None:
        self.box = box
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            urllib.request.HTTPSHandler(context=box.ssl_context()),
        )

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.box.base_url + path, data=data, timeout=10) as reply:
                return reply.status, reply.geturl(), reply.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.geturl(), err.read().decode()

    def unlock(self, passphrase: str) -> tuple[int, str]:
        _, _, page = self.request("/unlock")
        token = _CSRF.search(page)
        assert token, page
        status, _, body = self.request(
            "/unlock", {"passphrase": passphrase, "csrf_token": token.group(1)}
        )
        return status, body


def _start_locked(data: Path) -> RunningBox:
    port = free_port()
    proc = subprocess.Popen(
        [CLINICBOX, "serve"],
        env=box_env(data, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    box = RunningBox(proc, port, data)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            status, body = box.get("/healthz", timeout=2)
            if status == 503 and json.loads(body)["status"] == "locked":
                return box
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the locked box never served /healthz")


def test_passphrase_box_restarts_locked_until_unlocked(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # First start with the passphrase (as the wizard's choice leaves it): keys, CA, cert.
    first = start_box(data, CLINICBOX_STORE_PASSPHRASE=PASSPHRASE)
    assert first.stop() == 0
    box = _start_locked(data)
    try:
        browser = Browser(box)
        # Nothing but the unlock page: staff and patient pages lead there.
        for path in ("/login", "/dashboard", "/join"):
            status, url, page = browser.request(path)
            assert status == 200 and url.endswith("/unlock"), (path, url)
            assert "This box is locked" in page
        assert box.get("/ca.pem")[0] == 200
        status, page = browser.unlock("not the passphrase at all")
        assert status == 403 and "does not open" in page
        status, page = browser.unlock(PASSPHRASE)
        assert status == 200 and 'id="unlocked"' in page
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if box.get("/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("the box did not start after unlocking")
        status, url, page = Browser(box).request("/login")
        assert status == 200 and "Staff sign in" in page
    finally:
        assert box.stop() == 0


def test_wrong_passphrases_are_rate_limited(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert start_box(data, CLINICBOX_STORE_PASSPHRASE=PASSPHRASE).stop() == 0
    box = _start_locked(data)
    try:
        browser = Browser(box)
        statuses = [browser.unlock(f"guess number {n} of many")[0] for n in range(6)]
        assert statuses == [403] * 5 + [429]
        # Even the right passphrase waits now: guessing cannot go on at scrypt's pace.
        assert browser.unlock(PASSPHRASE)[0] == 429
    finally:
        assert box.stop() == 0
