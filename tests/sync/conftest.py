"""Fixtures: a real central server process (SQLite or a real PostgreSQL), a claimed box."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.identity import DeviceIdentity
from sync.agent.claim import CentralLink, claim_box, save_link

VENV_BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICBOX_")}
    env.update(extra)
    return env


class Central:
    """A running `clinicbox-central serve` process."""

    def __init__(self, data_dir: Path, database: str | None, workers: int = 2,
                 port: int = 0) -> None:
        self.data_dir = data_dir
        self.database = database
        args = [str(VENV_BIN / "clinicbox-central"), "--data-dir", str(data_dir)]
        if database:
            args += ["--database", database]
        self.base_args = args
        self.proc = subprocess.Popen(
            [*args, "serve", "--port", str(port), "--workers", str(workers)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
            start_new_session=True,
        )
        line = self.proc.stdout.readline()
        if "serving on" not in line:
            self.stop()
            raise RuntimeError(f"central did not start: {line} {self.proc.stderr.read()}")
        self.url = line.split("serving on ")[1].split()[0].rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.base_args, *args], capture_output=True, text=True,
                                env=clean_env(), timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(result.stderr)
        return result

    def query(self, sql: str) -> list[tuple]:
        if self.database:
            import psycopg2

            host = self.database.split("host=")[1].split("&")[0]
            port = self.database.split("port=")[1].split("&")[0]
            with psycopg2.connect(host=host, port=port, user="postgres", dbname="central") as c:
                with c.cursor() as cur:
                    cur.execute(sql)
                    return cur.fetchall()
        with sqlite3.connect(self.data_dir / "central.db", timeout=10) as c:
            return c.execute(sql).fetchall()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL 15 on a unix socket in a tmp dir, run as `nobody`; yields its URL."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL server binaries are not installed")
    # Not under pytest's tmp dir: that is 0700 root, and the server runs as nobody.
    base = Path(tempfile.mkdtemp(prefix="cbsync-pg-"))
    os.chmod(base, 0o755)
    nobody = pwd.getpwnam("nobody")
    data, sock = base / "data", base / "sock"
    for d in (data, sock):
        d.mkdir()
        os.chown(d, nobody.pw_uid, nobody.pw_gid)
    os.chown(base, nobody.pw_uid, nobody.pw_gid)
    as_nobody = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                 "--clear-groups"]
    env = {"PATH": os.environ["PATH"], "HOME": str(base), "LC_ALL": "C"}
    subprocess.run([*as_nobody, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                    "-A", "trust", "--no-sync"], check=True, capture_output=True, env=env,
                   timeout=120)
    port = 5400 + os.getpid() % 500
    opts = f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off -c max_connections=100"
    subprocess.run([*as_nobody, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-w",
                    "-l", str(base / "log"), "start"], check=True, capture_output=True,
                   env=env, timeout=60)
    subprocess.run([*as_nobody, str(PG_BIN / "createdb") if (PG_BIN / "createdb").exists()
                    else "createdb", "-h", str(sock), "-p", str(port), "-U", "postgres",
                    "central"], check=True, capture_output=True, env=env, timeout=30)
    yield f"postgresql+pool://postgres@/central?host={sock}&port={port}&max_connections=20"
    subprocess.run([*as_nobody, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                    "stop"], capture_output=True, env=env, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def central_sqlite(tmp_path):
    central = Central(tmp_path / "central", None)
    yield central
    central.stop()


class Box:
    """A box data dir with a store, claimed for a centre (optionally through `url`)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.settings = Settings(data_dir=data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "secrets").mkdir(mode=0o700, exist_ok=True)
        self.identity = DeviceIdentity.load_or_create(data_dir / "secrets")

    def claim(self, central: Central, url: str | None = None) -> CentralLink:
        token = central.cli("claim-token").stdout.strip()
        link = claim_box(central.url, token, self.identity).link(url or central.url)
        save_link(self.data_dir, link)
        return link

    def add_records(self, n: int, edit: int = 0) -> None:
        """Write `n` questionnaire responses (and their patients); edit `edit` existing ones."""
        from appliance.store import open_store

        store = open_store(self.settings)
        try:
            for i in range(n):
                patient = store.Patient.create(display_name=f"Patient {i}")
                store.QuestionnaireResponse.create(
                    patient=patient, kind="PHQ9", items=[1, 2, 0, 3, 1, 2, 0, 1, i % 4],
                    score=10 + i % 17, severity="moderate",
                )
            for q in store.QuestionnaireResponse.select().limit(edit):
                q.score = q.score + 1
                q.save()
        finally:
            store.close()

    def expected(self) -> set[tuple[str, int]]:
        """(record_id, version) of every record as it is now."""
        from appliance.store import open_store

        store = open_store(self.settings)
        try:
            out = set()
            for model in (store.Patient, store.QuestionnaireResponse):
                out |= {(r.id, r.version) for r in model.select(model.id, model.version)}
            return out
        finally:
            store.close()

    def env(self, **extra: str) -> dict[str, str]:
        fast = {
            "CLINICBOX_DATA_DIR": str(self.data_dir), "CLINICBOX_SYNC_START_BATCH": "4",
            "CLINICBOX_SYNC_MAX_BATCH": "64", "CLINICBOX_SYNC_BACKOFF_BASE_S": "0.05",
            "CLINICBOX_SYNC_BACKOFF_MAX_S": "0.5", "CLINICBOX_SYNC_IDLE_S": "0.2",
            "CLINICBOX_SYNC_PROBE_INTERVAL_S": "0.2", "CLINICBOX_SYNC_LEASE_S": "0.5",
            "CLINICBOX_SYNC_CONNECT_TIMEOUT_S": "1", "CLINICBOX_SYNC_READ_TIMEOUT_S": "1.5",
            "CLINICBOX_SYNC_PULL_INTERVAL_S": "0.5",
        }
        fast.update(extra)
        return clean_env(**fast)

    def start_agent(self, **extra: str) -> subprocess.Popen:
        return subprocess.Popen([str(VENV_BIN / "clinicbox"), "sync", "run"],
                                env=self.env(**extra), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "clinicbox"), *args], capture_output=True,
                              text=True, env=self.env(), timeout=60)


