"""The box's own TLS: a local CA and a server certificate made with `cryptography`.

Browsers give camera and microphone only to secure origins, so the portal is HTTPS from the
first start. Tablets trust the box by installing the CA certificate served at `/ca.pem`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.files import make_private_dir, write_private

log = logging.getLogger(__name__)

CA_DAYS = 3650
# Apple platforms refuse server certificates valid for more than 825 days; 397 is the
# public-web limit and renewal is automatic, so stay with that.
SERVER_DAYS = 397
RENEW_BEFORE = dt.timedelta(days=30)
_SIOCGIFADDR = 0x8915


@dataclass(frozen=True)
class TlsMaterial:
    """Paths of the PEM files the WSGI server and `/ca.pem` use."""

    ca_cert: Path
    cert: Path
    key: Path

    def not_after(self) -> dt.datetime:
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        return cert.not_valid_after_utc


def local_ip_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """IP addresses of this host's interfaces (no network traffic involved)."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(
                    sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode())
                )
            except OSError:
                continue  # interface without an IPv4 address
            found.add(ipaddress.IPv4Address(packed[20:24]))
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            addr = ipaddress.IPv6Address(int(line.split()[0], 16))
            if not addr.is_link_local:
                found.add(addr)
    except OSError:
        pass
    found.add(ipaddress.IPv4Address("127.0.0.1"))
    return sorted(found, key=lambda a: (a.version, int(a)))


def _names_for(hostname: str) -> list[str]:
    names = [hostname, f"{hostname}.local", "localhost"]
    return list(dict.fromkeys(n for n in names if n))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_ca(tls_dir: Path, hostname: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ClinicBox"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"ClinicBox local CA ({hostname})"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(tls_dir / "ca.key", _key_pem(key))
    (tls_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("made local certificate authority")
    return cert, key


def _make_server_cert(
    tls_dir: Path,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    hostname: str,
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in _names_for(hostname)]
    sans += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{hostname}.local")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(tls_dir / "server.key", _key_pem(key))
    (tls_dir / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("issued server certificate: %d names, %d addresses", len(sans) - len(ips), len(ips))


def _server_cert_current(
    path: Path, hostname: str, ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address]
) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_names = set(san.get_values_for_type(x509.DNSName))
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    return set(_names_for(hostname)) <= have_names and set(ips) <= have_ips


def ensure_tls(tls_dir: Path, hostname: str) -> TlsMaterial:
    """Make the CA and server certificate if missing, expiring, or not naming this host."""
    make_private_dir(tls_dir)
    material = TlsMaterial(tls_dir / "ca.pem", tls_dir / "server.pem", tls_dir / "server.key")
    ca_key_path = tls_dir / "ca.key"
    if material.ca_cert.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(material.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    else:
        ca_cert, ca_key = _make_ca(tls_dir, hostname)
    ips = local_ip_addresses()
    if not (material.key.exists() and _server_cert_current(material.cert, hostname, ips)):
        _make_server_cert(tls_dir, ca_cert, ca_key, hostname, ips)
    return material
