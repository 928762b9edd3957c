"""Randomised dispatching rules, best of k samples (job-shop), as a solver.

A randomised rule builds ``samples`` non-delay schedules (the scheme of the deterministic rules in
:mod:`schedgym.baselines.dispatching`: the candidates are the operations that can start at the
earliest possible start time t*) and keeps the one with the smallest makespan. The first schedule is
the deterministic rule itself (bit-identical to :func:`~schedgym.baselines.dispatching.solve_with_rule`),
the others choose among the candidates with noise:

``window`` (Corsini et al.'s randomisation; the published "randomised MOR x128")
    At each decision time t* the active jobs are ordered by priority (ties: see ``tie_break``)
    and the order is perturbed: the next job of the new order is drawn uniformly from the first
    ``window`` jobs of the priority order not drawn yet (a sliding window). Each machine gets the
    first of its candidates in that order. This is ``PDR(..., randomized=True)`` with ``top=3`` in
    ``baselines/pdrs.py`` of the self-labeling repository (Corsini, Porrello, Calderara & Dell'Amico,
    "Self-Labeling the Job Shop Scheduling Problem", NeurIPS 2024), whose ``solve_instance`` also runs
    the deterministic rule first and ``beta - 1`` randomised ones. It is not a softmax: that
    repository's probability-proportional variant is commented out as worse. Its priorities carry a
    tie bonus that grows with every evaluation, so equal priorities go to the job dispatched most
    recently (``tie_break="recent"``); with MOR, whose priorities tie often, this matters: on Taillard
    15x15 / 20x20 it gives 12.1 / 14.7 % (mean of 5 seeds) against 13.4 / 15.6 % with ties to the
    lower job index.
``softmax``
    The candidate is drawn with probability proportional to ``exp(z / temperature)`` where z is the
    rule's priority rescaled to [0, 1] over the active jobs at that decision (min-max), so one
    temperature means the same across instance sizes and rules. Small temperatures approach the
    deterministic rule, large ones uniform choice among the candidates.
``ties``
    The deterministic rule with ties between equally ranked candidates broken uniformly at random.

Rules are those of :data:`~schedgym.baselines.dispatching.RULES`; MOR ("most operations remaining"
of Corsini et al.'s ``pdrs.py``: the job's unscheduled operations, the next one included) is our
``mopnr``. Times are in the instance's time units; wall times in seconds.

Classic job-shop instances (one machine per operation) run all samples of a batch in lock-step with
numpy arrays of shape (batch, jobs), so 128 samples of a 15x15 instance take a fraction of a second;
flexible instances run one :class:`~schedgym.envs.jobshop.state.JobShopState` episode per sample
(the machine of the chosen job is the one that completes it earliest, as for the deterministic rules).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from schedgym.baselines.base import check_time_limit
from schedgym.baselines.dispatching import RULES, _best_machine, solve_with_rule
from schedgym.envs.core.errors import UnknownNameError
from schedgym.envs.jobshop.state import JobShopState
from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution

NOISES = ("window", "softmax", "ties")
TIE_BREAKS = ("index", "recent")
_BIG = np.iinfo(np.int64).max


# ------------------------------------------------------------------------------------------------
# choosing among the candidates
# ------------------------------------------------------------------------------------------------

def window_ranks(prio: np.ndarray, active: np.ndarray, window: int, rng: np.random.Generator,
                 recency: np.ndarray | None = None) -> np.ndarray:
    """(R, J) position of every job in a sliding-window perturbation of the priority order.

    Rows are independent decisions. Active jobs are sorted by priority (highest first; ties to the
    lower job index, or with ``recency`` (R, J) to the larger recency first); position i of the new order is drawn uniformly among the jobs not placed yet
    among the first ``min(i + window, n_active)`` of the sorted order. Inactive jobs get position J.
    The window is kept as ``window`` slots of sorted positions, so one step costs O(R * window).
    """
    n_rows, n_jobs = prio.shape
    key = np.where(active, -prio, np.inf)
    if recency is None:
        order = np.argsort(key, axis=1, kind="stable")
    else:
        order = np.lexsort((-recency, key), axis=1)
    n_active = active.sum(axis=1)
    rows = np.arange(n_rows)
    slots = np.broadcast_to(np.arange(window), (n_rows, window)).copy()  # sorted positions in the window
    slots[slots >= n_active[:, None]] = n_jobs  # n_jobs marks an empty slot
    pos_rank = np.full((n_rows, n_jobs + 1), n_jobs, dtype=np.int64)  # by sorted position (+ a sink)
    for i in range(int(n_active.max(initial=0))):
        keys = np.where(slots < n_jobs, rng.random((n_rows, window)), -1.0)
        s = keys.argmax(axis=1)
        picked = slots[rows, s]
        pos_rank[rows, picked] = np.where(picked < n_jobs, i, n_jobs)
        refill = i + window
        slots[rows, s] = np.where(refill < n_active, refill, n_jobs)
    ranks = np.empty((n_rows, n_jobs), dtype=np.int64)
    np.put_along_axis(ranks, order, pos_rank[:, :n_jobs], axis=1)
    return ranks


def softmax_pick(prio: np.ndarray, active: np.ndarray, cand: np.ndarray, temperature: float,
                 rng: np.random.Generator) -> np.ndarray:
    """(R,) job drawn per row among ``cand`` with probability proportional to exp(z / temperature),
    z the priority min-max scaled to [0, 1] over the row's active jobs (Gumbel-max sampling)."""
    lo = np.where(active, prio, np.inf).min(axis=1, keepdims=True)
    hi = np.where(active, prio, -np.inf).max(axis=1, keepdims=True)
    span = hi - lo
    z = np.where(span > 0, (prio - lo) / np.where(span > 0, span, 1.0), 0.0)
    gumbel = -np.log(-np.log(rng.random(prio.shape) * (1 - 1e-12) + 1e-12))
    return np.where(cand, z / temperature + gumbel, -np.inf).argmax(axis=1)


