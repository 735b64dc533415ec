"""The store's keys: a key-encryption key (KEK) wrapping the data keys and the index/MAC key.

Key hierarchy (see docs/storage.md):

- KEK: HKDF-SHA256 over the device secret (`store-device.key`, 32 random bytes, 0600), or
  scrypt over an operator passphrase. Never written anywhere.
- Data keys (AES-256-GCM), one active, older ones kept until rotation has re-encrypted every
  row that uses them. Stored only wrapped by the KEK in `store-keys.json` (0600).
- MAC key: HMAC-SHA256 for blind indexes and the audit chain, also wrapped by the KEK.
- Box secrets: the portal's cookie-signing key and the local CA's private key, also wrapped by
  the KEK, so a copied SD card in passphrase mode yields neither (`box_secret`).

Ciphertext layout: version byte, 4-byte key id, 12-byte nonce, AES-GCM ciphertext and tag. The
associated data binds table, primary key, column and key id, so a ciphertext moved to another
row or column (or relabelled with another key id) fails to decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.errors import OperatorError
from appliance.files import (
    UnsafePath,
    check_own_regular_file,
    open_beneath,
    unlink_beneath,
    write_private,
)

KEYS_FILE = "store-keys.json"
DEVICE_SECRET_FILE = "store-device.key"

CIPHERTEXT_VERSION = 1
HEADER = struct.Struct(">BI")  # version, key id
NONCE_BYTES = 12
# scrypt cost: 2**15 * 8 * 128 bytes = 32 MiB and ~0.1 s here, ~0.5 s on a Pi 4.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_CHECK_PLAINTEXT = b"clinicbox store kek check v1"


class StoreLockedError(OperatorError):
    """The store's keys cannot be unlocked: missing passphrase, wrong passphrase, lost secret."""


