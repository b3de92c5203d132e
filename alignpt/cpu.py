"""How many CPU cores this process may really use: affinity and cgroup quota, not the count
of cores in the machine (a container limited to two cores of sixty-four must not start
sixty-four threads: oversubscribed thread pools slow each other down several-fold)."""

from __future__ import annotations

import math
import os
from pathlib import Path


def usable_cores() -> dict:
    """``{"cores": N, "affinity": A, "quota": Q}``: N = min(affinity, cgroup quota)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    quota = None
    try:  # cgroup v2: "max 100000" or "200000 100000"
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if limit != "max":
            quota = float(limit) / float(period)
    except (OSError, ValueError):
        pass
    cores = affinity if quota is None else max(1, min(affinity, math.floor(quota)))
    return {"cores": cores, "affinity": affinity, "quota": quota}


def set_torch_threads() -> dict:
    """Size torch's intra-op pool to the usable cores; returns what was decided."""
    import torch

    info = usable_cores()
    torch.set_num_threads(info["cores"])
    return info | {"torch_threads": torch.get_num_threads()}
