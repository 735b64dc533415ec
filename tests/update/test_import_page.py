"""Import from the technician page: the portal lists bundles on mounted sticks and takes an
upload, but only queues the choice in its spool (technicians only, CSRF, size limit); the root
unit's ExecStart (`clinicbox update import-spool`), run here as the path unit would, installs
it or refuses it, and the page shows the outcome."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shlex
import ssl
import stat
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import pytest

from tests.conftest import CLINICBOX, REPO, RunningBox, start_box
from tests.provisioning.test_technician import _provision
from tests.update.conftest import Box, Bundles, Supervisor, make_box, wait_serving
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.timeout(600)

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
UNIT = REPO / "firmware_scripts" / "systemd" / "clinicbox-update-import.service"
PATH_UNIT = REPO / "firmware_scripts" / "systemd" / "clinicbox-update-import.path"


@dataclass
class Portal:
    """Where a box's portal answers (a plain `serve`, or one under the launcher)."""

    port: int
    data: Path

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data / "tls" / "ca.pem"))


class Visitor:
    """A cookie-keeping HTTPS client that can post forms and files."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=portal.ssl_context()),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            _NoRedirect(),
        )

    def open(
        self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """Status, body and Location (redirects are not followed)."""
        request = urllib.request.Request(self.portal.base_url + path, data, headers or {})
        try:
            with self.opener.open(request, timeout=60) as resp:
                return resp.status, resp.read().decode(), resp.headers.get("Location", "")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), err.headers.get("Location", "")

    def csrf(self, page: str = "/login") -> str:
        _, body, _ = self.open(page)
        found = _CSRF.search(body)
        assert found, body[:300]
        return found.group(1)

    def post(self, path: str, fields: dict[str, str], csrf: bool = True) -> tuple[int, str, str]:
        if csrf:
            fields = {**fields, "csrf_token": self.csrf()}
        return self.open(path, urllib.parse.urlencode(fields).encode())

    def upload(
        self, path: str, name: str, content: bytes, csrf: bool = True
    ) -> tuple[int, str, str]:
        boundary = uuid.uuid4().hex
        parts = []
        if csrf:
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
                f"{self.csrf()}\r\n".encode()
            )
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="bundle"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return self.open(path, body, headers)

    def sign_in(self, username: str) -> None:
        status, _, _ = self.post("/login", {"username": username, "password": PASSWORD})
        assert status == 302


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _requests(data: Path) -> list[dict[str, str]]:
    spool = data / "update-import"
    return [json.loads(p.read_text()) for p in sorted(spool.glob("*.json"))]


def _clear_spool(data: Path) -> None:
    for path in (data / "update-import").glob("*.json"):
        path.unlink()


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[tuple[RunningBox, Path]]:
    data = tmp_path / "data"
    assert _provision(data, tmp_path).returncode == 0
    media = tmp_path / "media"
    (media / "tech" / "STICK").mkdir(parents=True)
    box = start_box(
        data,
        CLINICBOX_RELEASE_ROOT=str(tmp_path / "opt"),
        CLINICBOX_UPDATE_MEDIA_DIRS=f"{media}:{tmp_path / 'no-such-mount'}",
        CLINICBOX_UPDATE_UPLOAD_MAX_BYTES=str(2**20),
    )
    try:
        yield box, media
    finally:
        box.stop()


def test_page_lists_sticks_and_queues_only_for_technicians(
    portal: tuple[RunningBox, Path],
) -> None:
    box, media = portal
    data = box.data_dir
    stick = media / "tech" / "STICK"
    (stick / "clinicbox-9.9.9-aarch64.cbup").write_bytes(b"x" * 1000)
    (stick / "notes.txt").write_text("not a bundle")
    chosen = str(stick / "clinicbox-9.9.9-aarch64.cbup")
    site = Portal(box.port, data)

    nobody = Visitor(site)
    status, _, where = nobody.post("/technician/update/from-stick", {"path": chosen})
    assert status == 302 and "/login" in where
    status, _, where = nobody.upload("/technician/update/upload", "x.cbup", b"junk")
    assert status == 302 and "/login" in where
    admin = Visitor(site)
    admin.sign_in("admin.ana")
    assert admin.post("/technician/update/from-stick", {"path": chosen})[0] == 403
    assert _requests(data) == []

    tech = Visitor(site)
    tech.sign_in("tech.tom")
    status, page, _ = tech.open("/technician")
    assert status == 200
    assert chosen in page and "notes.txt" not in page
    assert "at most 1 MiB" in page

    # No CSRF token: refused, nothing queued.
    status, page, _ = tech.post("/technician/update/from-stick", {"path": chosen}, csrf=False)
    assert status == 400 and "form expired" in page
    status, page, _ = tech.upload("/technician/update/upload", "x.cbup", b"junk", csrf=False)
    assert status == 400
    # A path that is not a bundle on a stick the page listed.
    status, page, _ = tech.post("/technician/update/from-stick", {"path": "/etc/passwd"})
    assert status == 400 and "not on a mounted stick" in unescape(page)
    assert _requests(data) == []

    status, _, where = tech.post("/technician/update/from-stick", {"path": chosen})
    assert status == 302 and where.endswith("/technician#updates")
    (request,) = _requests(data)
    assert request["path"] == chosen
    spool = data / "update-import"
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in spool.iterdir())
    # One at a time.
    status, page, _ = tech.post("/technician/update/from-stick", {"path": chosen})
    assert status == 409 and "already under way" in page
    _clear_spool(data)

    # Over the limit (1 MiB here): refused by its length, nothing kept.
    status, page, _ = tech.upload("/technician/update/upload", "big.cbup", b"\0" * (3 * 2**20))
    assert status == 413 and "larger than the 1 MiB" in page
    assert _requests(data) == []
    assert not any((data / "update-import.files").glob("*.cbup"))

    status, _, _ = tech.upload("/technician/update/upload", "clinicbox-1.2.3.cbup", b"junk")
    assert status == 302
    (request,) = _requests(data)
    assert request["name"] == "clinicbox-1.2.3.cbup" and "path" not in request
    upload = data / "update-import.files" / f"{request['upload']}.cbup"
    assert upload.read_bytes() == b"junk"
    assert stat.S_IMODE(upload.stat().st_mode) == 0o600


def test_path_unit_watches_the_spool_and_its_units_verify() -> None:
    watched = re.search(r"^DirectoryNotEmpty=(.+)$", PATH_UNIT.read_text(), re.M)
    assert watched and watched.group(1) == "/var/lib/clinicbox/update-import"
    assert (
        "Wants=network-online.target clinicbox-update-import.path"
        in (REPO / "firmware_scripts" / "systemd" / "clinicbox.service").read_text()
    )


def _run_path_unit(box: Box) -> list[dict[str, object]]:
    """What clinicbox-update-import.service runs, with the test box's environment."""
    line = re.search(r"^ExecStart=(.+)$", UNIT.read_text(), re.M)
    assert line is not None
    argv = shlex.split(line.group(1))
    assert argv[0] == "/opt/clinicbox/bin/clinicbox"
    done = subprocess.run(
        [CLINICBOX, *argv[1:]], env=box.env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _page_status(tech: Visitor) -> str:
    status, page, _ = tech.open("/technician")
    assert status == 200
    found = re.search(r'<p id="update-import-status"[^>]*>(.*?)</p>', page, re.S)
    assert found, "no import status on the page"
    return " ".join(unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def test_spooled_bundles_are_installed_or_refused_by_the_root_unit(
    tmp_path: Path, bundles: Bundles
) -> None:
    box = make_box(tmp_path, bundles)
    media = tmp_path / "media"
    (media / "STICK").mkdir(parents=True)
    box.env["CLINICBOX_UPDATE_MEDIA_DIRS"] = str(media)
    installed = box.update("import", str(bundles.v100))
    assert installed.returncode == 0, installed.stderr
    assert _provision(box.data, tmp_path).returncode == 0
    supervisor = Supervisor(box, tmp_path / "serve.log").start()
    try:
        wait_serving(box, "1.0.0")
        tech = Visitor(Portal(box.port, box.data))
        tech.sign_in("tech.tom")

        # Not a bundle: refused in one line on the page, nothing changes.
        assert tech.upload("/technician/update/upload", "clinicbox-2.0.0.cbup", b"junk")[0] == 302
        (result,) = _run_path_unit(box)
        assert result["outcome"] == "refused"
        assert _page_status(tech) == (
            "Last bundle from this page: clinicbox-2.0.0.cbup: refused: "
            "clinicbox-2.0.0.cbup is not an update bundle"
        )
        assert not any((box.data / "update-import.files").iterdir())  # the upload is gone
        assert not any((box.data / "update-import").iterdir())  # so is the request

        # The real 1.0.1 from the stick: verified, installed, health-checked, committed.
        on_stick = media / "STICK" / "clinicbox-1.0.1.cbup"
        on_stick.write_bytes(bundles.v101.read_bytes())
        chosen = {"path": str(on_stick)}
        assert tech.post("/technician/update/from-stick", chosen)[0] == 302
        (result,) = _run_path_unit(box)
        assert (result["outcome"], result["version"]) == ("committed", "1.0.1"), result
        wait_serving(box, "1.0.1")
        assert _page_status(tech) == (
            "Last bundle from this page: clinicbox-1.0.1.cbup: 1.0.1 committed"
        )
        status, page, _ = tech.open("/technician")
        assert "<td>1.0.1</td>" in page and "<td>1.0.0</td>" in page

        # A downgrade, uploaded: refused with the updater's reason.
        sent = tech.upload("/technician/update/upload", "old.cbup", bundles.v100.read_bytes())
        assert sent[0] == 302
        (result,) = _run_path_unit(box)
        assert result["outcome"] == "refused"
        assert "1.0.0 is older than the running 1.0.1" in _page_status(tech)
    finally:
        supervisor.stop()
    assert os.path.exists(box.root / "current")


def test_the_root_side_trusts_nothing_the_portal_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from appliance.update.import_spool import read_status, run_spool
    from appliance.update.releases import ReleaseRoot

    data, media, root = tmp_path / "data", tmp_path / "media", ReleaseRoot(tmp_path / "opt")
    media.mkdir()
    (tmp_path / "secret.cbup").write_text("not for the web user")
    (media / "link.cbup").symlink_to(tmp_path / "secret.cbup")
    monkeypatch.setenv("CLINICBOX_UPDATE_MEDIA_DIRS", str(media))
    spool, files = data / "update-import", data / "update-import.files"
    spool.mkdir(parents=True)
    files.mkdir()
    (files / f"{'a' * 32}.cbup").symlink_to(tmp_path / "secret.cbup")
    requests = {
        "1": {"path": "/etc/passwd"},
        "2": {"path": f"{media}/../secret.cbup"},
        "3": {"path": str(media / "link.cbup")},
        "4": {"upload": "../../secret"},
        "5": {"upload": "a" * 32},
    }
    for n, request in requests.items():
        (spool / f"{n}.json").write_text(json.dumps({**request, "name": f"r{n}"}))
        os.utime(spool / f"{n}.json", (int(n), int(n)))  # oldest first
    (spool / "6.json").write_text("{not json")
    os.utime(spool / "6.json", (6, 6))
    target = SimpleNamespace(data_dir=data, root=root)
    reasons = [(r["outcome"], r["reason"]) for r in run_spool(target)]
    assert reasons == [
        ("refused", f"passwd is not on removable media ({media})"),
        ("refused", f"secret.cbup is not on removable media ({media})"),
        ("refused", f"link.cbup is not on removable media ({media})"),
        ("refused", "the request from the page names no upload"),
        ("refused", "the uploaded bundle is gone or not a plain file"),
        ("refused", "the request from the page was not readable"),
    ]
    assert list(spool.iterdir()) == []  # each request was taken before it was worked on
    # A runner killed part-way leaves "running": the page must not wait for it forever.
    gone = subprocess.Popen(["true"])
    gone.wait()
    status = root.state_dir / "import.json"
    status.write_text(json.dumps({"bundle": "x.cbup", "running": True, "pid": gone.pid}))
    shown = read_status(root)
    assert shown is not None and not shown["running"] and shown["outcome"] == "failed"


def test_the_page_refuses_at_once_while_a_call_is_live(tmp_path: Path) -> None:
    import io

    from appliance.live_call import live_call_path, write_live_call
    from appliance.update.import_spool import ImportQueueRefused, queue_upload
    from appliance.update.releases import ReleaseRoot

    data, root = tmp_path / "data", ReleaseRoot(tmp_path / "opt")
    data.mkdir()
    write_live_call(live_call_path(data), 2)  # as the server does (this process: alive)
    with pytest.raises(ImportQueueRefused, match="A call with 2 participants is live") as refused:
        queue_upload(data, root, io.BytesIO(b"bundle"), "clinicbox-1.0.1.cbup", 6)
    assert refused.value.status == 409
    assert not (data / "update-import").exists()
    write_live_call(live_call_path(data), 0)
    assert queue_upload(data, root, io.BytesIO(b"bundle"), "clinicbox-1.0.1.cbup", 6)