class DecryptionFailed(Exception):
    """A ciphertext did not authenticate under its table/pk/column/key id."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode())


@dataclass(frozen=True)
class _FileStamp:
    """Enough of a stat result to notice that the keys file was replaced."""

    inode: int
    mtime_ns: int
    size: int


def _stamp(path: Path) -> _FileStamp:
    st = path.stat()
    return _FileStamp(st.st_ino, st.st_mtime_ns, st.st_size)


class Keyring:
    """Unwrapped keys in memory, the wrapped keys on disk, and the AEAD/HMAC operations."""

    def __init__(self, secrets_dir: Path, kek: bytes) -> None:
        self.path = secrets_dir / KEYS_FILE
        self._kek = AESGCM(kek)
        self._lock = threading.Lock()
        self._load()

    # -- opening and creating ------------------------------------------------------------

    @classmethod
    def open(cls, secrets_dir: Path, passphrase: str | None = None) -> Keyring:
        """Unlock the keyring in `secrets_dir`, creating it (and the device secret) if absent.

        A new keyring uses passphrase mode when `passphrase` is given, device mode otherwise.
        """
        path = secrets_dir / KEYS_FILE
        if not path.exists():
            return cls._create(secrets_dir, passphrase)
        doc = _read_doc(path)
        kek = _derive_kek(secrets_dir, doc, passphrase)
        return cls(secrets_dir, kek)

    @classmethod
    def _create(cls, secrets_dir: Path, passphrase: str | None) -> Keyring:
        doc, kek = _new_kek(secrets_dir, passphrase)
        wrapper = AESGCM(kek)
        doc["mac_key"] = _wrap(wrapper, os.urandom(32), b"mac")
        doc["data_keys"] = {"1": _wrap(wrapper, AESGCM.generate_key(256), b"data|1")}
        doc["active"] = 1
        _write_keys(secrets_dir / KEYS_FILE, doc)
        return cls(secrets_dir, kek)

    def rewrap(self, passphrase: str | None) -> None:
        """Wrap the same keys under a new KEK: a new passphrase, or the device secret (None).

        Records are untouched. Moving to passphrase mode shreds the device secret, which no
        longer protects anything. Only while no other process has the store open: a running
        box would not be able to reload keys wrapped under a KEK it does not have.
        """
        with self._lock:
            self._load()
            secrets_dir = self.path.parent
            doc, kek = _new_kek(secrets_dir, passphrase)
            wrapper = AESGCM(kek)
            doc["mac_key"] = _wrap(wrapper, self._mac_key, b"mac")
            doc["data_keys"] = {}
            for key_id, wrapped in self._doc["data_keys"].items():
                label = f"data|{key_id}".encode()
                doc["data_keys"][key_id] = _wrap(wrapper, _unwrap(self._kek, wrapped, label),
                                                 label)
            doc["active"] = self._doc["active"]
            doc["secrets"] = {}
            for name, wrapped in self._doc.get("secrets", {}).items():
                label = _secret_label(name)
                doc["secrets"][name] = _wrap(wrapper, _unwrap(self._kek, wrapped, label), label)
            _write_keys(self.path, doc)
            self._kek = wrapper
            self._load()
            if passphrase is not None:
                shred_file(secrets_dir / DEVICE_SECRET_FILE)

    def _load(self) -> None:
        stamp = _stamp(self.path)
        doc = _read_doc(self.path)
        self.mode: str = doc["mode"]
        self._mac_key = _unwrap(self._kek, doc["mac_key"], b"mac")
        # Keys this process already knew stay usable in memory after a rotation retires them,
        # so an instance read before the rotation can still be re-sealed when it is saved.
        keys = dict(getattr(self, "_data_keys", {}))
        for key_id, wrapped in doc["data_keys"].items():
            keys[int(key_id)] = AESGCM(_unwrap(self._kek, wrapped, f"data|{key_id}".encode()))
        self._data_keys = keys
        self.active_id: int = int(doc["active"])
        self._doc = doc
        self._stamp = stamp

    def refresh(self) -> None:
        """Reload the keys file when another process (key rotation) replaced it."""
        with self._lock:
            if _stamp(self.path) != self._stamp:
                self._load()

    # -- box secrets -------------------------------------------------------------------------

    def get_box_secret(self, name: str) -> bytes | None:
        """The secret `name`, unwrapped, or None when the keys file has none by that name."""
        with self._lock:
            return self._get_secret_locked(name)

    def box_secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The secret `name`, unwrapped; made with `make()` and stored wrapped when absent.

        Get-or-make happens under the keyring's lock, so threads asking for a new secret at
        once all get the one that was stored.
        """
        with self._lock:
            value = self._get_secret_locked(name)
            if value is None:
                value = make()
                self._set_secret_locked(name, value)
            return value

    def set_box_secret(self, name: str, value: bytes) -> None:
        """Store (or replace) the secret `name`, wrapped by the KEK."""
        with self._lock:
            self._set_secret_locked(name, value)

    def _get_secret_locked(self, name: str) -> bytes | None:
        if _stamp(self.path) != self._stamp:
            self._load()  # another process (rotation, a CLI) replaced the keys file
        wrapped = self._doc.get("secrets", {}).get(name)
        return None if wrapped is None else _unwrap(self._kek, wrapped, _secret_label(name))

    def _set_secret_locked(self, name: str, value: bytes) -> None:
        self._load()
        doc = dict(self._doc)
        doc["secrets"] = dict(doc.get("secrets", {}))
        doc["secrets"][name] = _wrap(self._kek, value, _secret_label(name))
        _write_keys(self.path, doc)
        self._load()

    @property
    def key_ids(self) -> list[int]:
        """Ids of the data keys in the keys file (rows may use any of them)."""
        return sorted(int(k) for k in self._doc["data_keys"])

    # -- rotation --------------------------------------------------------------------------

    def add_data_key(self) -> int:
        """Make a new data key the active one (older keys stay for reading); return its id."""
        with self._lock:
            self._load()
            new_id = max(self._data_keys) + 1
            doc = dict(self._doc)
            doc["data_keys"] = dict(doc["data_keys"])
            doc["data_keys"][str(new_id)] = _wrap(
                self._kek, AESGCM.generate_key(256), f"data|{new_id}".encode()
            )
            doc["active"] = new_id
            _write_keys(self.path, doc)
            self._load()
            return new_id

    def retire(self, key_ids: list[int]) -> None:
        """Forget data keys no row uses any more (their wrapped copies leave the file)."""
        with self._lock:
            self._load()
            doc = dict(self._doc)
            doc["data_keys"] = {
                k: v for k, v in doc["data_keys"].items() if int(k) not in key_ids
            }
            if str(doc["active"]) not in doc["data_keys"]:
                raise ValueError("cannot retire the active data key")
            _write_keys(self.path, doc)
            self._load()

    # -- record encryption -----------------------------------------------------------------

    @staticmethod
    def _aad(table: str, pk: str, column: str, key_id: int) -> bytes:
        return f"clinicbox/v1|{table}|{pk}|{column}|{key_id}".encode()

    def seal(self, plaintext: bytes, table: str, pk: str, column: str) -> bytes:
        """Encrypt with the active data key and a fresh random 96-bit nonce."""
        key_id = self.active_id
        nonce = os.urandom(NONCE_BYTES)
        body = self._data_keys[key_id].encrypt(
            nonce, plaintext, self._aad(table, str(pk), column, key_id)
        )
        return HEADER.pack(CIPHERTEXT_VERSION, key_id) + nonce + body

    def open_sealed(self, blob: bytes, table: str, pk: str, column: str) -> bytes:
        """Decrypt a `seal` result for exactly this table/pk/column, or raise DecryptionFailed."""
        if len(blob) < HEADER.size + NONCE_BYTES + 16:
            raise DecryptionFailed("ciphertext too short")
        version, key_id = HEADER.unpack_from(blob)
        if version != CIPHERTEXT_VERSION:
            raise DecryptionFailed(f"unknown ciphertext version {version}")
        aead = self._data_keys.get(key_id)
        if aead is None:
            # A rotation in another process may have just added this key.
            self.refresh()
            aead = self._data_keys.get(key_id)
            if aead is None:
                raise DecryptionFailed(f"unknown data key {key_id}")
        nonce = blob[HEADER.size : HEADER.size + NONCE_BYTES]
        try:
            return aead.decrypt(
                nonce, blob[HEADER.size + NONCE_BYTES :], self._aad(table, str(pk), column, key_id)
            )
        except InvalidTag:
            raise DecryptionFailed("authentication tag mismatch") from None

    @staticmethod
    def key_id_of(blob: bytes) -> int:
        """The data key id a ciphertext was sealed with."""
        return HEADER.unpack_from(blob)[1]

    # -- keyed hashes ----------------------------------------------------------------------

    def blind_index(self, table: str, column: str, value: str) -> str:
        """Keyed HMAC of a normalised value: equal values match, nothing else is revealed."""
        message = f"index|{table}|{column}|{value}".encode()
        return hmac.new(self._mac_key, message, hashlib.sha256).hexdigest()[:32]

    def mac(self, purpose: str, data: bytes) -> str:
        """HMAC-SHA256 hex of `data` under the MAC key, domain-separated by `purpose`."""
        return hmac.new(self._mac_key, purpose.encode() + b"|" + data, hashlib.sha256).hexdigest()


