"""The update state as people read it: running release, previous one, trial, last outcome."""

from __future__ import annotations

import datetime as dt
from typing import Any

from appliance.update.releases import ReleaseRoot


def update_status(root: ReleaseRoot) -> dict[str, Any]:
    """Current and previous release, trial state and the last outcome."""
    state = root.read_state()
    trial = state.get("trial")
    return {
        "current": root.current_version(),
        "previous": state.get("previous"),
        "trial": None
        if not trial
        else {
            "version": trial.get("version"),
            "from": trial.get("previous"),
            "boots": trial.get("boots"),
            "failed": trial.get("failed"),
            "deadline": _when(trial.get("deadline")),
        },
        "last": None
        if not state.get("last")
        else {**state["last"], "at": _when(state["last"].get("at"))},
    }


def _when(ts: Any) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
