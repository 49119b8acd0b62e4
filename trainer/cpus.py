"""How many CPUs this process may really use (size worker pools from this, not `nproc`)."""

from __future__ import annotations

import math
import os
from pathlib import Path


def cpu_quota() -> int:
    """CPUs this process may really use: the affinity mask, capped by a cgroup CPU quota
    (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`) — in a container `nproc` can overstate it."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    quota = None
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            quota = int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        try:
            q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            if q > 0:
                quota = q / period
        except (OSError, ValueError):
            pass
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)