def _new_kek(secrets_dir: Path, passphrase: str | None) -> tuple[dict, bytes]:
    """A keys-file header (mode, KDF parameters, check value) for a fresh KEK, and the KEK."""
    salt = os.urandom(16)
    if passphrase is not None:
        if len(passphrase) < 12:
            raise StoreLockedError("the store passphrase must be at least 12 characters")
        kdf = {"name": "scrypt", "salt": _b64(salt), "n": SCRYPT_N, "r": SCRYPT_R,
               "p": SCRYPT_P}
        doc: dict = {"format": 1, "mode": "passphrase", "kdf": kdf}
    else:
        secret_path = secrets_dir / DEVICE_SECRET_FILE
        if not secret_path.exists():
            write_private(secret_path, os.urandom(32))
        doc = {"format": 1, "mode": "device", "kdf": {"name": "hkdf-sha256",
                                                      "salt": _b64(salt)}}
    kek = _derive_kek(secrets_dir, doc, passphrase)
    doc["check"] = _wrap(AESGCM(kek), _CHECK_PLAINTEXT, b"check")
    return doc, kek


def _secret_label(name: str) -> bytes:
    return f"secret|{name}".encode()


def _write_keys(path: Path, doc: dict) -> None:
    """Replace the keys file durably: the new name must survive a power cut, or rows sealed
    under a just-added key would outlive the only copy of that key."""
    write_private(path, json.dumps(doc, indent=1).encode())
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def shred_file(path: Path, base: Path | None = None) -> bool:
    """Overwrite `path` with random bytes, flush them to disk, unlink it; False if absent.

    No symbolic link below `base` (default: the file's directory) is followed, and only a
    regular, singly linked file of ours or of `base`'s owner is overwritten: factory reset
    runs as root over the service user's directory. A link in the file's place is removed
    (its target is left alone) and UnsafePath says so.
    """
    base = path.parent if base is None else base
    relative = path.relative_to(base)
    try:
        fd = open_beneath(base, relative, os.O_WRONLY | os.O_NONBLOCK)  # a FIFO cannot block
    except FileNotFoundError:
        return False
    except UnsafePath:
        unlink_beneath(base, relative)
        raise
    try:
        info = check_own_regular_file(fd, path, os.stat(base).st_uid)
        os.write(fd, os.urandom(max(info.st_size, 64)))
        os.fsync(fd)
    except UnsafePath:
        unlink_beneath(base, relative)
        raise
    finally:
        os.close(fd)
    unlink_beneath(base, relative)
    return True


