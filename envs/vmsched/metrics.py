"""VM rescheduling metrics, computed from the instance and the migration plan alone.

Standard keys (DESIGN.md section 2): ``fragment_rate`` (final), ``initial_fragment_rate``,
``migrations``, ``violations``. Also ``fr_reduction`` (initial - final), ``vms_moved`` (VMs whose
final placement differs from the snapshot), ``mnl`` (the instance's migration limit, the one the
plan is validated against), ``empty_pms`` (ACTIVE PMs without VMs),
``fragment_rate_mem`` (memory-aware: free cores of a NUMA node that cannot host a 16-core VM because
of the core count or of the memory left), ``gpu_fragment_rate`` (GPU clusters: free GPUs of a NUMA
node that cannot host the largest 1-NUMA GPU VM, over all free GPUs) and ``decision_time_s`` (seconds,
when the producer recorded it).
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.vmsched.types import VMInstance, VMSolution, fragment_rate
from schedgym.envs.vmsched.validate import count_violations


def _mem_per_core(instance: VMInstance) -> float:
    """MB per core of the instance's VMs (median), the memory a g-core VM needs per core."""
    if instance.n_vms == 0:
        return 4096.0
    return float(np.median(instance.vm_mem / np.maximum(instance.vm_cpu, 1)))


def placement_metrics(instance: VMInstance, pm: np.ndarray, numa: np.ndarray) -> dict[str, float]:
    """Metrics of one placement: fragment rates, empty PMs."""
    inst = instance
    g = int(inst.granularity)
    used_c, used_m, used_g = inst.usage(pm, numa)
    act = inst.pm_active
    free_c = (inst.pm_cpu - used_c)[act]
    free_m = (inst.pm_mem - used_m)[act]
    total = int(free_c.sum())
    slots = np.minimum(free_c // g, free_m // max(1.0, g * _mem_per_core(inst)))
    out = {
        "fragment_rate": float((free_c % g).sum()) / total if total > 0 else 0.0,  # = fragment_rate()
        "fragment_rate_mem": float((free_c - g * slots).sum()) / total if total > 0 else 0.0,
        "empty_pms": float(((used_c.sum(axis=1) == 0) & act).sum()),
    }
    if inst.has_gpus:
        gg = int(inst.numa_gpu[inst.vm_span == 1].max(initial=1)) or 1
        free_g = (inst.pm_gpu - used_g)[act]
        tg = int(free_g.sum())
        out["gpu_fragment_rate"] = float((free_g % gg).sum()) / tg if tg > 0 else 0.0
    return out


def metrics(instance: VMInstance, solution: VMSolution) -> dict[str, float]:
    """Final and initial fragment rates, migrations, violations and the other keys of the module docstring."""
    inst = instance
    pm, numa = solution.final_placement(inst)
    final = placement_metrics(inst, pm, numa)
    init_fr = fragment_rate(inst, inst.init_pm, inst.init_numa)
    moved = (pm != inst.init_pm) | ((numa != inst.init_numa) & (inst.vm_span == 1))
    out = {
        "fragment_rate": final["fragment_rate"],
        "initial_fragment_rate": init_fr,
        "fr_reduction": init_fr - final["fragment_rate"],
        "migrations": float(solution.n_moves),
        "vms_moved": float(moved.sum()),
        "violations": float(count_violations(inst, solution)),
        "mnl": float(inst.mnl),
        "fragment_rate_mem": final["fragment_rate_mem"],
        "empty_pms": final["empty_pms"],
    }
    if "gpu_fragment_rate" in final:
        out["gpu_fragment_rate"] = final["gpu_fragment_rate"]
    if solution.wall_time_s is not None:
        out["decision_time_s"] = float(solution.wall_time_s)
    return out
