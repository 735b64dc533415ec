"""aiortc's and aioice's private parts are reached only through `appliance.media.aiortc_glue`.

Outside that package no module of the SFU (or of the box that drives it) reads or writes
another object's private attribute, names one with getattr/setattr/hasattr, or assigns into
an aiortc or aioice module; and every private name the package uses is one the guard test
(`tests/media/test_aiortc_seams.py`) checks, so an aiortc upgrade that moves it fails there.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GLUE = ROOT / "appliance" / "media" / "aiortc_glue"
GUARD = ROOT / "tests" / "media" / "test_aiortc_seams.py"
# The SFU: the code that drives aiortc's peer connections for the box.
SCANNED = [ROOT / "appliance" / "media"]
# Our own marker on an asyncio loop (appliance/media/ports.py), not a part of aiortc.
OWN_ATTRIBUTES = {"_clinicbox_unranged_endpoint"}
# The glue's own state: SenderLink's fields, its marker on a transport (forwarding.py).
GLUE_OWN_ATTRIBUTES = {
    "_mid_element",
    "_abs_send_time_id",
    "_extensions",
    "_clinicbox_last_datagram",
    "_clinicbox_raw",
}
FOREIGN_MODULES = ("aiortc", "aioice")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(path: Path) -> list[tuple[int, str]]:
    """(line, what) for each reach into a private part of something other than self/cls."""
    tree = ast.parse(path.read_text(), str(path))
    foreign = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            foreign.update(
                (alias.asname or alias.name).split(".")[0]
                for alias in node.names
                if alias.name.split(".")[0] in FOREIGN_MODULES
            )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            FOREIGN_MODULES
        ):
            foreign.update(alias.asname or alias.name for alias in node.names)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if node.attr not in OWN_ATTRIBUTES:
                found.append((node.lineno, ast.unparse(node)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and node.args[1].value not in OWN_ATTRIBUTES
        ):
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                root = target
                while isinstance(root, ast.Attribute):
                    root = root.value
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(root, ast.Name)
                    and (root.id in foreign)
                ):
                    found.append((node.lineno, f"{ast.unparse(target)} = ..."))
    return found


def _private_names(path: Path) -> set[str]:
    """Every private attribute name a glue module reaches, `self` included: its functions
    that stand in for aiortc's or aioice's methods get their objects as `self`."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _private(node.value) and node.value.isidentifier():
                names.add(node.value)
    return names


def test_the_scan_sees_a_private_reach(tmp_path: Path) -> None:
    module = tmp_path / "patch.py"
    module.write_text(
        "import aioice.ice\n"
        "def patch(sender, pc):\n"
        "    sender._send_keyframe = print\n"
        "    aioice.ice.Connection.query_consent = print\n"
        "    return getattr(pc, '_RTCPeerConnection__sctp')\n"
    )
    assert sorted(line for line, _ in private_uses(module)) == [3, 4, 5]


def test_only_the_glue_reaches_into_aiortc() -> None:
    offenders = []
    for top in SCANNED:
        for path in sorted(top.rglob("*.py")):
            if GLUE in path.parents:
                continue
            offenders += [
                f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in private_uses(path)
            ]
    assert not offenders, (
        "reach aiortc's private parts through appliance/media/aiortc_glue/ only:\n"
        + "\n".join(offenders)
    )


def test_the_guard_test_checks_every_private_name_the_glue_uses() -> None:
    guard = GUARD.read_text()
    used = set().union(*(_private_names(path) for path in GLUE.rglob("*.py")))
    assert used, "the glue reaches no private part: is this still the right package?"
    # A name-mangled private (`_RTCRtpReceiver__rtx_ssrc`) reads `self.__rtx_ssrc` in aiortc.
    names = {
        name.removeprefix("_RTCRtpReceiver").removeprefix("_RTCRtpSender")
        for name in used - GLUE_OWN_ATTRIBUTES
    }
    unchecked = sorted(n for n in names if not re.search(rf"(?<![A-Za-z0-9_]){n}\b", guard))
    assert not unchecked, f"tests/media/test_aiortc_seams.py does not check: {unchecked}"
