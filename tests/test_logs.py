"""Log lines: one per event, stamped with UTC time unless journald stamps them."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

from appliance.logs import OneLineFormatter, under_journald


def _line(formatter: logging.Formatter) -> str:
    record = logging.LogRecord(
        "appliance.server", logging.INFO, __file__, 1, "box up\nnext", None, None
    )
    return formatter.format(record)


def test_lines_carry_a_utc_time_outside_journald() -> None:
    stamped = _line(OneLineFormatter(timestamps=True))
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO appliance\.server: box up\\nnext", stamped
    )
    assert _line(OneLineFormatter()) == "INFO appliance.server: box up\\nnext"


def test_journald_is_recognised_only_on_its_own_stream(tmp_path, monkeypatch) -> None:
    # JOURNAL_STREAM naming the very stream stderr is: journald is listening.
    log = tmp_path / "err"
    with log.open("w") as err:
        info = os.fstat(err.fileno())
        code = "from appliance.logs import under_journald; print(under_journald())"
        env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        done = subprocess.run(
            [sys.executable, "-c", code],
            stderr=err,
            env=env,
            capture_output=False,
            stdout=subprocess.PIPE,
            text=True,
            timeout=30,
        )
    assert done.stdout.strip() == "True"
    # Inherited by a process whose stderr goes elsewhere: not journald.
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert under_journald() is False
    monkeypatch.delenv("JOURNAL_STREAM")
    assert under_journald() is False
