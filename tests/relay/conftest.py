"""A real centre and a real claimed `clinicbox serve` whose patient pages the centre relays.

The box holds one live group session (made in its store before it starts); tests reach the
box's pages through `https://<centre>/c/<slug>/` with a real HTTPS client that keeps cookies
by their Path, exactly as a browser would.
"""

from __future__ import annotations

import http.cookiejar
import re
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from appliance.accounts import create_user
from appliance.clinical.session_codes import assign_codes, join_code_of
from appliance.config import Settings
from appliance.store import open_store
from tests.conftest import RunningBox, start_box
from tests.sync.conftest import Box, Central
from web import COOKIE_KEY_SECRET

SLUG = "hill-clinic"
PASSWORD = "correct horse battery"
FAST_TUNNEL = {
    "CLINICBOX_TUNNEL_KEEPALIVE_S": "1",
    "CLINICBOX_TUNNEL_PONG_TIMEOUT_S": "1.5",
    "CLINICBOX_TUNNEL_BACKOFF_BASE_S": "0.2",
    "CLINICBOX_TUNNEL_BACKOFF_MAX_S": "1",
    "CLINICBOX_TUNNEL_CONNECT_TIMEOUT_S": "3",
    "CLINICBOX_TUNNEL_REFUSED_BACKOFF_S": "1",
}


def live_session(data_dir: Path, capacity: int = 6) -> str:
    """Make a clinician and a live session in the box's store; return its join code."""
    settings = Settings(data_dir=data_dir)
    settings.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(settings)
    try:
        # The portal's cookie key, which session codes derive from (kept in the keyring).
        secret = store.keyring.box_secret(COOKIE_KEY_SECRET, lambda: secrets.token_bytes(32))
        user = create_user(store, "dr.ada", PASSWORD, "clinician")
        create_user(store, "tech.tom", PASSWORD, "technician")
        group = store.GroupSession(
            title="Tuesday group",
            starts_at=datetime.now(),  # inside the join window
            facilitator=user.id,
            capacity=capacity,
            state="live",
        )
        assign_codes(group, secret)
        group.save()
        code = join_code_of(group, secret)
        assert code is not None
        return code
    finally:
        store.close()


class Patient:
    """A remote patient's HTTPS client: cookies kept by Path, a chosen source address."""

    def __init__(self, base: str, source: str = "127.0.0.1") -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the centre's self-signed certificate

        class SourceHandler(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> object:
                return self.do_open(self._connection, req, context=context)

            @staticmethod
            def _connection(host: str, **kwargs: object) -> object:
                import http.client

                return http.client.HTTPSConnection(host, source_address=(source, 0), **kwargs)

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object) -> None:
                return None

        self.opener = urllib.request.build_opener(
            SourceHandler(), urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()
        )

    def request(
        self,
        path: str,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        json_body: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        body = (
            json_body
            if json_body is not None
            else (urllib.parse.urlencode(data).encode() if data is not None else None)
        )
        request = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        if json_body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(request, timeout=20) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def csrf(self, path: str) -> str:
        status, _headers, page = self.request(path)
        assert status == 200, page[:300]
        found = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        assert found, page[:500]
        return found.group(1).decode()


@dataclass
class RelayedBox:
    central: Central
    box: RunningBox
    device_id: str
    code: str

    @property
    def relay(self) -> str:
        return f"{self.central.url}/c/{SLUG}"

    def patient(self, source: str = "127.0.0.1") -> Patient:
        return Patient(self.relay, source)


def wait_relayed(url: str, timeout: float = 30.0) -> None:
    """Until the relay answers the join page (the box's tunnel is up)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = Patient(url).request("/join")
        if last[0] == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"the relay did not come up: {last and last[0]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def claimed_centre(root: Path) -> Iterator[tuple[Central, Box, str]]:
    """A centre and a box claimed for it (not yet named for the relay, not serving)."""
    central = Central(root / "central", None, workers=2, port=free_port())
    try:
        box = Box(root / "box")
        link = box.claim(central)
        yield central, box, link.device_id
    finally:
        central.stop()


@contextmanager
def relaying(claimed: tuple[Central, Box, str]) -> Iterator[RelayedBox]:
    """The claimed box, named for the relay, serving one live session; its tunnel is up."""
    central, box, device_id = claimed
    code = live_session(box.data_dir)
    central.cli("relay", "add", device_id, SLUG)
    running = start_box(box.data_dir, **FAST_TUNNEL)
    try:
        relayed = RelayedBox(central, running, device_id, code)
        wait_relayed(relayed.relay)
        yield relayed
    finally:
        if running.proc.poll() is None:
            running.stop()


@pytest.fixture
def claimed(tmp_path: Path) -> Iterator[tuple[Central, Box, str]]:
    """A centre and a box claimed for it, for one test (which may change either)."""
    with claimed_centre(tmp_path) as made:
        yield made


@pytest.fixture
def relayed(claimed: tuple[Central, Box, str]) -> Iterator[RelayedBox]:
    """A relayed box for one test: for tests that stop or restart the box, the centre or the
    tunnel, or change the relay's names."""
    with relaying(claimed) as made:
        yield made


@pytest.fixture(scope="module")
def relayed_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayedBox]:
    """One relayed box shared by a module's tests (its set-up is ~30 s on this machine): for
    tests that only make requests, each with its own clients and source addresses, and leave
    the box, the centre and the tunnel as they found them."""
    with claimed_centre(tmp_path_factory.mktemp("relayed")) as made, relaying(made) as relayed:
        yield relayed
