"""Online dispatching policies for ``schedgym/GPUDag-v0`` (static or online mode).

Each decision picks a job by the rule, then that job's candidate task of highest upward rank, then
the idle device on which it finishes earliest (ties: lowest index). The rules never wait. They run in ``GPUDag-v0``'s ``pair`` and ``dispatch`` action modes (same
schedule), not in ``task`` mode.

Look-ahead variants (``dag_<rule>_la``, ``lookahead=True``) may wait for a busy device: they start
only a *no-regret* task, one whose earliest finish over all its eligible devices (a busy device
counted from when it frees, ``max(now, busy_until, data arrival) + time``) is reached on an idle
device, the first in the rule's order, on that device; when no ready task is no-regret they wait for
the next event. They run in ``pair`` mode (with its wait action) and in ``dispatch_la`` mode, where
the env offers only the no-regret tasks and waits by itself (same schedule).

Randomised variants (``noise`` > 0 or ``explore`` > 0) serve as label candidates for self-labeling
(``conf/experiment/sls_gpudag_online.yaml``): ``noise`` multiplies each job's key by
``exp(noise * z_j)``, ``z_j`` standard normal drawn per job and episode (jobs with close keys swap);
``explore`` is the probability that a decision takes a uniformly random candidate instead of the
rule's first. With both 0 (the default) the rule is deterministic.

============  ===================================================================================
dag_fifo      the job that arrived first
dag_sjf       shortest job first by critical path: the job whose remaining critical path (the
              largest upward rank among its unassigned tasks, mean times) is smallest
dag_fair      fair share: the job holding the fewest devices now (running tasks), then arrival
dag_rank      no job rule: the candidate task of highest upward rank overall (online HEFT-like)
dag_srpt      shortest remaining processing time: the job with the least remaining work (sum of the
              mean times of its unassigned tasks), then the lowest job index
============  ===================================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.envs.core.errors import UnknownNameError
from schedgym.envs.gpudag.ranks import upward_rank

RULES = ("fifo", "sjf", "fair", "rank", "srpt")


class DagDispatchPolicy:
    """A job-level dispatching rule (see the module docstring) as a step-wise policy.

    Args:
        rule: ``fifo``, ``sjf``, ``fair``, ``rank`` or ``srpt``.
        name: display name (default ``dag_<rule>``, ``dag_<rule>_la`` with ``lookahead``).
        lookahead: wait for a busy device where the task would finish earlier (module docstring).
        noise: log-normal job-key noise (standard deviation of the log multiplier; module docstring).
        explore: probability of a uniformly random candidate per decision.
        seed: seed of the randomised variants' generator (drawn on across episodes).
    """

    domains = ("gpudag",)

    def __init__(self, rule: str = "fifo", name: str | None = None, lookahead: bool = False,
                 noise: float = 0.0, explore: float = 0.0, seed: int = 0):
        if rule not in RULES:
            raise UnknownNameError("GPU-DAG dispatching rule", rule, RULES)
        if noise < 0 or not 0.0 <= explore <= 1.0:
            raise ValueError(f"DagDispatchPolicy: noise must be >= 0 and explore in [0, 1], got {noise}, {explore}")
        self.noise, self.explore = float(noise), float(explore)
        self._rng = np.random.default_rng(seed)
        self._job_noise: np.ndarray | None = None
        self.rule = rule
        self.lookahead = bool(lookahead)
        self.name = name or f"dag_{rule}" + ("_la" if lookahead else "")
        self.env: Any = None

    def reset(self, env) -> None:
        self.env = env.unwrapped
        mode = getattr(self.env, "action_mode", "pair")
        if mode == "task":
            raise ValueError(f"{self.name} dispatches in event time: it needs GPUDag-v0 with action_mode 'pair' or "
                             "'dispatch' (or 'dispatch_la'), not 'task'")
        if self.lookahead and mode == "dispatch":
            raise ValueError(f"{self.name} may wait: it needs GPUDag-v0 with action_mode 'pair' or 'dispatch_la', "
                             "not 'dispatch' (no wait action)")
        if mode == "dispatch_la" and not self.lookahead:
            raise ValueError(f"{self.name} never waits: in GPUDag-v0's 'dispatch_la' mode the env waits for "
                             f"no-regret tasks; use {self.name}_la (lookahead=True) or action_mode 'dispatch'")
        self.rank = upward_rank(self.env.instance)
        n_jobs = self.env.instance.n_jobs
        self._job_noise = np.exp(self.noise * self._rng.standard_normal(n_jobs)) if self.noise > 0 else None

    def _key(self, cand: np.ndarray) -> np.ndarray:
        """The rule's job key of each task of ``cand`` (lower first)."""
        st = self.env.state
        inst = st.instance
        jobs = inst.task_job[cand]
        if self.rule == "rank":
            key = np.zeros(len(cand))
        elif self.rule == "fifo":
            key = inst.job_arrival[jobs]
        elif self.rule == "sjf":
            unassigned = st.device < 0
            rem = np.zeros(inst.n_jobs)
            np.maximum.at(rem, inst.task_job[unassigned], self.rank[unassigned])
            key = rem[jobs]
        elif self.rule == "srpt":
            unassigned = st.device < 0
            rem = np.bincount(inst.task_job[unassigned], weights=inst.mean_time[unassigned], minlength=inst.n_jobs)
            key = rem[jobs]
        else:  # fair share
            running = (st.device >= 0) & (st.end > st.now)
            held = np.bincount(inst.task_job[running], minlength=inst.n_jobs)
            key = held[jobs] + inst.job_arrival[jobs] / (inst.job_arrival.max() + 1.0)
        if self._job_noise is not None:
            key = key * self._job_noise[jobs]
        return key

    def _order(self, cand: np.ndarray) -> np.ndarray:
        """``cand`` sorted by the rule: job key, then (except ``rank``) job, then upward rank, then id."""
        jobs = self.env.state.instance.task_job[cand]
        if self.explore > 0 and len(cand) > 1 and self._rng.random() < self.explore:
            return self._rng.permutation(cand)
        if self.rule == "rank":  # highest upward rank overall, not grouped by job
            return cand[np.lexsort((cand, jobs, -self.rank[cand]))]
        return cand[np.lexsort((cand, -self.rank[cand], jobs, self._key(cand)))]

    def choose(self) -> tuple[int, int] | None:
        """(task, device) the rule picks in the env's current state; None: wait (look-ahead only)."""
        st = self.env.state
        pm = st.pair_mask()
        if self.lookahead:
            return self._choose_lookahead(pm)
        cand = np.flatnonzero(pm.any(axis=1))
        t = int(self._order(cand)[0])
        fin = np.where(pm[t], st.finish_times(t), np.inf)
        return t, int(np.argmin(fin))

    def _choose_lookahead(self, pm: np.ndarray) -> tuple[int, int] | None:
        st = self.env.state
        cand = np.flatnonzero(pm.any(axis=1) & st.no_regret_mask())
        if len(cand) == 0 and st.can_wait():
            return None
        if len(cand) == 0:  # nothing left to wait for (never happens: every device is then idle)
            cand = np.flatnonzero(pm.any(axis=1))
        t = int(self._order(cand)[0])
        fin = np.where(pm[t], st.finish_times(t), np.inf)
        return t, int(np.argmin(fin))

    def act(self, obs: Any, info: dict) -> int:
        choice = self.choose()
        mode = getattr(self.env, "action_mode", "pair")
        if choice is None:
            return int(self.env.wait_action)
        t, d = choice
        if mode in ("dispatch", "dispatch_la"):
            return t  # the env places it on the same earliest-finish idle device
        return int(self.env.encode_action(t, d))
