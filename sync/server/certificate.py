"""The centre's own TLS key and self-signed certificate, kept in its data dir.

Boxes do not trust the centre through a CA: they pin the SHA-256 of this certificate's public
key (`sync.protocol.pinning`), which each claim token and voucher carries. The key is made once
and kept; the certificate is remade from the same key when it nears expiry, so the pin (and
every box that holds it) survives renewal.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.files import write_private
from sync.protocol.pinning import tls_pin_of_pem

KEY_FILE = "centre-tls-key.pem"
CERT_FILE = "centre-tls-cert.pem"
CERT_DAYS = 3650
RENEW_BEFORE = dt.timedelta(days=60)


@dataclass(frozen=True)
class CentreCertificate:
    """Paths of the centre's TLS key and certificate, and the pin boxes hold for it."""

    cert: Path
    key: Path

    @property
    def pin(self) -> str:
        return tls_pin_of_pem(self.cert.read_bytes())


def _load_or_make_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return key


def _current(path: Path, key: ec.EllipticCurvePrivateKey) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    public = cert.public_key()
    same_key = (isinstance(public, ec.EllipticCurvePublicKey)
                and public.public_numbers() == key.public_key().public_numbers())
    fresh = cert.not_valid_after_utc - RENEW_BEFORE > dt.datetime.now(dt.UTC)
    return same_key and fresh


def ensure_centre_certificate(data_dir: Path) -> CentreCertificate:
    """The data dir's TLS key and certificate, made (or the certificate renewed) if needed."""
    key_path, cert_path = data_dir / KEY_FILE, data_dir / CERT_FILE
    key = _load_or_make_key(key_path)
    if not _current(cert_path, key):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clinicbox-central")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        tmp = cert_path.with_name(f".{cert_path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, cert_path)
    return CentreCertificate(cert_path, key_path)
