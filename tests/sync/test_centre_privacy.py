"""The centre keeps its data private: 0700 data dir, 0600 database and keys, and an operator
page that needs a login made on the command line (no default account), with CSRF on forms."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.sync.conftest import Box, Central, OperatorBrowser, add_operator

pytestmark = pytest.mark.timeout(90)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_data_dir_and_database_are_private(tmp_path: Path) -> None:
    data = tmp_path / "central"
    data.mkdir(mode=0o755)  # as an operator's mkdir (umask 022) would leave it
    central = Central(data, None, 1)
    try:
        box = Box(tmp_path / "box")
        box.claim(central)
        assert central.query("SELECT COUNT(*) FROM device") == [(1,)]
    finally:
        central.stop()
    assert _mode(data) == 0o700
    files = {p.name: _mode(p) for p in data.iterdir()}
    assert files["central.db"] == 0o600
    for name, mode in files.items():
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"


def test_operator_page_needs_a_login_with_csrf(tmp_path: Path, central_sqlite: Central) -> None:
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    stranger = OperatorBrowser(central_sqlite)
    status, page, location = stranger.request("/")
    assert status == 302 and location.endswith("/login") and link.device_id not in page
    # No account exists until the operator makes one: nothing signs in, not even admin/admin.
    for username, password in (("admin", "admin"), ("ops", "correct horse battery")):
        assert stranger.sign_in(username, password) == 401

    weak = tmp_path / "weak"
    weak.write_text("short\n")
    refused = central_sqlite.cli(
        "operator", "add", "ops", "--password-file", str(weak), check=False
    )
    assert refused.returncode == 2 and "at least 12 characters" in refused.stderr
    password = add_operator(central_sqlite, tmp_path)
    hashes = central_sqlite.query("SELECT password_hash FROM operator")
    assert len(hashes) == 1 and hashes[0][0].startswith("$argon2id$")

    browser = OperatorBrowser(central_sqlite)
    token = browser.csrf()
    status, _page, _ = browser.request(
        "/login", {"csrf_token": "forged", "username": "ops", "password": password}
    )
    assert status == 400  # a cross-site form post carries no valid token
    status, _page, _ = browser.request(
        "/login", {"csrf_token": token, "username": "ops", "password": "wrong password!"}
    )
    assert status == 401
    assert browser.sign_in("ops", password) == 302
    cookie = next(c for c in browser.jar if c.name == "cbc_session")
    assert cookie.secure and cookie.has_nonstandard_attr("HttpOnly")
    status, page, _ = browser.request("/")
    assert status == 200 and link.device_id in page

    status, _page, _ = browser.request("/logout", {"csrf_token": "forged"})
    assert status == 400 and browser.request("/")[0] == 200
    status, _page, _ = browser.request("/logout", {"csrf_token": browser.csrf("/")})
    assert status == 302 and browser.request("/")[0] == 302


def test_every_worker_honours_a_sign_in(tmp_path: Path) -> None:
    """Workers forked at once share one session key: a sign-in answered by one worker holds
    on every other (each request is a new connection, spread over the workers)."""
    central = Central(tmp_path / "central", None, 4)
    try:
        browser = OperatorBrowser(central)
        assert browser.sign_in("ops", add_operator(central, tmp_path)) == 302
        assert [browser.request("/")[0] for _ in range(24)] == [200] * 24
    finally:
        central.stop()
