"""The bundle manifest and its Ed25519 signature by a release key.

The manifest names every file of the release with its sha256, so the signature over the
manifest's bytes covers the whole bundle. The box trusts only the release public keys
installed at provisioning (one hex key per `*.pub` file in the trusted-keys directory).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.errors import OperatorError
from appliance.update.system_files import SystemFileRefused, check_name

# Format 2 adds system files and binary wheel patches; a bundle without either is written as
# format 1, which releases from before them still read.
FORMAT = 1
FORMAT_WITH_SYSTEM_FILES = 2
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")


class BundleRefused(OperatorError):
    """The bundle must not be installed; the message says why in one line."""


def version_key(version: str) -> tuple[int, ...]:
    """A release version ("1.4.2") as a comparable tuple; anything else is refused."""
    if not _VERSION.match(version):
        raise BundleRefused(f"release version {version!r} is not dotted numbers like 1.4.2")
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (4 - len(parts))


@dataclass(frozen=True)
class WheelEntry:
    """One wheel of the release: its file name, size and content address."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class SystemFileEntry:
    """A system file the release owns (appliance.update.system_files names the allowed ones)."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class WheelPatch:
    """A changed wheel sent as a binary patch against the wheel the box already has
    (appliance.update.wheel_patch); the patched result must have the wheel entry's sha256."""

    name: str  # the wheel it makes
    base_sha256: str  # the wheel it is made from, in the box's content-addressed store
    sha256: str  # of the patch itself
    size: int


@dataclass(frozen=True)
class Manifest:
    """What a release is and what installing it does."""

    version: str
    min_from_version: str
    platform: str  # "x86_64" or "aarch64"
    python: str  # "3.11"
    requirements: list[str]
    wheels: list[WheelEntry]
    migrations: list[int] = field(default_factory=list)
    # Signed as a rollback release: may replace a newer version.
    rollback: bool = False
    system_files: list[SystemFileEntry] = field(default_factory=list)
    patches: list[WheelPatch] = field(default_factory=list)
    format: int = FORMAT

    def to_bytes(self) -> bytes:
        """Canonical JSON: what the release key signs."""
        doc = asdict(self)
        for key in ("system_files", "patches"):
            if not doc[key]:
                del doc[key]
        extended = "system_files" in doc or "patches" in doc
        doc["format"] = FORMAT_WITH_SYSTEM_FILES if extended else FORMAT
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        try:
            doc = json.loads(raw)
            if doc.get("format") not in (FORMAT, FORMAT_WITH_SYSTEM_FILES):
                raise BundleRefused(f"bundle format {doc.get('format')} is not {FORMAT}")
            doc["format"] = FORMAT
            wheels = [WheelEntry(**w) for w in doc.pop("wheels")]
            system = [SystemFileEntry(**f) for f in doc.pop("system_files", [])]
            for entry in system:
                check_name(entry.name)
            patches = [WheelPatch(**p) for p in doc.pop("patches", [])]
            if not {p.name for p in patches} <= {w.name for w in wheels}:
                raise ValueError("a patch for a wheel the release does not have")
            return cls(wheels=wheels, system_files=system, patches=patches, **doc)
        except SystemFileRefused as exc:
            raise BundleRefused(str(exc)) from None
        except BundleRefused:
            raise
        except (ValueError, TypeError, KeyError, AttributeError):
            raise BundleRefused("bundle manifest is not valid") from None

    def needs(self, carried: set[str]) -> list[str]:
        """The sha256 of every wheel the box must already hold to install this bundle, which
        carries the wheels named in `carried` whole: the wheels it leaves out, and the bases
        of the wheels it sends as patches."""
        patched = {p.name: p.base_sha256 for p in self.patches if p.name not in carried}
        left_out = {w.sha256 for w in self.wheels if w.name not in carried | patched.keys()}
        return sorted(left_out | set(patched.values()))

    @property
    def full_bytes(self) -> int:
        return sum(w.size for w in self.wheels)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def key_id(public_hex: str) -> str:
    """A short name for a release key: the first 16 hex of the sha256 of its raw bytes."""
    return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]


def load_release_key(path: Path) -> Ed25519PrivateKey:
    """The release signing key (32 raw bytes as hex, one line)."""
    try:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(path.read_text().strip()))
    except OSError as exc:
        raise OperatorError(f"cannot read release key {path}: {exc.strerror}") from None
    except ValueError:
        raise OperatorError(f"{path} is not a release key (64 hex characters)") from None


def sign(manifest: Manifest, key: Ed25519PrivateKey) -> dict[str, str]:
    """The detached signature document stored beside the manifest."""
    return {"key_id": key_id(public_key_hex(key)), "signature": key.sign(manifest.to_bytes()).hex()}


def trusted_keys(keys_dir: Path) -> dict[str, Ed25519PublicKey]:
    """The release keys this box trusts, by key id."""
    found: dict[str, Ed25519PublicKey] = {}
    if not keys_dir.is_dir():
        return found
    for path in sorted(keys_dir.glob("*.pub")):
        try:
            raw = path.read_text().strip()
            found[key_id(raw)] = Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw))
        except (OSError, ValueError):
            continue  # a broken key file trusts nothing; the others still count
    return found


def verify_signature(raw_manifest: bytes, signature_doc: dict[str, Any], keys_dir: Path) -> None:
    """Refuse unless a trusted release key signed exactly these manifest bytes."""
    keys = trusted_keys(keys_dir)
    if not keys:
        raise BundleRefused(f"no trusted release keys in {keys_dir}: provision the box first")
    kid = str(signature_doc.get("key_id", ""))
    key = keys.get(kid)
    if key is None:
        raise BundleRefused(
            f"bundle signed by release key {kid or '?'}, which this box does not trust"
        )
    try:
        key.verify(bytes.fromhex(str(signature_doc.get("signature", ""))), raw_manifest)
    except (InvalidSignature, ValueError):
        raise BundleRefused(
            "bundle signature is not valid: it was altered or not signed by a release key"
        ) from None
