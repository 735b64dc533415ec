"""What `pip install .` puts on the box: the box's own packages, never the test harness."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("appliance", "web", "sync")
NOT_SHIPPED = ("harness", "tests", "benchmarks")


def _setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def shipped_packages(root: Path) -> set[str]:
    """The packages the wheel holds: setuptools' own search with pyproject's include list."""
    include = _setuptools_config()["packages"]["find"]["include"]
    return set(find_packages(where=str(root), include=include))


def test_the_wheel_ships_the_box_and_not_the_harness() -> None:
    shipped = shipped_packages(ROOT)
    assert {"appliance.commands", "appliance.media.aiortc_glue", "web", "sync.agent"} <= shipped
    assert not {p for p in shipped if p.split(".")[0] in NOT_SHIPPED}
    harness_files = {"stock_relay.py", "emulator.py", "callbox.py", "caller.py"}
    packaged = {
        f"{package}/{path.name}"
        for package in shipped
        for path in (ROOT / package.replace(".", "/")).glob("*.py")
        if path.name in harness_files
    }
    assert not packaged, f"harness modules inside the installed packages: {sorted(packaged)}"
    data = _setuptools_config()["package-data"]
    assert not [p for patterns in data.values() for p in patterns if "lab/" in p or "firefox" in p]


def test_the_box_never_imports_the_harness() -> None:
    offenders = []
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                offenders += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                    for name in names
                    if name.split(".")[0] in NOT_SHIPPED
                ]
    assert not offenders, "the installed box would not find these:\n" + "\n".join(offenders)
