"""Claiming against a real `clinicbox-central` process: one-time tokens, reuse refused."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from appliance.box import Box
from appliance.config import Settings
from appliance.identity import DeviceIdentity
from appliance.provisioning import ProvisioningError, claim
from appliance.provisioning_state import read_state
from tests.conftest import free_port
from tests.provisioning.test_technician import _provision
from tests.provisioning.test_wizard import _enter_code, _wizard

pytestmark = pytest.mark.timeout(90)

CENTRAL = str(Path(sys.executable).with_name("clinicbox-central"))


@dataclass
class Central:
    """A running central server and its admin CLI."""

    url: str
    data_dir: Path

    def cli(self, *argv: str) -> str:
        result = subprocess.run([CENTRAL, "--data-dir", str(self.data_dir), *argv],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Central]:
    data = tmp_path_factory.mktemp("central")
    port = free_port()
    proc = subprocess.Popen([CENTRAL, "--data-dir", str(data), "serve", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"clinicbox-central exited: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    yield Central(f"https://127.0.0.1:{port}", data)
    proc.terminate()
    proc.wait(10)


def test_wizard_claims_with_a_one_time_token(app: Flask, box: Box, central: Central) -> None:
    token = central.cli("claim-token")
    client = app.test_client()
    code = box.setup_code.issue()
    assert _enter_code(client, "AAAAA-BBBBB") == 403  # a wrong setup code is refused
    assert _enter_code(client, code) == 302
    status, page = _wizard(client, central_url=central.url, claim_token=token)
    assert status == 200 and f"Claimed for {central.url}" in page, page
    state = read_state(box.settings)
    assert state.claimed and state.central_url == central.url

    fingerprint = DeviceIdentity.load_or_create(box.settings.secrets_dir).fingerprint
    devices = [json.loads(line) for line in central.cli("devices").splitlines()]
    assert fingerprint in [d["device_id"] for d in devices]


def test_a_reused_token_is_refused(tmp_path: Path, central: Central) -> None:
    token = central.cli("claim-token")
    first = Settings(data_dir=tmp_path / "one")
    second = Settings(data_dir=tmp_path / "two")
    claim(first, central.url, token)
    with pytest.raises(ProvisioningError, match="already used"):
        claim(second, central.url, token)
    assert read_state(first).claimed and not read_state(second).claimed
    with pytest.raises(ProvisioningError, match="unknown or expired"):
        claim(second, central.url, "not-a-token-we-made." + token.split(".", 1)[1])
    with pytest.raises(ProvisioningError, match="not a ClinicBox claim token"):
        claim(second, central.url, "not-a-token")


def test_cli_provision_claims_and_a_reused_token_is_one_line(
    tmp_path: Path, central: Central
) -> None:
    token = central.cli("claim-token")
    done = _provision(tmp_path / "one", tmp_path, "--central-url", central.url,
                      "--claim-token", token)
    assert done.returncode == 0, done.stderr
    assert f"claimed for {central.url}" in done.stdout
    reused = _provision(tmp_path / "two", tmp_path, "--central-url", central.url,
                        "--claim-token", token)
    assert reused.returncode == 2
    assert reused.stderr.count("\n") == 1 and "already used by another box" in reused.stderr
    assert read_state(Settings(data_dir=tmp_path / "two")).provisioned
    assert not read_state(Settings(data_dir=tmp_path / "two")).claimed