def ties_pick(prio: np.ndarray, cand: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(R,) job drawn uniformly per row among the candidates of highest priority."""
    score = np.where(cand, prio, -np.inf)
    best = score == score.max(axis=1, keepdims=True)
    return np.where(best & cand, rng.random(prio.shape), -1.0).argmax(axis=1)


# ------------------------------------------------------------------------------------------------
# batched priorities of the classic job-shop (the same numbers as dispatching.RULES)
# ------------------------------------------------------------------------------------------------

class _Static:
    """Per-instance arrays of a classic (one machine per operation) instance."""

    def __init__(self, inst: JobShopInstance):
        self.inst = inst
        self.n_jobs, self.n_machines, self.n_ops = inst.n_jobs, inst.n_machines, inst.n_ops
        self.job_first = inst.job_ptr[:-1].astype(np.int64)
        self.job_end = inst.job_ptr[1:].astype(np.int64)
        self.op_machine = inst.op_machine.astype(np.int64)
        self.dur = inst.proc[np.arange(self.n_ops), self.op_machine].astype(np.int64)
        self.cum = np.concatenate([[0], np.cumsum(inst.min_proc.astype(np.int64))]).astype(np.int64)
        self.release = inst.release.astype(np.int64)
        if inst.due is not None:
            self.edd = -inst.due.astype(np.float64)
        else:
            total = self.cum[self.job_end] - self.cum[self.job_first]
            self.edd = -(self.release + total).astype(np.float64)


def _batched_priority(rule: str, st: _Static, next_op: np.ndarray, job_ready: np.ndarray) -> np.ndarray:
    """(R, J) float64 priority of each job (higher first), equal to ``RULES[rule]`` on classic instances."""
    active = next_op < st.job_end
    nxt = np.minimum(next_op, st.n_ops - 1)
    if rule in ("spt", "lpt"):
        p = st.dur[nxt].astype(np.float64)
        return -p if rule == "spt" else p
    rw = st.cum[st.job_end] - st.cum[next_op]
    if rule == "mwkr":
        return rw.astype(np.float64)
    if rule == "lwkr":
        return (-rw).astype(np.float64)
    if rule == "mopnr":
        return (st.job_end - next_op).astype(np.float64)
    if rule == "fifo":
        return (-job_ready).astype(np.float64)
    if rule == "fdd_mwkr":
        fdd = st.release + st.cum[next_op + 1 * active] - st.cum[st.job_first]
        return -fdd / np.maximum(rw, 1)
    if rule == "edd":
        return np.broadcast_to(st.edd, next_op.shape)
    raise UnknownNameError("dispatching rule", rule, tuple(RULES))


# ------------------------------------------------------------------------------------------------
# the solver
# ------------------------------------------------------------------------------------------------

class RandomisedRuleSolver:
    """Best of ``samples`` non-delay schedules of a randomised dispatching rule (job-shop solver).

    Args:
        rule: a rule of :data:`~schedgym.baselines.dispatching.RULES` (``mopnr`` is MOR).
        samples: number of schedules built (>= 1); the first is the deterministic rule.
        noise: ``window`` (Corsini et al.), ``softmax`` or ``ties`` (see the module docstring).
        window: size of the sliding window of the ``window`` noise (>= 1; 3 in Corsini et al.;
            1 with ``tie_break="index"`` gives the deterministic rule).
        tie_break: order of equal priorities in the ``window`` noise's sorted order: ``index``
            (lower job index first, as the deterministic rules) or ``recent`` (the job dispatched
            most recently first, initially the highest index: the tie-breaking of Corsini et al.'s
            ``pdrs.py``, whose tie bonus grows with every priority evaluation). The first,
            deterministic schedule always breaks ties by index.
        temperature: softmax temperature on priorities scaled to [0, 1] (> 0).
        seed: base seed; each episode reseeds from (seed, episode seed) via :meth:`reset_seed`.
        batch_size: schedules built in lock-step per batch (classic instances).
        name: label (default ``random_<rule>_<noise>[_recent]_x<samples>``).

    ``solve`` returns the best schedule with ``status="feasible"``, ``bound=None`` and ``meta`` holding
    ``samples`` (schedules built), ``wall_time_s``, ``makespan``, ``deterministic_makespan``, ``rule``,
    ``noise``, ``tie_break`` and ``scheme``.
    """

    domains = ("jobshop",)

    def __init__(self, rule: str = "mopnr", samples: int = 128, noise: str = "window", window: int = 3,
                 temperature: float = 0.1, seed: int = 0, batch_size: int = 128, name: str | None = None,
                 tie_break: str = "index"):
        if rule not in RULES:
            raise UnknownNameError("dispatching rule", rule, tuple(RULES))
        if noise not in NOISES:
            raise UnknownNameError("rule noise", noise, NOISES)
        if tie_break not in TIE_BREAKS:
            raise UnknownNameError("tie_break", tie_break, TIE_BREAKS)
        _check_int("samples", samples, 1)
        _check_int("window", window, 1)
        _check_int("batch_size", batch_size, 1)
        if isinstance(temperature, bool) or not float(temperature) > 0 or not math.isfinite(float(temperature)):
            raise ValueError(f"temperature={temperature!r} is out of range; it must be a finite number > 0")
        self.rule, self.noise, self.tie_break = rule, noise, tie_break
        self.samples, self.window, self.batch_size = int(samples), int(window), int(batch_size)
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.scheme = "non_delay"
        recent = "_recent" if noise == "window" and tie_break == "recent" else ""
        self.name = name or f"random_{rule}_{noise}{recent}_x{self.samples}"
        self.rng = np.random.default_rng([self.seed])

    def reset_seed(self, episode_seed: int) -> None:
        """Reseed from (constructor seed, episode seed): the same result on any runner and order."""
        self.rng = np.random.default_rng([self.seed, int(episode_seed)])

    def solve(self, instance: JobShopInstance, time_limit_s: float | None = None) -> JobShopSolution:
        """Best of ``samples`` schedules; ``time_limit_s`` (seconds, > 0) stops sampling after the
        batch during which it ran out (the deterministic schedule is always built, and a batch that
        has started completes), as the learned ``SampledPolicySolver`` does."""
        limit = check_time_limit(time_limit_s, type(self).__name__)
        t0 = time.perf_counter()
        det = solve_with_rule(instance, self.rule)
        best_start, best_machine = det.start, det.machine
        det_mk = best_mk = det.makespan(instance)
        done = 1
        static = None if instance.is_flexible else _Static(instance)
        while done < self.samples and (limit is None or time.perf_counter() - t0 < limit):
            k = min(self.batch_size, self.samples - done)
            if static is None:
                start, machine, mk = self._flexible_batch(instance, k)
            else:
                start, machine, mk = self._classic_batch(static, k)
            i = int(np.argmin(mk))
            if mk[i] < best_mk:
                best_start, best_machine, best_mk = start[i], machine[i], int(mk[i])
            done += k
        sol = JobShopSolution(start=np.asarray(best_start, dtype=np.int64).copy(),
                              machine=np.asarray(best_machine, dtype=np.int64).copy(), status="feasible")
        sol.meta.update(scheme=self.scheme, policy=self.name, rule=self.rule, noise=self.noise,
                        tie_break=self.tie_break, samples=done, makespan=int(best_mk), deterministic_makespan=int(det_mk),
                        wall_time_s=time.perf_counter() - t0)
        return sol

    # -- classic instances: k schedules in lock-step ---------------------------------------------
    def _classic_batch(self, st: _Static, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k, O) start times, (k, O) machines and (k,) makespans of k randomised schedules."""
        rows = np.arange(k)
        next_op = np.broadcast_to(st.job_first, (k, st.n_jobs)).copy()
        job_ready = np.broadcast_to(st.release, (k, st.n_jobs)).copy()
        mach_ready = np.zeros((k, st.n_machines), dtype=np.int64)
        start = np.full((k, st.n_ops), -1, dtype=np.int64)
        last_t = np.full(k, -1, dtype=np.int64)
        last_job = np.zeros(k, dtype=np.int64)
        recency = np.broadcast_to(np.arange(st.n_jobs), (k, st.n_jobs)).copy() if self.tie_break == "recent" else None
        ranks = np.zeros((k, st.n_jobs), dtype=np.int64)
        for step in range(st.n_ops):
            active = next_op < st.job_end
            nxt = np.minimum(next_op, st.n_ops - 1)
            mach = st.op_machine[nxt]
            est = np.where(active, np.maximum(job_ready, np.take_along_axis(mach_ready, mach, 1)), _BIG)
            t_star = est.min(axis=1)
            cand = est == t_star[:, None]
            prio = _batched_priority(self.rule, st, next_op, job_ready)
            if self.noise == "window":
                # a new decision time: a new perturbed order (Corsini et al.); also when the job just
                # dispatched is a candidate again (a zero duration), since its priority changed
                new = (t_star != last_t) | cand[rows, last_job]
                if new.any():
                    ranks[new] = window_ranks(prio[new], active[new], self.window, self.rng,
                                              None if recency is None else recency[new])
                    last_t[new] = t_star[new]
                job = np.where(cand, ranks, _BIG).argmin(axis=1)
            elif self.noise == "softmax":
                job = softmax_pick(prio, active, cand, self.temperature, self.rng)
            else:
                job = ties_pick(prio, cand, self.rng)
            last_job = job
            if recency is not None:
                recency[rows, job] = st.n_jobs + step
            op = next_op[rows, job]
            end = t_star + st.dur[op]
            start[rows, op] = t_star
            job_ready[rows, job] = end
            mach_ready[rows, st.op_machine[op]] = np.maximum(mach_ready[rows, st.op_machine[op]], end)
            next_op[rows, job] += 1
        makespan = (start + st.dur).max(axis=1) if st.n_ops else np.zeros(k, dtype=np.int64)
        return start, np.broadcast_to(st.op_machine, (k, st.n_ops)), makespan

    # -- flexible instances: one JobShopState per schedule ---------------------------------------
    def _flexible_batch(self, inst: JobShopInstance, k: int) -> tuple[list, list, np.ndarray]:
        starts, machines, mks = [], [], []
        for _ in range(k):
            sol = self._flexible_episode(inst)
            starts.append(sol.start)
            machines.append(sol.machine)
            mks.append(sol.makespan(inst))
        return starts, machines, np.asarray(mks, dtype=np.int64)

    def _flexible_episode(self, inst: JobShopInstance) -> JobShopSolution:
        """One randomised non-delay schedule on the state core (flexible instances)."""
        state = JobShopState(inst, scheme="non_delay")
        last_t, last_j, ranks = -1, -1, np.zeros((1, inst.n_jobs), dtype=np.int64)
        recency = np.arange(inst.n_jobs)[None, :].copy() if self.tie_break == "recent" else None
        while not state.done:
            mask = state.pair_mask()
            pair_prio = RULES[self.rule](state)
            score = np.where(mask, pair_prio, -np.inf)
            # a job's priority: its best eligible machine (every active job, not only the candidates)
            prio = np.where(state.eligible[state.next_op_clipped()], pair_prio, -np.inf).max(axis=1)[None, :]
            cand = mask.any(axis=1)[None, :]
            active = state.active_jobs()[None, :]
            if self.noise == "window":
                t_star = state.earliest_start()
                if t_star != last_t or (last_j >= 0 and cand[0, last_j]):
                    ranks, last_t = window_ranks(prio, active, self.window, self.rng, recency), t_star
                j = int(np.where(cand, ranks, _BIG).argmin())
            elif self.noise == "softmax":
                j = int(softmax_pick(prio, active, cand, self.temperature, self.rng)[0])
            else:
                j = int(ties_pick(score.max(axis=1)[None, :], cand, self.rng)[0])
            state.schedule(j, _best_machine(state, j, score[j] == score[j].max()))
            last_j = j
            if recency is not None:
                recency[0, j] = inst.n_jobs + state.n_scheduled
        return state.solution()


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}={value!r} is out of range; it must be an integer >= {low}")


__all__ = ["NOISES", "TIE_BREAKS", "RandomisedRuleSolver", "softmax_pick", "ties_pick", "window_ranks"]
