"""The local CA: name-constrained to the box, two years, its key wrapped by the store's KEK;
the portal's TLS 1.2 offers AEAD suites only. Checked with real TLS handshakes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance import tls
from appliance.config import Settings
from appliance.store import open_store
from appliance.store.store import Store
from appliance.tls import CA_KEY_SECRET, ensure_tls
from tests.conftest import CLINICBOX, RunningBox

LAN = ipaddress.IPv4Address("192.168.1.10")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(Settings(data_dir=tmp_path, hostname="testbox"))
    yield opened
    opened.close()


def _addresses(monkeypatch: pytest.MonkeyPatch, *ips: str) -> None:
    found = [ipaddress.ip_address("127.0.0.1"), *(ipaddress.ip_address(ip) for ip in ips)]
    monkeypatch.setattr(tls, "local_ip_addresses", lambda: found)


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _mint(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: list[x509.GeneralName]
) -> tuple[bytes, bytes]:
    """What a thief holding the CA key would do: a server certificate for any name."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem(key)


def _handshake(
    tmp_path: Path, cert_pem: bytes, key_pem: bytes, ca_pem: Path, server_hostname: str
) -> None:
    """A real TLS handshake on loopback: a server with `cert_pem`, a client trusting only
    `ca_pem` and checking `server_hostname`. Raises ssl.SSLError when the client refuses."""
    (tmp_path / "leaf.pem").write_bytes(cert_pem)
    (tmp_path / "leaf.key").write_bytes(key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(ca_pem))
    try:
        with socket.create_connection(listener.getsockname(), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname):
                pass
    finally:
        thread.join(5)
        listener.close()


