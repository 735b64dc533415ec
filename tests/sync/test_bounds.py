"""Hostile sizes and shapes get a clear refusal: bombs that inflate, JSON nested too deep, a
port already taken. Against a real `clinicbox-central serve` over TLS and the real CLIs."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import zlib
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sync.agent.transport import HttpClient, Rejected
from sync.protocol.canonical import b64e
from sync.protocol.messages import (
    BUNDLE_FORMAT,
    MAX_BUNDLE_PLAINTEXT,
    batch_aad,
    bundle_aad,
)
from sync.protocol.sealing import VERSION, _key, _raw
from sync.protocol.signing import sign_document, sign_request
from tests.sync.conftest import VENV_BIN, Box, clean_env

pytestmark = pytest.mark.timeout(120)


def _bomb_chunks(device_id: str, payload_bytes: int) -> Iterator[bytes]:
    """A valid batch with one record whose payload is `payload_bytes` long, in pieces (never
    whole in memory): the content hash matches, so only its size can refuse it."""
    filler = b"a" * (1 << 20)
    digest = hashlib.sha256(b'{"x":"')
    for _ in range(payload_bytes >> 20):
        digest.update(filler)
    digest.update(b'"}')
    yield (
        b'{"backlog":{},"device_id":"'
        + device_id.encode()
        + b'","records":[{"hash":"'
        + digest.hexdigest().encode()
        + b'","id":"r1","lane":3,"payload":"{\\"x\\":\\"'
    )
    for _ in range(payload_bytes >> 20):
        yield filler
    yield b'\\"}","type":"telemetry","version":1}]}'


def _sealed_bomb(recipient: X25519PublicKey, chunks: Iterator[bytes], aad: bytes) -> bytes:
    """Seal like the box does, compressing the plaintext as a stream."""
    deflater = zlib.compressobj(9)
    compressed = b"".join(deflater.compress(c) for c in chunks) + deflater.flush()
    ephemeral = X25519PrivateKey.generate()
    eph_raw = _raw(ephemeral.public_key())
    key = _key(ephemeral.exchange(recipient), eph_raw, _raw(recipient))
    nonce = os.urandom(12)
    return bytes([VERSION]) + eph_raw + nonce + AESGCM(key).encrypt(nonce, compressed, aad)


def test_a_batch_that_inflates_past_the_bound_is_refused(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    size = 48 << 20  # from a body of well under 1 MiB
    body = _sealed_bomb(
        link.sealing_key, _bomb_chunks(link.device_id, size), batch_aad(link.device_id)
    )
    assert len(body) < size // 100
    client = HttpClient(central_sqlite.url, 2, 30, link.tls_pin)
    headers = sign_request(box.identity.sign, link.device_id, "POST", "/v1/records", body)
    with pytest.raises(Rejected) as refused:
        client.request("POST", "/v1/records", body, headers)
    assert refused.value.status == 413 and "inflates beyond 8 MiB" in str(refused.value)
    assert central_sqlite.query("SELECT COUNT(*) FROM record") == [(0,)]
    assert client.request("GET", "/v1/ping").status == 200  # the worker lives on


def test_a_courier_bundle_that_inflates_past_the_bound_is_refused(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    aad = bundle_aad(link.device_id, "b1")
    sealed = _sealed_bomb(
        link.sealing_key, _bomb_chunks(link.device_id, MAX_BUNDLE_PLAINTEXT + (8 << 20)), aad
    )
    document = {
        "format": BUNDLE_FORMAT,
        "device_id": link.device_id,
        "bundle_id": "b1",
        "created_at": 0,
        "count": 1,
        "sealed": b64e(sealed),
    }
    path = tmp_path / "bomb.cbx"
    path.write_text(json.dumps(sign_document(box.identity.sign, document)))
    result = central_sqlite.cli("import-bundle", str(path), check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "inflates beyond 128 MiB" in result.stderr
    assert central_sqlite.query("SELECT COUNT(*) FROM record") == [(0,)]


def test_nested_json_gets_a_clear_refusal(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    nested = b"[" * 200_000 + b"]" * 200_000
    client = HttpClient(central_sqlite.url, 2, 10, link.tls_pin)
    for body in (
        nested[:7_000] + nested[-7_000:],
        b'{"device_public_key":"x","v":' + b"[" * 5000 + b"]" * 5000 + b"}",
    ):
        with pytest.raises(Rejected) as refused:
            client.request("POST", "/v1/claim", body, {"Content-Type": "application/json"})
        assert refused.value.status == 400 and "nested too deeply" in str(refused.value)
    (tmp_path / "nested.cbx").write_bytes(nested)
    bundle = central_sqlite.cli("import-bundle", str(tmp_path / "nested.cbx"), check=False)
    assert bundle.returncode == 2 and bundle.stderr.count("\n") == 1, bundle.stderr
    assert "nested too deeply" in bundle.stderr
    receipts = box.cli("import-receipts", str(tmp_path / "nested.cbx"))
    assert receipts.returncode == 2 and receipts.stderr.count("\n") == 1, receipts.stderr
    assert "not a ClinicBox receipt file" in receipts.stderr


def test_serve_on_a_busy_port_is_one_line(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                str(VENV_BIN / "clinicbox-central"),
                "--data-dir",
                str(tmp_path / "c"),
                "serve",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
