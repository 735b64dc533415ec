"""Update bundles over the sync link: ask the centre for a newer release, download its
bundle resumably, check it, and leave it ready for the installer.

The agent drives this between record batches (records always go first), a chunk at a time:
every chunk is a byte range appended to `updates/<sha256>.part` in the data dir as it
arrives, so a cut link, a restart or a power cut loses nothing already on disk and the next
range starts where the file ends. A download stops at once when a live session gains remote
participants, and counts in the daily byte budget like any other sync traffic.

Which bundle: the centre offers every bundle of the newest release (the full one and deltas);
the box takes the smallest whose missing wheels it already holds in its content-addressed
store, so wheels it has are never sent again.

A finished download must match the sha256 it was offered under, carry a trusted release
signature, suit this box (CPU, Python) and be newer than what runs; then it moves to
`updates/ready/`, where `clinicbox update import-downloaded` (root, after hours) installs it.
Each check also reports the box's release, slot, trial and last update to the centre.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.update.bundle import check_order, check_platform, open_bundle
from appliance.update.downloaded import DOWNLOAD_DIR, READY_DIR, STATE_FILE
from appliance.update.manifest import BundleRefused
from appliance.update.releases import ReleaseRoot
from sync.agent.transport import HANDSHAKE_BYTES, HEADER_BYTES, HttpClient

# Outcomes after which the box does not fetch that release again (the centre is told).
GIVEN_UP = ("rolled-back", "abandoned")

Signer = Callable[[str, str, bytes], dict[str, str]]


def release_root_from_env() -> ReleaseRoot:
    return ReleaseRoot(Path(os.environ.get("CLINICBOX_RELEASE_ROOT", "/opt/clinicbox")))


def release_keys_from_env() -> Path:
    return Path(os.environ.get("CLINICBOX_RELEASE_KEYS", "/etc/clinicbox/release-keys"))


class UpdateDownloader:
    """The box's side of updates over the link (blocking: runs on the agent's thread)."""

    def __init__(self, data_dir: Path, root: ReleaseRoot, keys_dir: Path) -> None:
        self.dir = data_dir / DOWNLOAD_DIR
        self.root = root
        self.keys_dir = keys_dir
        self.state_file = self.dir / STATE_FILE

    # State ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.state_file.read_text())
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.state_file.with_name(".download.json.tmp")
        tmp.write_text(json.dumps(state, sort_keys=True))
        os.replace(tmp, self.state_file)

    def _part(self, sha256: str) -> Path:
        return self.dir / f"{sha256}.part"

    def _have(self, state: dict[str, Any]) -> int:
        try:
            return self._part(state["sha256"]).stat().st_size
        except (KeyError, OSError):
            return 0

    def wants_bytes(self) -> bool:
        """A download is under way (an offered bundle not yet complete)."""
        state = self.state()
        return bool(state.get("sha256")) and not state.get("ready")

    # Report and offer -------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """What the centre keeps of this box's software (no clinical data)."""
        release = self.root.read_state()
        trial = release.get("trial") or None
        state = self.state()
        skip = {
            h["version"]
            for h in release.get("history", [])
            if isinstance(h, dict) and h.get("outcome") in GIVEN_UP
        }
        skip |= set(state.get("refused", {}))
        return {
            "platform": platform.machine(),
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "current": self.root.running_version(),
            "previous": release.get("previous"),
            "trial": None
            if not trial
            else {"version": trial.get("version"), "failed": trial.get("failed")},
            "last": release.get("last"),
            "download": None
            if not state.get("sha256")
            else {
                "version": state.get("version"),
                "have": self._have(state),
                "size": state.get("size"),
            },
            "skip": sorted(skip),
        }

    def _stored_wheels(self) -> set[str]:
        if not self.root.wheels.is_dir():
            return set()
        return {d.name for d in self.root.wheels.iterdir() if d.is_dir() and any(d.iterdir())}

    def check(self, client: HttpClient, sign: Signer) -> int:
        """Report to the centre and take up its offer; return the bytes it cost."""
        body = json.dumps(self.report(), sort_keys=True).encode()
        answer = client.request(
            "POST", "/v1/updates/check", body, sign("POST", "/v1/updates/check", body)
        )
        offer = answer.json()
        state = self.state()
        chosen = self._choose(offer) if isinstance(offer, dict) else None
        if chosen is None:
            if state.get("sha256") and not state.get("ready"):
                self._part(state["sha256"]).unlink(missing_ok=True)
            self._save({"refused": state.get("refused", {})})
            return answer.wire_bytes
        if state.get("sha256") != chosen["sha256"]:
            if state.get("sha256"):
                self._part(state["sha256"]).unlink(missing_ok=True)
            self._save(
                {
                    "version": offer["version"],
                    "sha256": chosen["sha256"],
                    "size": chosen["size"],
                    "refused": state.get("refused", {}),
                }
            )
        return answer.wire_bytes

    def _choose(self, offer: dict[str, Any]) -> dict[str, Any] | None:
        """The smallest offered bundle whose left-out wheels this box already holds."""
        version = offer.get("version")
        bundles = offer.get("bundles")
        if not isinstance(version, str) or not isinstance(bundles, list):
            return None
        have = self._stored_wheels()
        usable = [
            b
            for b in bundles
            if isinstance(b, dict)
            and isinstance(b.get("sha256"), str)
            and len(b["sha256"]) == 64
            and isinstance(b.get("size"), int)
            and isinstance(b.get("needs"), list)
            and set(b["needs"]) <= have
        ]
        return min(usable, key=lambda b: b["size"]) if usable else None

    # Download ---------------------------------------------------------------------------

    def fetch_chunk(
        self,
        client: HttpClient,
        sign: Signer,
        max_bytes: int,
        keep_going: Callable[[], bool],
        spent: Callable[[int], None],
    ) -> int:
        """Download the next byte range (at most `max_bytes`) of the offered bundle, calling
        `spent` with every byte that crossed the link; return the body bytes received.

        Stops early when `keep_going()` turns False. A finished file is checked and moved
        to `ready/`, or dropped with the reason kept (BundleRefused is not raised)."""
        state = self.state()
        if not state.get("sha256") or state.get("ready"):
            return 0
        sha256, size = state["sha256"], int(state["size"])
        part = self._part(sha256)
        have = self._have(state)
        if have > size:  # never a valid state: start again
            part.unlink()
            have = 0
        got = 0
        if have < size and max_bytes > 0:
            end = min(size, have + max_bytes) - 1
            path = f"/v1/updates/bundles/{sha256}"
            headers = sign("GET", path, b"")
            headers["Range"] = f"bytes={have}-{end}"
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Unbuffered: every block is the kernel's as soon as it arrived (a killed agent
            # loses none of it); fsync'd once per range.
            with part.open("ab", buffering=0) as out:

                def sink(block: bytes) -> bool:
                    nonlocal got
                    out.write(block[: end + 1 - have - got])
                    got += len(block)
                    spent(len(block))
                    return keep_going()

                try:
                    spent(client.fetch_into(path, headers, (206,), sink))
                except BaseException:
                    spent(HEADER_BYTES + HANDSHAKE_BYTES)  # what a failed request may cost
                    raise
                finally:
                    out.flush()
                    os.fsync(out.fileno())
            have = self._have(state)
        if have == size:
            self._finish(state)
        return got

    def _finish(self, state: dict[str, Any]) -> None:
        part = self._part(state["sha256"])
        digest = hashlib.sha256()
        with part.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != state["sha256"]:
            # Not what was offered (a centre or proxy fault): fetch it again from the start.
            part.unlink()
            return
        reason = self._refusal(part)
        if reason is not None:
            part.unlink()
            refused = dict(state.get("refused", {}))
            refused[state["version"]] = reason
            self._save({"refused": refused})
            return
        ready = self.dir / READY_DIR
        ready.mkdir(mode=0o700, exist_ok=True)
        target = ready / f"clinicbox-{state['version']}-{state['sha256'][:12]}.cbup"
        os.replace(part, target)
        self._save({**state, "ready": str(target)})

    def _refusal(self, path: Path) -> str | None:
        """Why this box must not install the bundle (signature, CPU, order), else None."""
        try:
            bundle = open_bundle(path, self.keys_dir)
            try:
                check_platform(bundle.manifest)
                check_order(bundle.manifest, self.root.running_version())
            finally:
                bundle.close()
        except BundleRefused as exc:
            return str(exc)[:200]
        return None
