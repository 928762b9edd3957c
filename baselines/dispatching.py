"""Priority dispatching rules for (flexible) job-shop scheduling.

Each rule gives every candidate (job, machine) pair a priority; the highest wins, ties go to the
lowest job index, then the earliest completion, then the lowest machine index. With the
``non_delay`` scheme (the default for rules, and what the published figures use) the candidates are
the operations that can start at the earliest possible time; with ``active`` every job's next
operation is a candidate.

Rules (time in instance units, work = sum of shortest processing times):

=========  =====================================================================================
spt        shortest processing time of the next operation
lpt        longest processing time
mwkr       most work remaining in the job (next operation included)
lwkr       least work remaining
mopnr      most operations remaining (next operation included)
fifo       job that has waited longest (earliest ready time)
fdd_mwkr   smallest ratio of flow due date (release + work up to and including the next
           operation) to work remaining
edd        earliest job due date (needs due dates; without them the total-work due date
           ``release + total work`` is used)
random     uniform among candidates (seeded)
=========  =====================================================================================

For flexible instances the machine of the chosen job is the one that completes it earliest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.core.errors import UnknownNameError
from schedgym.envs.jobshop.state import JobShopState
from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution


def _next_proc(state: JobShopState) -> np.ndarray:
    """(J, M) processing time of each job's next operation on each machine."""
    return state.proc[state.next_op_clipped()].astype(np.float64)


def _job(fn: Callable[[JobShopState], np.ndarray]) -> Callable[[JobShopState], np.ndarray]:
    """Lift a per-job score (J,) to a per-pair score (J, M)."""
    return lambda s: np.repeat(fn(s).astype(np.float64)[:, None], s.n_machines, axis=1)


def _fdd(state: JobShopState) -> np.ndarray:
    inst = state.instance
    done_work = state.cum[state.next_op + 1 * (state.next_op < state.job_end)] - state.cum[state.job_first]
    return inst.release + done_work


def _edd(state: JobShopState) -> np.ndarray:
    inst = state.instance
    if inst.due is not None:
        return -inst.due.astype(np.float64)
    total = state.cum[state.job_end] - state.cum[state.job_first]
    return -(inst.release + total).astype(np.float64)


RULES: dict[str, Callable[[JobShopState], np.ndarray]] = {
    "spt": lambda s: -_next_proc(s),
    "lpt": _next_proc,
    "mwkr": _job(lambda s: s.remaining_work()),
    "lwkr": _job(lambda s: -s.remaining_work()),
    "mopnr": _job(lambda s: s.remaining_ops()),
    "fifo": _job(lambda s: -s.job_ready),
    "fdd_mwkr": _job(lambda s: -_fdd(s) / np.maximum(s.remaining_work(), 1)),
    "edd": _job(_edd),
}
RULE_NAMES = (*RULES, "random")


def choose_pair(state: JobShopState, rule: str, rng: np.random.Generator | None = None) -> tuple[int, int]:
    """The (job, machine) pair the rule dispatches next in ``state``."""
    mask = state.pair_mask()
    if rule == "random":
        rng = rng or np.random.default_rng()
        jobs = np.flatnonzero(mask.any(axis=1))
        j = int(rng.choice(jobs))
        return j, _best_machine(state, j, mask[j])
    if rule not in RULES:
        raise UnknownNameError("dispatching rule", rule, RULE_NAMES)
    score = np.where(mask, RULES[rule](state), -np.inf)
    best = score.max()
    jobs = np.flatnonzero((score == best).any(axis=1))
    j = int(jobs[0])
    return j, _best_machine(state, j, score[j] == best)


def _best_machine(state: JobShopState, job: int, allowed: np.ndarray) -> int:
    machines = np.flatnonzero(allowed)
    if len(machines) == 1:
        return int(machines[0])
    o = int(state.next_op[job])
    best, best_m = None, -1
    for m in machines:
        t, _ = state.start_time(job, int(m))
        key = (t + int(state.proc[o, m]), int(m))
        if best is None or key < best:
            best, best_m = key, int(m)
    return best_m


def solve_with_rule(
    instance: JobShopInstance, rule: str, scheme: str = "non_delay", seed: int | None = None
) -> JobShopSolution:
    """Build a complete schedule with a dispatching rule, without an environment (fast path)."""
    state = JobShopState(instance, scheme=scheme)
    rng = np.random.default_rng(seed)
    while not state.done:
        j, m = choose_pair(state, rule, rng)
        state.schedule(j, m)
    sol = state.solution()
    sol.meta.update(policy=rule)
    return sol


class DispatchingRulePolicy:
    """A dispatching rule as a :class:`~schedgym.baselines.base.Policy` on the job-shop envs.

    Args:
        rule: one of :data:`RULE_NAMES`.
        seed: seed of the ``random`` rule.
        scheme: the schedule-generation scheme the rule is meant for; evaluation scripts build the
            env with it unless told otherwise (rules default to ``non_delay``).
    """

    domains = ("jobshop",)

    def __init__(self, rule: str = "mwkr", seed: int | None = None, scheme: str = "non_delay"):
        if rule not in RULE_NAMES:
            raise UnknownNameError("dispatching rule", rule, RULE_NAMES)
        self.rule = rule
        self.name = rule
        self.scheme = scheme
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.env: Any = None

    def reset_seed(self, episode_seed: int) -> None:
        """Reseed the ``random`` rule from (constructor seed, episode seed)."""
        self.rng = np.random.default_rng([self.seed or 0, int(episode_seed)])

    def reset(self, env: gym.Env) -> None:
        self.env = env.unwrapped

    def act(self, obs: Any, info: dict) -> int:
        j, m = choose_pair(self.env.state, self.rule, self.rng)
        return int(self.env.encode_action(j, m))
