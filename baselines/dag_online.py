"""Online dispatching policies for ``schedgym/GPUDag-v0`` (static or online mode).

Each decision picks a job by the rule, then that job's candidate task of highest upward rank, then
the idle device on which it finishes earliest (ties: lowest index). The rules never wait. They run in ``GPUDag-v0``'s ``pair`` and ``dispatch`` action modes (same
schedule), not in ``task`` mode.

============  ===================================================================================
dag_fifo      the job that arrived first
dag_sjf       shortest job first by critical path: the job whose remaining critical path (the
              largest upward rank among its unassigned tasks, mean times) is smallest
dag_fair      fair share: the job holding the fewest devices now (running tasks), then arrival
dag_rank      no job rule: the candidate task of highest upward rank overall (online HEFT-like)
============  ===================================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.envs.core.errors import UnknownNameError
from schedgym.envs.gpudag.ranks import upward_rank

RULES = ("fifo", "sjf", "fair", "rank")


class DagDispatchPolicy:
    """A job-level dispatching rule (see the module docstring) as a step-wise policy.

    Args:
        rule: ``fifo``, ``sjf``, ``fair`` or ``rank``.
        name: display name (default ``dag_<rule>``).
    """

    domains = ("gpudag",)

    def __init__(self, rule: str = "fifo", name: str | None = None):
        if rule not in RULES:
            raise UnknownNameError("GPU-DAG dispatching rule", rule, RULES)
        self.rule = rule
        self.name = name or f"dag_{rule}"
        self.env: Any = None

    def reset(self, env) -> None:
        self.env = env.unwrapped
        if getattr(self.env, "action_mode", "pair") == "task":
            raise ValueError(f"{self.name} dispatches in event time: it needs GPUDag-v0 with action_mode 'pair' or "
                             "'dispatch', not 'task'")
        self.rank = upward_rank(self.env.instance)

    def choose(self) -> tuple[int, int]:
        """(task, device) the rule picks in the env's current state."""
        st = self.env.state
        inst = st.instance
        pm = st.pair_mask()
        cand = np.flatnonzero(pm.any(axis=1))
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
        else:  # fair share
            running = (st.device >= 0) & (st.end > st.now)
            held = np.bincount(inst.task_job[running], minlength=inst.n_jobs)
            key = held[jobs] + inst.job_arrival[jobs] / (inst.job_arrival.max() + 1.0)
        order = np.lexsort((cand, -self.rank[cand], jobs, key))
        t = int(cand[order[0]])
        fin = np.where(pm[t], st.finish_times(t), np.inf)
        return t, int(np.argmin(fin))

    def act(self, obs: Any, info: dict) -> int:
        t, d = self.choose()
        if getattr(self.env, "action_mode", "pair") == "dispatch":
            return t  # the env places it on the same earliest-finish idle device
        return int(self.env.encode_action(t, d))
