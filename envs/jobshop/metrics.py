"""Job-shop metrics, computed from the instance and the solution alone."""

from __future__ import annotations

import numpy as np

from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution


def metrics(instance: JobShopInstance, solution: JobShopSolution) -> dict[str, float]:
    """Makespan, gap to the best known makespan (%), flow time and, with due dates, tardiness.

    Keys: ``makespan``, ``gap_to_bks_pct`` (NaN when no bound is known), ``gap_to_lb_pct``,
    ``mean_flow_time``, and with due dates ``total_tardiness``, ``weighted_tardiness``, ``tardy_jobs``.
    All times are in the instance's time units.
    """
    end = solution.end(instance)
    makespan = float(end.max()) if end.size else 0.0
    job_end = end[instance.job_ptr[1:] - 1].astype(np.float64)
    out = {
        "makespan": makespan,
        "gap_to_bks_pct": (
            100.0 * (makespan - instance.upper_bound) / instance.upper_bound
            if instance.upper_bound else float("nan")
        ),
        "gap_to_lb_pct": (
            100.0 * (makespan - instance.lower_bound) / instance.lower_bound
            if instance.lower_bound else float("nan")
        ),
        "mean_flow_time": float(np.mean(job_end - instance.release)),
    }
    if instance.due is not None:
        tard = np.maximum(0.0, job_end - instance.due)
        w = instance.weight if instance.weight is not None else np.ones(instance.n_jobs)
        out["total_tardiness"] = float(tard.sum())
        out["weighted_tardiness"] = float((w * tard).sum())
        out["tardy_jobs"] = float((tard > 0).sum())
    return out
