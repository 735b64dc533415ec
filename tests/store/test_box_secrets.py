"""The cookie and CA keys ride in the store's keys file, wrapped by the same KEK as the
record keys: a passphrase change keeps them, a wipe destroys them."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.store.keyring import Keyring, StoreLockedError


def test_box_secrets_survive_a_change_of_key_mode(tmp_path: Path) -> None:
    ring = Keyring.open(tmp_path)
    made = ring.box_secret("portal-cookie-key", lambda: b"c" * 32)
    assert ring.box_secret("portal-cookie-key", lambda: b"other") == made
    ring.rewrap("a long clinic passphrase")
    reopened = Keyring.open(tmp_path, "a long clinic passphrase")
    assert reopened.get_box_secret("portal-cookie-key") == made
    assert b"c" * 32 not in (tmp_path / "store-keys.json").read_bytes()
    with pytest.raises(StoreLockedError):
        Keyring.open(tmp_path)
    reopened.rewrap(None)
    assert Keyring.open(tmp_path).get_box_secret("portal-cookie-key") == made


def test_box_secrets_survive_data_key_rotation(tmp_path: Path) -> None:
    ring = Keyring.open(tmp_path)
    ring.set_box_secret("tls-ca-key", b"k" * 40)
    first = ring.active_id
    ring.add_data_key()
    ring.retire([first])
    assert Keyring.open(tmp_path).get_box_secret("tls-ca-key") == b"k" * 40


def test_threads_asking_for_a_new_secret_at_once_get_the_same_one(tmp_path: Path) -> None:
    import os
    import threading

    ring = Keyring.open(tmp_path)
    got: list[bytes] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        got.append(ring.box_secret("join-token-key", lambda: os.urandom(32)))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(got) == 8 and len(set(got)) == 1
    assert Keyring.open(tmp_path).get_box_secret("join-token-key") == got[0]
