"""A fresh weak-link lab per test; skipped (with the reason) where namespaces cannot be made."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.lab import Lab, LabUnavailable


@pytest.fixture
def lab() -> Iterator[Lab]:
    try:
        with Lab() as made:
            yield made
    except LabUnavailable as exc:
        pytest.skip(f"weak-link lab unavailable: {exc}")
