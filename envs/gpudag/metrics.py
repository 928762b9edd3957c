"""GPU-DAG metrics, computed from the instance and the solution alone (times in the instance's unit).

* ``makespan``: latest task end.
* ``slr``: schedule length ratio (Topcuoglu et al. 2002): makespan / the minimum-time critical path
  (longest path with each task at its fastest device type, no communication). Online instances: mean
  over jobs of (job completion - arrival) / the job's critical path.
* ``speedup``: best single-device sequential time (min over devices of the sum of the task times,
  devices that can run every task) / makespan; NaN when no device can run every task.
* ``mean_jct``, ``p95_jct``: mean and 95th percentile of job completion time minus arrival.
* ``efficiency``: speedup / number of devices.
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.gpudag.ranks import min_critical_path, upward_rank
from schedgym.envs.gpudag.types import GPUDagInstance, GPUDagSolution


def critical_path_per_job(instance: GPUDagInstance) -> np.ndarray:
    """(J,) minimum-time critical path of each job."""
    lp = upward_rank(instance, w=instance.min_time, c=np.zeros(instance.n_edges))
    out = np.zeros(instance.n_jobs)
    np.maximum.at(out, instance.task_job, lp)
    return out


def metrics(instance: GPUDagInstance, solution: GPUDagSolution) -> dict[str, float]:
    """``makespan``, ``slr``, ``speedup``, ``efficiency``, ``mean_jct``, ``p95_jct``."""
    end = solution.end(instance)
    makespan = float(end.max()) if end.size else 0.0
    job_end = np.full(instance.n_jobs, 0.0)
    np.maximum.at(job_end, instance.task_job, end)
    jct = job_end - instance.job_arrival
    if instance.n_jobs == 1:
        cp = min_critical_path(instance)
        slr = makespan / cp if cp > 0 else float("nan")
    else:
        cp = critical_path_per_job(instance)
        slr = float(np.mean(np.where(cp > 0, jct / np.where(cp > 0, cp, 1.0), np.nan)))
    seq = np.where(instance.dev_eligible, instance.dev_time, 0.0).sum(axis=0)
    can_all = instance.dev_eligible.all(axis=0)
    speedup = float(seq[can_all].min() / makespan) if can_all.any() and makespan > 0 else float("nan")
    return {
        "makespan": makespan,
        "slr": float(slr),
        "speedup": speedup,
        "efficiency": speedup / instance.n_devices if np.isfinite(speedup) else float("nan"),
        "mean_jct": float(jct.mean()),
        "p95_jct": float(np.percentile(jct, 95)),
    }
