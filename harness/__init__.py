"""Weak-link lab: emulated remote hosts behind shaped links, for tests and benchmarks."""

from appliance.lab import profiles
from appliance.lab.lab import Host, Lab, LabUnavailable

__all__ = ["Host", "Lab", "LabUnavailable", "profiles"]
