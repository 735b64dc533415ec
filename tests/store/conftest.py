"""A fresh record store in a temporary data dir."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.store import Store, open_store


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", hostname="testbox")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = open_store(settings)
    yield opened
    opened.close()


def make_session(store: Store, keep_chat: bool = True) -> tuple:
    """A clinician, a patient and a group session owned by them."""
    user = store.User.create(username="dr.ada", role="clinician", password_hash="x")
    patient = store.Patient.create(display_name="Test Patient")
    session = store.GroupSession.create(
        title="Tuesday group", starts_at=datetime(2026, 1, 6, 10), facilitator=user,
        keep_chat=keep_chat,
    )
    return user, patient, session
