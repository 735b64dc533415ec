"""Weak-link lab: emulated remote hosts behind shaped links, for tests and benchmarks."""

from harness import profiles
from harness.lab import Host, Lab, LabUnavailable

__all__ = ["Host", "Lab", "LabUnavailable", "profiles"]