def _ca(store: Store, tls_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((tls_dir / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key(store.keyring.get_box_secret(CA_KEY_SECRET), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def test_a_stolen_ca_key_cannot_vouch_for_other_names(store, tmp_path, monkeypatch):
    _addresses(monkeypatch, str(LAN))
    material = ensure_tls(tmp_path / "tls", "testbox", store.keyring)
    ca_cert, ca_key = _ca(store, tmp_path / "tls")
    # The box's own certificate works for its names and its address.
    own = material.cert.read_bytes(), material.key.read_bytes()
    for name in ("testbox.local", "localhost", str(LAN)):
        _handshake(tmp_path, *own, material.ca_cert, name)
    # So does one the CA mints for another address on the same /24 (a new DHCP lease).
    _handshake(
        tmp_path, *_mint(ca_cert, ca_key, [x509.IPAddress(LAN + 5)]), material.ca_cert, str(LAN + 5)
    )
    # Anything else is refused by the client, however it was signed.
    forged = {
        "bank.example": x509.DNSName("bank.example"),
        "mail.google.com": x509.DNSName("mail.google.com"),
        "othertestbox.local": x509.DNSName("othertestbox.local"),
        "10.0.0.1": x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        "192.168.2.1": x509.IPAddress(ipaddress.ip_address("192.168.2.1")),
    }
    for name, general_name in forged.items():
        with pytest.raises(ssl.SSLCertVerificationError, match="subtree violation"):
            _handshake(tmp_path, *_mint(ca_cert, ca_key, [general_name]), material.ca_cert, name)


def test_ca_lives_two_years_and_its_key_is_only_wrapped(store, tmp_path, monkeypatch):
    _addresses(monkeypatch, str(LAN))
    material = ensure_tls(tmp_path / "tls", "testbox", store.keyring)
    ca_cert, ca_key = _ca(store, tmp_path / "tls")
    lifetime = ca_cert.not_valid_after_utc - ca_cert.not_valid_before_utc
    assert lifetime <= dt.timedelta(days=731)
    server = x509.load_pem_x509_certificate(material.cert.read_bytes())
    assert server.not_valid_after_utc <= ca_cert.not_valid_after_utc
    raw = ca_key.private_numbers().private_value.to_bytes(32, "big")
    der = ca_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != material.key:
            content = path.read_bytes()
            assert raw not in content and der not in content, path
            assert b"PRIVATE KEY" not in content, path


def test_address_change_on_the_same_lan_keeps_the_ca(store, tmp_path, monkeypatch, caplog):
    _addresses(monkeypatch, str(LAN))
    material = ensure_tls(tmp_path / "tls", "testbox", store.keyring)
    first_ca = material.ca_cert.read_bytes()
    # A new DHCP lease on the same LAN: same CA (tablets keep trusting it), new certificate.
    _addresses(monkeypatch, str(LAN + 67))
    ensure_tls(tmp_path / "tls", "testbox", store.keyring)
    assert material.ca_cert.read_bytes() == first_ca
    _handshake(
        tmp_path,
        material.cert.read_bytes(),
        material.key.read_bytes(),
        material.ca_cert,
        str(LAN + 67),
    )
    # Another network: the CA cannot vouch for it, so the certificate leaves it out (the name
    # still works) and the log says what to do ...
    _addresses(monkeypatch, "10.20.30.40")
    with caplog.at_level(logging.WARNING, logger="appliance.tls"):
        ensure_tls(tmp_path / "tls", "testbox", store.keyring)
    assert material.ca_cert.read_bytes() == first_ca
    assert "clinicbox tls new-ca" in caplog.text
    _handshake(
        tmp_path,
        material.cert.read_bytes(),
        material.key.read_bytes(),
        material.ca_cert,
        "testbox.local",
    )
    # ... which makes a CA for the new network.
    ensure_tls(tmp_path / "tls", "testbox", store.keyring, new_ca=True)
    assert material.ca_cert.read_bytes() != first_ca
    _handshake(
        tmp_path,
        material.cert.read_bytes(),
        material.key.read_bytes(),
        material.ca_cert,
        "10.20.30.40",
    )


def _old_release_ca(tls_dir: Path) -> None:
    """What releases before the constraint made: a ten-year CA, its key in a plain file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ClinicBox local CA (testbox)")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    tls_dir.mkdir(parents=True, exist_ok=True)
    (tls_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tls_dir / "ca.key").write_bytes(_pem(key))


def test_an_old_unconstrained_ca_is_replaced_and_its_key_shredded(store, tmp_path, monkeypatch):
    _addresses(monkeypatch, str(LAN))
    _old_release_ca(tmp_path / "tls")
    old_ca = (tmp_path / "tls" / "ca.pem").read_bytes()
    material = ensure_tls(tmp_path / "tls", "testbox", store.keyring)
    assert not (tmp_path / "tls" / "ca.key").exists()
    assert material.ca_cert.read_bytes() != old_ca
    ca_cert, _ = _ca(store, tmp_path / "tls")
    assert ca_cert.extensions.get_extension_for_class(x509.NameConstraints).critical
    _handshake(
        tmp_path,
        material.cert.read_bytes(),
        material.key.read_bytes(),
        material.ca_cert,
        "testbox.local",
    )
    # Idempotent: the next start keeps this CA.
    ensure_tls(tmp_path / "tls", "testbox", store.keyring)
    assert material.ca_cert.read_bytes() == (tmp_path / "tls" / "ca.pem").read_bytes()
    assert _ca(store, tmp_path / "tls")[0] == ca_cert


def test_passphrase_mode_keeps_ca_and_cookie_keys_off_the_card(tmp_path, monkeypatch):
    from appliance.store.keyring import Keyring, StoreLockedError

    _addresses(monkeypatch, str(LAN))
    opened = open_store(Settings(data_dir=tmp_path, hostname="testbox"), "a long clinic passphrase")
    try:
        ensure_tls(tmp_path / "tls", "testbox", opened.keyring)
        cookie_key = opened.keyring.box_secret("portal-cookie-key", lambda: b"k" * 32)
    finally:
        opened.close()
    doc = json.loads((tmp_path / "secrets" / "store-keys.json").read_bytes())
    assert doc["mode"] == "passphrase" and set(doc["secrets"]) >= {"tls-ca-key"}
    # A copy of the card has no device secret and no plaintext key files to try.
    assert not (tmp_path / "secrets" / "store-device.key").exists()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "server.key":
            assert cookie_key not in path.read_bytes()
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    with pytest.raises(StoreLockedError):
        Keyring.open(tmp_path / "secrets", None)
    with pytest.raises(StoreLockedError):
        Keyring.open(tmp_path / "secrets", "a wrong guess at it")


def _tls12_client(running_box: RunningBox, ciphers: str) -> str:
    ctx = ssl.create_default_context(cafile=str(running_box.data_dir / "tls" / "ca.pem"))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", running_box.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as conn:
            return conn.cipher()[0]


def test_tls12_offers_only_aead_ecdhe_suites(running_box: RunningBox) -> None:
    # A real client offering only CBC suites (TLS 1.2, ECDHE or not) cannot connect ...
    for cbc in (
        "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:"
        "ECDHE-ECDSA-AES256-SHA384",
        "AES128-SHA:AES256-SHA:AES128-SHA256",
    ):
        with pytest.raises(ssl.SSLError):
            _tls12_client(running_box, cbc)
    # ... one offering AEAD suites can.
    assert _tls12_client(running_box, "ECDHE-ECDSA-AES128-GCM-SHA256") == (
        "ECDHE-ECDSA-AES128-GCM-SHA256"
    )
    assert _tls12_client(running_box, "ECDHE-ECDSA-CHACHA20-POLY1305") == (
        "ECDHE-ECDSA-CHACHA20-POLY1305"
    )


def test_tls_new_ca_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICBOX_")}
    env["CLINICBOX_DATA_DIR"] = str(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLINICBOX, "tls", "new-ca", *args],
            env=env,
            text=True,
            capture_output=True,
            timeout=60,
            check=False,
        )

    refused = run()
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--yes" in refused.stderr
    assert run("--yes").returncode == 0
    first = (tmp_path / "tls" / "ca.pem").read_bytes()
    again = run("--yes")
    assert again.returncode == 0 and "install /ca.pem on every tablet" in again.stdout
    assert (tmp_path / "tls" / "ca.pem").read_bytes() != first
