"""The box's own TLS: a local CA and a server certificate made with `cryptography`.

Browsers give camera and microphone only to secure origins, so the portal is HTTPS from the
first start. Tablets trust the box by installing the CA certificate served at `/ca.pem`.

Because tablets trust that CA, its key must not be a skeleton key: the CA is name-constrained
(critical nameConstraints) to the box's own names (`hostname`, `hostname.local`, `localhost`)
and to the networks of its addresses (each IPv4 address's /24, each IPv6 address's /64, and
loopback), lives `CA_DAYS`, and its private key exists only wrapped by the record store's KEK
(`Keyring.box_secret`), never as a file. A /24 rather than the exact address, so a new DHCP
lease on the same LAN is still covered when the server certificate is re-issued; an address
on another network is left out of the certificate (with a warning) until `clinicbox tls
new-ca` makes a CA for the new network.
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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.files import make_private_dir, write_private
from appliance.store.keyring import Keyring, shred_file

log = logging.getLogger(__name__)

# Two years: long enough that tablets rarely re-install it, short enough that a CA key taken
# from an old backup stops mattering. Renewed (a new CA) within RENEW_BEFORE of its end.
CA_DAYS = 730
CA_KEY_SECRET = "tls-ca-key"
# Before the CA key was wrapped it was this file, beside ca.pem; it is shredded on upgrade.
LEGACY_CA_KEY_FILE = "ca.key"
# TLS 1.2 suites the portal offers: ECDHE key exchange with an AEAD cipher only (no CBC,
# no static RSA). TLS 1.3 suites are all AEAD already.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
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


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def permitted_networks(ips: list[Address]) -> list[Network]:
    """The IP subtrees a CA for these addresses may vouch for: their /24 or /64, and loopback."""
    nets: set[Network] = {
        ipaddress.IPv4Network("127.0.0.0/8"),
        ipaddress.IPv6Network("::1/128"),
    }
    for ip in ips:
        if ip.is_loopback:
            continue
        prefix = 24 if ip.version == 4 else 64
        nets.add(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
    return sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen))


def name_constraints(hostname: str, ips: list[Address]) -> x509.NameConstraints:
    """nameConstraints for the box's CA: its names and the networks of its addresses."""
    permitted: list[x509.GeneralName] = [x509.DNSName(n) for n in _names_for(hostname)]
    permitted += [x509.IPAddress(net) for net in permitted_networks(ips)]
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)


def _constraints_of(ca_cert: x509.Certificate) -> x509.NameConstraints | None:
    try:
        return ca_cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None


def _ca_permits(ca_cert: x509.Certificate, ip: Address) -> bool:
    constraints = _constraints_of(ca_cert)
    if constraints is None or constraints.permitted_subtrees is None:
        return False
    # This CA names networks only (`permitted_networks`), never single addresses.
    nets = [n.value for n in constraints.permitted_subtrees
            if isinstance(n, x509.IPAddress) and isinstance(n.value, Network)]
    return any(ip in net for net in nets)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_ca(
    tls_dir: Path, keyring: Keyring, hostname: str, ips: list[Address], replacing: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
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
        # RFC 5280: a CA's nameConstraints are critical, so a client that cannot honour them
        # refuses the chain rather than trusting the CA for every name.
        .add_extension(name_constraints(hostname, ips), critical=True)
        .sign(key, hashes.SHA256())
    )
    keyring.set_box_secret(CA_KEY_SECRET, _key_pem(key))
    write_private(tls_dir / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    if replacing:
        log.warning("made a new local certificate authority (valid until %s): tablets must "
                    "install it again from /ca.pem", cert.not_valid_after_utc.date())
    else:
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
    # Never outlive the CA: a chain with an expired CA fails however fresh the leaf.
    not_after = min(now + dt.timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in _names_for(hostname)]
    sans += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{hostname}.local")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
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
    path: Path, hostname: str, ips: list[Address], ca_cert: x509.Certificate
) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
    except (OSError, ValueError, TypeError, InvalidSignature):
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


def _current_ca(
    tls_dir: Path, keyring: Keyring, hostname: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The CA in `tls_dir` with its wrapped key, or None when a new CA is due: none yet, a key
    that does not match, no name constraints or not for this hostname (made by an older
    release, or the box was renamed), a lifetime over CA_DAYS, or its end within RENEW_BEFORE.
    """
    pem = keyring.get_box_secret(CA_KEY_SECRET)
    try:
        ca_cert = x509.load_pem_x509_certificate((tls_dir / "ca.pem").read_bytes())
    except (OSError, ValueError):
        return None
    if pem is None:
        return None
    ca_key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or ca_key.public_key() != (
        ca_cert.public_key()
    ):
        return None
    constraints = _constraints_of(ca_cert)
    if constraints is None or constraints.permitted_subtrees is None:
        return None
    permitted = {n.value for n in constraints.permitted_subtrees if isinstance(n, x509.DNSName)}
    if not set(_names_for(hostname)) <= permitted:
        return None
    lifetime = ca_cert.not_valid_after_utc - ca_cert.not_valid_before_utc
    if lifetime > dt.timedelta(days=CA_DAYS, hours=1):
        return None
    if ca_cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE:
        return None
    return ca_cert, ca_key


def ensure_tls(
    tls_dir: Path, hostname: str, keyring: Keyring, new_ca: bool = False
) -> TlsMaterial:
    """Make the CA and server certificate if missing, expiring, or not naming this host.

    `new_ca` forces a new CA (the box moved to another network). The CA key is kept only
    wrapped in `keyring`; a plaintext `ca.key` left by an older release is shredded.
    """
    make_private_dir(tls_dir)
    material = TlsMaterial(tls_dir / "ca.pem", tls_dir / "server.pem", tls_dir / "server.key")
    ips = local_ip_addresses()
    current = None if new_ca else _current_ca(tls_dir, keyring, hostname)
    if current is None:
        replacing = (tls_dir / "ca.pem").exists()
        ca_cert, ca_key = _make_ca(tls_dir, keyring, hostname, ips, replacing)
    else:
        ca_cert, ca_key = current
    if shred_file(tls_dir / LEGACY_CA_KEY_FILE):
        log.info("shredded the plaintext CA key left by an older release")
    covered = [ip for ip in ips if _ca_permits(ca_cert, ip)]
    if len(covered) < len(ips):
        log.warning(
            "%d address(es) of this box are outside the networks its local CA was made for: "
            "left out of the certificate (use %s.local, or `clinicbox tls new-ca`)",
            len(ips) - len(covered), hostname,
        )
    if not (
        material.key.exists() and _server_cert_current(material.cert, hostname, covered, ca_cert)
    ):
        _make_server_cert(tls_dir, ca_cert, ca_key, hostname, covered)
    return material
