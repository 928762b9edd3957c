"""Per-candidate context features of the job-shop env (``JobShop-v0`` with ``candidate_features=True``).

The disjunctive graph of the observation links an unscheduled operation to nothing on its machine,
so a GNN cannot tell which candidates compete for one machine or how much work is left on it, the
quantities behind the machine-aware rules (and the context features of the self-labeling paper's
SPN decoder). :func:`candidate_features` computes them for each action (the next operation ``o`` of
job ``j`` on machine ``m``); rows of invalid actions are zero. Times are divided by the env's
``time_scale`` (max processing time * max operations per job) and measured from the decision time
``now``; counts are divided by the number of jobs (J) or machines (M):

0. p_o / max processing time; 1. (est_o - now) / ts with est_o = max(job ready, machine ready);
2. (est_o + p_o - now) / ts; 3. remaining operations of j (o included) / M; 4. unscheduled work on m
(o included) / ts; 5. unscheduled operations on m / J; 6. candidates on m / J; 7. remaining work of
j / the largest among the candidates; 8. unscheduled work on m / the largest over the machines;
9. p_o / the shortest candidate processing time on m - 1 (clipped at 4); 10. unscheduled work on the
machine of j's operation after o / ts (0 for a last operation); 11. (ready time of that machine -
now) / ts, at least 0.
"""

from __future__ import annotations

import numpy as np

N_CANDIDATE_FEATURES = 12


def candidate_features(state, inst, mask: np.ndarray, n_actions: int, time_scale: float, now: int) -> np.ndarray:
    """(n_actions, N_CANDIDATE_FEATURES) float32 features of the job actions (module docstring).

    ``state`` is the env's :class:`~schedgym.envs.jobshop.state.JobShopState`, ``inst`` its
    (non-flexible) instance, ``mask`` the (n_actions,) action mask, ``time_scale`` in time units.
    """
    out = np.zeros((n_actions, N_CANDIDATE_FEATURES), dtype=np.float32)
    J, M = state.n_jobs, state.n_machines
    valid = np.asarray(mask[:J], dtype=bool)
    if state.done or not valid.any():
        return out
    ts = float(time_scale)
    jobs = np.nonzero(valid)[0]
    o = state.next_op[jobs]
    mach = inst.op_machine[o]
    p = state.min_proc[o].astype(np.float64)
    unsched = state.start < 0
    om = inst.op_machine
    mwork = np.bincount(om[unsched], weights=state.min_proc[unsched], minlength=M)
    mcount = np.bincount(om[unsched], minlength=M).astype(np.float64)
    est = np.maximum(state.job_ready[jobs], state.mach_ready[mach]).astype(np.float64)
    rem_work = (state.cum[state.job_end[jobs]] - state.cum[o]).astype(np.float64)
    rem_ops = (state.job_end[jobs] - o).astype(np.float64)
    cand_on = np.bincount(mach, minlength=M).astype(np.float64)
    pmin_on = np.full(M, np.inf)
    np.minimum.at(pmin_on, mach, p)
    has_next = o + 1 < state.job_end[jobs]
    nxt = np.where(has_next, o + 1, 0)
    nmach = om[nxt]
    feats = np.stack([
        p / max(1, inst.max_proc),
        (est - now) / ts,
        (est + p - now) / ts,
        rem_ops / max(1, M),
        mwork[mach] / ts,
        mcount[mach] / max(1, J),
        cand_on[mach] / max(1, J),
        rem_work / max(1.0, rem_work.max()),
        mwork[mach] / max(1.0, mwork.max()),
        np.minimum(p / np.maximum(1.0, pmin_on[mach]) - 1.0, 4.0),
        np.where(has_next, mwork[nmach] / ts, 0.0),
        np.where(has_next, np.maximum(state.mach_ready[nmach] - now, 0) / ts, 0.0),
    ], axis=-1)
    out[jobs] = feats
    return out
