"""The foundation: `clinicbox serve` as a real process over real, verified TLS."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import CLINICBOX, RunningBox, box_env, free_port, start_box


@pytest.fixture(scope="module")
def serving_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBox]:
    """One box for the tests that only read from it (those that stop it have their own)."""
    box = start_box(tmp_path_factory.mktemp("serving") / "data")
    yield box
    if box.proc.poll() is None:
        box.proc.kill()
        box.proc.wait(5)


def test_healthz_over_verified_https(serving_box: RunningBox) -> None:
    status, body = serving_box.get("/healthz")
    assert status == 200
    doc = json.loads(body)
    assert doc["status"] == "ok"
    assert doc["version"]
    assert doc["uptime_s"] >= 0
    assert doc["database"] == {"reachable": True}
    assert doc["media_loop"]["alive"] is True
    assert 0 <= doc["media_loop"]["lag_ms"] < 1000


def test_untrusted_client_is_refused_by_tls(serving_box: RunningBox) -> None:
    # Without the box's CA the handshake must fail: the certificate is really verified.
    ctx = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", serving_box.port), timeout=5) as raw:
        try:
            ctx.wrap_socket(raw, server_hostname="localhost")
        except ssl.SSLCertVerificationError:
            return
    raise AssertionError("TLS handshake succeeded without trusting the box's CA")


def test_certificate_names_and_private_key_modes(serving_box: RunningBox) -> None:
    tls = serving_box.data_dir / "tls"
    cert = x509.load_pem_x509_certificate((tls / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = san.get_values_for_type(x509.DNSName)
    hostname = socket.gethostname().split(".")[0]
    assert {hostname, f"{hostname}.local", "localhost"} <= set(names)
    assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert stat.S_IMODE((tls / "server.key").stat().st_mode) == 0o600
    # The CA key and the cookie key exist only wrapped in the store's keys file.
    assert not (tls / "ca.key").exists()
    assert not (serving_box.data_dir / "secrets" / "flask-secret").exists()
    keys = json.loads((serving_box.data_dir / "secrets" / "store-keys.json").read_bytes())
    assert set(keys["secrets"]) == {"tls-ca-key", "portal-cookie-key"}


def test_ca_pem_is_served(serving_box: RunningBox) -> None:
    status, body = serving_box.get("/ca.pem")
    assert status == 200
    assert body == (serving_box.data_dir / "tls" / "ca.pem").read_bytes()
    ca = x509.load_pem_x509_certificate(body)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_sigterm_exits_zero_within_five_seconds(running_box: RunningBox) -> None:
    started = time.monotonic()
    rc = running_box.stop(timeout=10)
    elapsed = time.monotonic() - started
    assert rc == 0, running_box.proc.stderr.read()
    assert elapsed < 5.0
    # The WAL was checkpointed on the way out.
    wal = running_box.data_dir / "clinicbox.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_sigint_also_exits_zero(tmp_path: Path) -> None:
    box = start_box(tmp_path / "data")
    box.proc.send_signal(2)
    assert box.proc.wait(10) == 0


def test_first_run_prints_url_and_single_use_setup_code(tmp_path: Path) -> None:
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    box = start_box(tmp_path / "data")
    try:
        box.stop()
        out = box.proc.stdout.read()
        assert "https://" in out
        match = re.search(r"setup code: ([A-Z0-9]{5}-[A-Z0-9]{5})", out)
        assert match, out
        code = match.group(1)
        # The code is stored only as a hash.
        stored = (box.data_dir / "secrets" / "setup-code.json").read_text()
        assert code not in stored and code.replace("-", "") not in stored

        box = start_box(tmp_path / "data", port=box.port)
        out2 = ""
        # A restart issues a fresh code (the box is still unprovisioned); read it from stdout.
        deadline = time.monotonic() + 10
        while "setup code" not in out2 and time.monotonic() < deadline:
            out2 += box.proc.stdout.readline()
        code = re.search(r"setup code: ([A-Z0-9]{5}-[A-Z0-9]{5})", out2).group(1)

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=box.ssl_context()),
            urllib.request.HTTPCookieProcessor(jar),
        )

        def post_code(value: str, with_token: bool = True) -> int:
            page = opener.open(box.base_url + "/setup", timeout=10).read().decode()
            token = re.search(r'name="csrf_token" value="([^"]+)"', page)
            fields = {"code": value}
            if with_token and token:
                fields["csrf_token"] = token.group(1)
            data = urllib.parse.urlencode(fields).encode()
            try:
                return opener.open(box.base_url + "/setup", data=data, timeout=10).status
            except urllib.error.HTTPError as err:
                return err.code

        assert post_code(code, with_token=False) == 400  # CSRF token missing
        assert post_code("WRONG-CODE1") == 403
        assert post_code(code) == 200
        # Single use: the same code is refused the second time.
        page = opener.open(box.base_url + "/setup", timeout=10).read().decode()
        assert "No setup code is waiting" in page
    finally:
        if box.proc.poll() is None:
            box.stop()


def _run_serve(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLINICBOX, "serve"], env=env, capture_output=True, text=True, timeout=timeout
    )


def _assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert needle in lines[0]


def test_port_in_use_is_one_line_exit_2(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _run_serve(box_env(tmp_path / "data", port))
    _assert_one_line_error(result, f"port {port}")


def test_unwritable_data_dir_is_one_line_exit_2(tmp_path: Path) -> None:
    # A regular file where the data dir should be cannot be made writable by any user, root too.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = _run_serve(box_env(blocker / "data", free_port()))
    _assert_one_line_error(result, "data dir")


def test_bad_config_file_is_one_line_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("port = [not toml\n")
    env = box_env(tmp_path / "data", free_port(), CLINICBOX_CONFIG=str(cfg))
    _assert_one_line_error(_run_serve(env), "not valid TOML")


def test_bad_env_value_is_one_line_exit_2(tmp_path: Path) -> None:
    env = box_env(tmp_path / "data", free_port())
    env["CLINICBOX_PORT"] = "eighty"
    _assert_one_line_error(_run_serve(env), "CLINICBOX_PORT")


def test_missing_config_file_is_one_line_exit_2(tmp_path: Path) -> None:
    env = box_env(tmp_path / "data", free_port(), CLINICBOX_CONFIG=str(tmp_path / "nope.toml"))
    _assert_one_line_error(_run_serve(env), "does not exist")


def test_config_show_merges_file_and_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "box.toml"
    cfg.write_text('[clinicbox]\nport = 9443\nhostname = "clinic-a"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICBOX_")}
    env.update(CLINICBOX_CONFIG=str(cfg), CLINICBOX_PORT="9555", CLINICBOX_DATA_DIR="/srv/cb")
    result = subprocess.run(
        [CLINICBOX, "config", "show", "--json"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["port"] == 9555  # environment wins over the file
    assert values["hostname"] == "clinic-a"  # file wins over the default
    assert values["data_dir"] == "/srv/cb"
    assert values["config_file"] == str(cfg)


def test_version_command() -> None:
    result = subprocess.run([CLINICBOX, "version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("clinicbox ")


def test_logs_are_one_line_events(running_box: RunningBox) -> None:
    running_box.stop()
    err = running_box.proc.stderr.read()
    lines = [line for line in err.splitlines() if line]
    assert lines, "serve logged nothing"
    # Not under journald, each line starts with its UTC time, then the level.
    for line in lines:
        stamp, level, _rest = line.split(" ", 2)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp), line
        assert level in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, line


def test_data_dir_is_private(serving_box: RunningBox) -> None:
    assert stat.S_IMODE(os.stat(serving_box.data_dir).st_mode) == 0o700


def test_sigterm_with_idle_client_connections_still_exits_in_time(running_box: RunningBox) -> None:
    # Tablets keep connections open; an idle TLS client and a half-sent request must not
    # hold the shutdown past 5 s.
    ctx = running_box.ssl_context()
    idle = ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", running_box.port), timeout=5),
        server_hostname="localhost",
    )
    half = ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", running_box.port), timeout=5),
        server_hostname="localhost",
    )
    half.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
    try:
        started = time.monotonic()
        rc = running_box.stop(timeout=15)
        assert rc == 0
        assert time.monotonic() - started < 5.0
    finally:
        idle.close()
        half.close()


def test_a_request_body_that_pauses_for_twelve_seconds_still_gets_an_answer(
    running_box: RunningBox,
) -> None:
    # A GPRS patient's call offer (13-38 kB through a 20 kbps uplink with a small queue)
    # stalled for over 10 s mid-upload while TCP backed off; at cheroot's default 10 s read
    # timeout the box dropped the connection without an answer and the patient never joined.
    body = json.dumps(
        {"token": "not-a-token", "sdp": "v=0\r\n" + "a=x\r\n" * 2000, "type": "offer"}
    )
    head = (
        "POST /api/media/offer HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    ctx = running_box.ssl_context()
    with ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", running_box.port), timeout=30),
        server_hostname="localhost",
    ) as conn:
        conn.sendall(head.encode() + body[: len(body) // 2].encode())
        time.sleep(12)
        conn.sendall(body[len(body) // 2 :].encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    # The offer was read whole: the token is what it refuses, with a message.
    text = answer.decode(errors="replace")
    assert text.startswith("HTTP/1.1 403"), text[:200]
    assert json.loads(text.split("\r\n\r\n", 1)[1])["message"], text
