"""CP-SAT large-neighbourhood search for VM rescheduling, time-boxed.

1. Evacuate (VMs on DISABLED/OUTAGE PMs, best joint-greedy move each), then run the filter-and-score
   greedy (:mod:`schedgym.baselines.vm_greedy`) to a local optimum: the incumbent placement.
2. Repeat until the time limit: pick a neighbourhood of ``k`` ACTIVE PMs (half drawn with
   probability proportional to their squared fragment cores, half uniformly), re-solve the placement
   of the movable VMs on them with CP-SAT (:func:`schedgym.baselines.vm_cpsat.solve_placement`,
   warm-started from the incumbent, lexicographic objective: fragment cores, then migrations counted
   against the snapshot, within the migrations left), and accept the result if it is
   lexicographically better on the neighbourhood and the whole placement still has a feasible
   migration order (:func:`~schedgym.baselines.vm_cpsat.sequence_plan`). ``k`` grows when a
   sub-problem is solved to optimality and shrinks when one times out without improving.
3. Return the plan of the best placement (each moved VM migrates once).

Deterministic for a given seed up to the time limit (CP-SAT runs single-threaded per sub-problem).
"""

from __future__ import annotations

import time

import numpy as np

from schedgym.baselines.base import check_time_limit
from schedgym.baselines.vm_common import plan_limit, run_rule
from schedgym.baselines.vm_cpsat import evacuate, frag_cores, moved_mask, sequence_plan, solve_placement
from schedgym.baselines.vm_greedy import VMGreedyPolicy
from schedgym.envs.vmsched.types import VMInstance, VMSolution


class VMCPSATLNSSolver:
    """Time-boxed CP-SAT LNS (see the module docstring).

    Args:
        time_limit_s: seconds per instance, > 0; None takes the caller's (``solve(..., time_limit_s)``).
        k: initial neighbourhood size (PMs); ``k_min``/``k_max`` bound its adaptation.
        sub_time_s: CP-SAT time limit per neighbourhood, seconds.
        seed: random seed of the neighbourhood choice.
        mnl: a tighter migration number limit than the instance's (None: the instance's; a larger
            value does not raise it, see :func:`~schedgym.baselines.vm_common.plan_limit`).
        name: policy name in result tables.
        stop_at_frag: stop as soon as the incumbent has at most this many fragment cores (None:
            run to the time limit; the full model passes its lower bound ``F mod g``).
    """

    domains = ("vmsched",)

    def __init__(self, time_limit_s: float | None = None, k: int = 8, k_min: int = 3, k_max: int = 40,
                 sub_time_s: float = 0.3, seed: int = 0, mnl: int | None = None, name: str = "vm_cpsat_lns",
                 stop_at_frag: int | None = None):
        self.stop_at_frag = stop_at_frag
        self.time_limit_s = check_time_limit(time_limit_s, name)
        self.k, self.k_min, self.k_max = int(k), int(k_min), int(k_max)
        self.sub_time_s = float(sub_time_s)
        self.seed = int(seed)
        self.mnl = mnl
        self.name = name

    def reset_seed(self, seed: int) -> None:
        self.seed = int(seed)

    def solve(self, instance: VMInstance, time_limit_s: float | None = None) -> VMSolution:
        """The best plan found within the time box: the constructor's ``time_limit_s``, else the
        caller's, else 5 s (seconds, > 0).

        Raises:
            ValueError: a time limit <= 0, NaN or not a number (the constructor's or the caller's).
        """
        t0 = time.perf_counter()
        given = check_time_limit(time_limit_s, self.name)
        limit = self.time_limit_s if self.time_limit_s is not None else (5.0 if given is None else given)
        deadline = t0 + float(limit)
        inst = instance
        mnl = plan_limit(inst, self.mnl)
        rng = np.random.default_rng(self.seed)
        start = evacuate(inst, mnl)
        greedy = VMGreedyPolicy()
        st = start.clone()
        while st.migrations_left > 0:
            mv = greedy.rule(st)
            if mv is None:
                break
            st.move(*mv)
        pm, numa = st.placement_of()
        best_state, stuck = sequence_plan(inst, pm, numa, mnl=mnl)
        if stuck:  # keep the greedy's own order (it may move a VM twice)
            best_state = st
        pm, numa = best_state.placement_of()
        g = int(inst.granularity)
        k = self.k
        stats = {"neighbourhoods": 0, "accepted": 0, "optimal": 0, "rejected_order": 0}
        active = np.flatnonzero(inst.pm_active)
        stop_at = -1 if self.stop_at_frag is None else int(self.stop_at_frag)
        while time.perf_counter() < deadline - 0.02 and len(active) and frag_cores(inst, pm, numa) > stop_at:
            used, _, _ = inst.usage(pm, numa)
            frag = ((inst.pm_cpu - used) % g).sum(axis=1) * inst.pm_active
            kk = min(k, len(active))
            n_hot = max(1, kk // 2)
            w = frag[active].astype(np.float64) ** 2
            hot = rng.choice(active, size=min(n_hot, int((w > 0).sum())), replace=False,
                             p=w / w.sum()) if w.sum() > 0 else np.zeros(0, dtype=np.int64)
            rest = np.setdiff1d(active, hot)
            cold = rng.choice(rest, size=min(kk - len(hot), len(rest)), replace=False)
            pms = np.concatenate([hot, cold]).astype(np.int64)
            in_n = np.zeros(inst.n_pms, dtype=bool)
            in_n[pms] = True
            moved = moved_mask(inst, pm, numa)
            model_vms = in_n[pm] & inst.vm_movable
            budget = mnl - int((moved & ~model_vms).sum())
            old_frag = int(frag[pms].sum())
            old_moved = int((moved & model_vms).sum())
            left = deadline - time.perf_counter()
            if left <= 0.02:
                break
            res = solve_placement(inst, pm, numa, pms, budget, min(self.sub_time_s, left), mnl,
                                  seed=int(rng.integers(1 << 30)))
            stats["neighbourhoods"] += 1
            if res is None:
                k = max(self.k_min, k - 1)
                continue
            better = (res.frag, res.moved) < (old_frag, old_moved)
            if res.status == "optimal" and not better and len(set(pms.tolist())) == len(active):
                break  # the neighbourhood was the whole cluster: the incumbent is optimal, stop early
            if res.status == "optimal":
                stats["optimal"] += 1
                k = min(self.k_max, k + 1)
            elif not better:
                k = max(self.k_min, k - 1)
            if not better:
                continue
            pm2, numa2 = pm.copy(), numa.copy()
            for v, p in res.pm.items():
                pm2[v], numa2[v] = p, res.numa[v]
            cand, stuck = sequence_plan(inst, pm2, numa2, mnl=mnl)
            if stuck:
                stats["rejected_order"] += 1
                continue
            best_state, pm, numa = cand, pm2, numa2
            stats["accepted"] += 1
        sol = best_state.solution(status="feasible")
        sol.wall_time_s = time.perf_counter() - t0
        sol.meta.update(solver="cp-sat lns", final_k=k, frag_cores=frag_cores(inst, pm, numa), **stats)
        return sol


__all__ = ["VMCPSATLNSSolver", "run_rule"]
