"""Forged, replayed, stale, unknown and tampered input is refused with a clear error."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.identity import DeviceIdentity
from sync.agent.claim import ClaimError, claim_box, claim_with_voucher
from sync.agent.downsync import verify_changes
from sync.agent.transport import HttpClient, Rejected
from sync.protocol import ProtocolError
from sync.protocol.messages import encode_batch, make_bundle, seal_batch
from sync.protocol.signing import sign_document, sign_request
from tests.sync.conftest import Box

pytestmark = pytest.mark.timeout(60)


def _batch(link, n: int = 1) -> bytes:
    from appliance.store.outbox import OutboxItem

    payload = b'{"fields":{},"id":"r1","type":"telemetry","version":1}'
    import hashlib

    items = [OutboxItem(i, "telemetry", f"r{i}", 1, 3, payload, hashlib.sha256(payload)
                        .hexdigest(), 0) for i in range(n)]
    return seal_batch(link.sealing_key, link.device_id, encode_batch(link.device_id, items, {}))


def test_forged_replayed_and_stale_requests(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    client = HttpClient(central_sqlite.url, 2, 5, link.tls_pin)
    body = _batch(link)
    good = sign_request(box.identity.sign, link.device_id, "POST", "/v1/records", body)
    assert client.request("POST", "/v1/records", body, good).status == 200
    with pytest.raises(Rejected, match="409: replayed request"):
        client.request("POST", "/v1/records", body, good)
    forger = Ed25519PrivateKey.generate()
    forged = sign_request(forger.sign, link.device_id, "POST", "/v1/records", body)
    with pytest.raises(Rejected, match="401: bad request signature"):
        client.request("POST", "/v1/records", body, forged)
    stale = sign_request(box.identity.sign, link.device_id, "POST", "/v1/records", body,
                         now=1_000_000_000)
    with pytest.raises(Rejected, match="401: stale timestamp"):
        client.request("POST", "/v1/records", body, stale)
    swapped = sign_request(box.identity.sign, link.device_id, "POST", "/v1/records", body)
    with pytest.raises(Rejected, match="401: bad request signature"):
        client.request("POST", "/v1/records", _batch(link, 2), swapped)
    unknown = sign_request(forger.sign, "0123456789abcdef", "POST", "/v1/records", body)
    with pytest.raises(Rejected, match="403: unknown device"):
        client.request("POST", "/v1/records", body, unknown)
    with pytest.raises(Rejected, match="401: unsigned request"):
        client.request("POST", "/v1/records", body, {})


def test_claim_tokens_and_vouchers(tmp_path, central_sqlite):
    box, other = Box(tmp_path / "a"), Box(tmp_path / "b")
    token = central_sqlite.cli("claim-token").stdout.strip()
    claim_box(central_sqlite.url, token, box.identity)
    with pytest.raises(ClaimError, match="409.*already used by another box"):
        claim_box(central_sqlite.url, token, other.identity)
    with pytest.raises(ClaimError, match="403.*unknown or expired"):
        claim_box(central_sqlite.url, "no-such-token-at-all." + token.split(".", 1)[1],
                  other.identity)
    with pytest.raises(ClaimError, match="not a ClinicBox claim token"):
        claim_box(central_sqlite.url, "no-such-token", other.identity)
    voucher = central_sqlite.cli("claim-voucher").stdout.strip()
    result = claim_with_voucher(central_sqlite.url, voucher, other.identity)
    assert result.device_id == other.identity.fingerprint
    third = DeviceIdentity(Ed25519PrivateKey.generate())
    with pytest.raises(ClaimError, match="409"):
        claim_with_voucher(central_sqlite.url, voucher, third)
    doc = json.loads(base64.b64decode(voucher))
    doc["document"]["expires_at"] += 1
    edited = base64.b64encode(json.dumps(doc).encode()).decode()
    with pytest.raises(ClaimError, match="damaged or edited"):
        claim_with_voucher(central_sqlite.url, edited, third)


def test_bundles_unknown_device_and_tampered(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    box.add_records(12)
    out = tmp_path / "usb" / "bundle.cbx"
    out.parent.mkdir()
    result = box.cli("export-bundle", str(out))
    assert result.returncode == 0, result.stderr
    assert b"Patient" not in out.read_bytes()  # sealed: no clinical content in the file
    raw = out.read_bytes()
    tampered = bytearray(raw)
    at = raw.index(b'"sealed":"') + 40
    tampered[at] = ord("A") if tampered[at] != ord("A") else ord("B")
    (tmp_path / "t.cbx").write_bytes(bytes(tampered))
    bad = central_sqlite.cli("import-bundle", str(tmp_path / "t.cbx"), check=False)
    assert bad.returncode == 2 and "tampered" in bad.stderr and "Traceback" not in bad.stderr
    stranger = DeviceIdentity(Ed25519PrivateKey.generate())
    foreign = make_bundle(stranger.sign, link.sealing_key, stranger.fingerprint, "b1",
                          b'{"records":[]}', 0)
    (tmp_path / "f.cbx").write_bytes(foreign)
    bad = central_sqlite.cli("import-bundle", str(tmp_path / "f.cbx"), check=False)
    assert bad.returncode == 2 and "unknown device" in bad.stderr
    for _ in range(2):  # importing twice is harmless
        ok = central_sqlite.cli("import-bundle", str(out), "--receipt", str(tmp_path / "r"))
        assert "stored 24 records" in ok.stdout
    applied = box.cli("import-receipts", str(tmp_path / "r"))
    assert "24 records marked delivered" in applied.stdout, applied.stderr
    status = json.loads(box.cli("sync", "status", "--json").stdout)
    assert sum(status["queued"].values()) == 0
    forged = json.loads((tmp_path / "r").read_text())
    forged["receipt"]["document"]["stored"].append(["x", 1, "0" * 64])
    (tmp_path / "r2").write_text(json.dumps(forged))
    refused = box.cli("import-receipts", str(tmp_path / "r2"))
    assert refused.returncode == 2 and "receipt refused" in refused.stderr


def test_unsigned_or_foreign_changes_refused(tmp_path, central_sqlite):
    box = Box(tmp_path / "box")
    link = box.claim(central_sqlite)
    doc = {"kind": "change", "seq": 1, "type": "config", "key": "k", "body": 1,
           "device_id": None}
    good = sign_document(box.identity.sign, doc)  # signed, but not by the centre
    with pytest.raises(ProtocolError, match="does not verify"):
        verify_changes(link.signing_key, {"changes": [good]}, link.device_id)
    with pytest.raises(ProtocolError, match="unsigned"):
        verify_changes(link.signing_key, {"changes": [{"document": doc}]}, link.device_id)
    central_sqlite.cli("publish", "config", "k", "1")
    client = HttpClient(central_sqlite.url, 2, 5, link.tls_pin)
    path = "/v1/changes?after=0&limit=200"
    answer = client.request("GET", path, b"",
                            sign_request(box.identity.sign, link.device_id, "GET", path, b""))
    changes = verify_changes(link.signing_key, answer.json(), link.device_id)
    assert [c["body"] for c in changes] == [1]
    tampered = answer.json()
    tampered["changes"][0]["document"]["body"] = 2
    with pytest.raises(ProtocolError, match="does not verify"):
        verify_changes(link.signing_key, tampered, link.device_id)