def delivered_at_centre(central: Central, device_id: str) -> list[tuple[str, int, int]]:
    return central.query(
        "SELECT record_id, version, COUNT(*) FROM record "
        f"WHERE device_id = '{device_id}' GROUP BY record_id, version"
    )


def wait_drained(box: Box, central: Central, device_id: str, timeout: float = 60) -> set:
    """Poll until the centre holds every (record, version) of the box; return what it holds."""
    expected = box.expected()
    deadline = time.monotonic() + timeout
    held: set = set()
    while time.monotonic() < deadline:
        held = {(r, v) for r, v, _n in delivered_at_centre(central, device_id)}
        if expected <= held:
            return held
        time.sleep(0.3)
    raise AssertionError(f"not drained: {len(expected - held)} of {len(expected)} missing")


class OperatorBrowser:
    """A browser-like client for the centre's operator page: cookies, CSRF tokens, HTTPS
    (the centre's self-signed certificate is accepted as a browser would after a warning)."""

    def __init__(self, central: Central) -> None:
        import http.cookiejar
        import ssl
        import urllib.request

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        class _NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *_args: object, **_kw: object) -> None:
                return None

        self.url = central.url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context),
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        """(status, body, Location header) of a GET, or of a POST of `form`."""
        import urllib.error
        import urllib.parse

        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.url + path, data=data, timeout=10) as answer:
                return answer.status, answer.read().decode(), answer.headers.get("Location", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), exc.headers.get("Location", "")

    def csrf(self, path: str = "/login") -> str:
        import re

        _status, page, _ = self.request(path)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, page
        return match.group(1)

    def sign_in(self, username: str, password: str) -> int:
        token = self.csrf("/login")
        status, _body, _ = self.request("/login", {"csrf_token": token, "username": username,
                                                   "password": password})
        return status


def add_operator(central: Central, tmp_path: Path, username: str = "ops",
                 password: str = "correct horse battery") -> str:
    """Make an operator account with the centre's CLI; return its password."""
    secret = tmp_path / f"{username}.pw"
    secret.write_text(password + "\n")
    central.cli("operator", "add", username, "--password-file", str(secret))
    return password
