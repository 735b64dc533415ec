"""Technician page readings that depend on the hardware: thermal zones, CPU, memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.diagnostics import cpu_reading, memory_reading, temperature_c

pytestmark = pytest.mark.timeout(30)


def _zone(root: Path, name: str, content: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "temp").write_text(content)


def test_temperature_is_the_hottest_readable_zone(tmp_path: Path) -> None:
    # The sysfs layout: millidegrees in thermal_zoneN/temp; a zone that fails to read
    # (a sensor that returns garbage or EIO) is skipped rather than breaking the page.
    _zone(tmp_path, "thermal_zone0", "48250\n")
    _zone(tmp_path, "thermal_zone1", "61000\n")
    _zone(tmp_path, "thermal_zone2", "not-a-number\n")
    (tmp_path / "cooling_device0").mkdir()
    assert temperature_c(tmp_path) == 61.0


def test_temperature_is_none_without_thermal_zones(tmp_path: Path) -> None:
    assert temperature_c(tmp_path) is None
    assert temperature_c(tmp_path / "missing") is None
    _zone(tmp_path, "thermal_zone0", "garbage")
    assert temperature_c(tmp_path) is None


def test_cpu_and_memory_readings_are_plausible() -> None:
    cpu = cpu_reading(sample_s=0.05)
    assert 0.0 <= cpu["busy_pct"] <= 100.0
    assert cpu["cores"] >= 1 and len(cpu["load"]) == 3
    memory = memory_reading()
    assert 0 < memory["available_mib"] <= memory["total_mib"]
