"""A portal on a real store in a temp data dir, with a setup code issued, for the wizard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from appliance.box import Box
from appliance.config import Settings
from appliance.media_loop import MediaLoop
from appliance.setup_code import SetupCode
from appliance.store import open_store
from appliance.tls import ensure_tls
from web import create_app


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    settings = Settings(data_dir=tmp_path / "data", hostname="testbox")
    store = open_store(settings)
    media = MediaLoop()
    media.start()
    tls = ensure_tls(settings.tls_dir, "testbox", store.keyring)
    box = Box(settings=settings, tls=tls, db=store.db, media=media,
              setup_code=SetupCode(settings.secrets_dir / "setup-code.json"), store=store)
    yield box
    media.stop()
    store.close()


@pytest.fixture
def app(box: Box) -> Flask:
    return create_app(box, {"TESTING": True})


def central_voucher(central_dir: Path, central_url: str = "https://centre.example") -> str:
    """A real offline claim voucher, signed by a centre made in `central_dir` by its CLI."""
    import subprocess
    import sys

    central = str(Path(sys.executable).with_name("clinicbox-central"))
    result = subprocess.run([central, "--data-dir", str(central_dir), "claim-voucher",
                             "--central-url", central_url],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