def _wrap(aead: AESGCM, key: bytes, label: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    return _b64(nonce + aead.encrypt(nonce, key, b"clinicbox/wrap|" + label))


def _unwrap(aead: AESGCM, wrapped: str, label: bytes) -> bytes:
    raw = _unb64(wrapped)
    return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], b"clinicbox/wrap|" + label)


def _read_doc(path: Path) -> dict:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise StoreLockedError(f"store keys file {path} is unreadable ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise StoreLockedError(f"store keys file {path} has an unknown format")
    return doc


def _derive_kek(secrets_dir: Path, doc: dict, passphrase: str | None) -> bytes:
    """The KEK for this keys file; StoreLockedError when it cannot be derived or is wrong."""
    kdf = doc["kdf"]
    salt = _unb64(kdf["salt"])
    if doc["mode"] == "passphrase":
        if not passphrase:
            raise StoreLockedError(
                "the record store is passphrase-protected; give the passphrase in "
                "CLINICBOX_STORE_PASSPHRASE_FILE or CLINICBOX_STORE_PASSPHRASE "
                "(store commands also take --passphrase-file)"
            )
        kek = Scrypt(salt=salt, length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(
            passphrase.encode()
        )
    else:
        secret_path = secrets_dir / DEVICE_SECRET_FILE
        try:
            secret = secret_path.read_bytes()
        except OSError:
            raise StoreLockedError(
                f"device secret {secret_path} is missing: the store's keys cannot be unlocked"
            ) from None
        kek = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=salt, info=b"clinicbox store kek v1"
        ).derive(secret)
    if "check" in doc:
        try:
            if _unwrap(AESGCM(kek), doc["check"], b"check") != _CHECK_PLAINTEXT:
                raise InvalidTag()
        except InvalidTag:
            what = "passphrase" if doc["mode"] == "passphrase" else "device secret"
            raise StoreLockedError(f"wrong store {what}: the store's keys do not open") from None
    return kek
