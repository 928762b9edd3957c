"""Small hand-made VM instances for the vmsched tests."""

from __future__ import annotations

import numpy as np

from schedgym.envs.vmsched.types import VMInstance


def tiny_instance(pm_cpu, vms, status=None, rack=None, host_groups=(), rack_groups=(), mnl=50, gpu=None,
                  name="tiny") -> VMInstance:
    """PMs with (P, 2) cores per NUMA node (MB = 4096 per core); ``vms`` rows
    ``(cores, span, pm, numa[, movable[, gpus]])``."""
    pm_cpu = np.asarray(pm_cpu, dtype=np.int64).reshape(-1, 2)
    P = len(pm_cpu)
    rows = [(r + (True,))[:5] + ((r[5],) if len(r) > 5 else (0,)) for r in vms]
    V = len(rows)
    cpu = np.array([r[0] for r in rows], dtype=np.int64)
    return VMInstance(
        name=name, pm_cpu=pm_cpu, pm_mem=pm_cpu * 4096,
        pm_gpu=np.zeros((P, 2), dtype=np.int64) if gpu is None else np.asarray(gpu, dtype=np.int64).reshape(P, 2),
        pm_status=np.zeros(P, dtype=np.int8) if status is None else np.asarray(status, dtype=np.int8),
        pm_rack=np.arange(P, dtype=np.int64) if rack is None else np.asarray(rack, dtype=np.int64),
        vm_cpu=cpu, vm_mem=cpu * 4096, vm_gpu=np.array([r[5] for r in rows], dtype=np.int64),
        vm_span=np.array([r[1] for r in rows], dtype=np.int64), vm_movable=np.array([r[4] for r in rows], dtype=bool),
        vm_type=np.zeros(V, dtype=np.int64), init_pm=np.array([r[2] for r in rows], dtype=np.int64),
        init_numa=np.array([r[3] for r in rows], dtype=np.int64),
        host_groups=[np.asarray(g, dtype=np.int64) for g in host_groups],
        rack_groups=[np.asarray(g, dtype=np.int64) for g in rack_groups], mnl=mnl, type_names=("t",),
    )
