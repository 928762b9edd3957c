"""Shifting Bottleneck heuristic for the classic job-shop (makespan), with local re-optimisation.

J. Adams, E. Balas and D. Zawack, "The shifting bottleneck procedure for job shop scheduling",
Management Science 34(3):391-401, 1988 (procedure SB I).

Units: all times (processing times, heads, tails, makespan, bounds) are in the instance's integer time
units; time limits and wall times are in seconds.

The disjunctive graph holds the job arcs and the machine sequences fixed so far. Each iteration:

1. heads ``r_o`` (longest path from the source to the start of ``o``, from the job release) and tails
   ``q_o`` (longest path from the end of ``o`` to the sink) are computed by one topological pass;
2. for every machine not yet sequenced, the one-machine problem 1|r_j, q_j|C_max over its operations is
   solved exactly by Carlier's branch and bound (:mod:`schedgym.baselines.single_machine`), with the
   graph's paths between its operations passed as precedences so that the sequence cannot close a cycle;
3. the bottleneck (the machine with the largest optimum; ties: the lowest machine index) is sequenced;
4. local re-optimisation: each previously sequenced machine in turn (in decreasing order of its last
   subproblem value) has its sequence removed and re-solved with all others fixed; the new sequence is
   kept unless it makes the partial makespan longer. Full rounds are repeated while the makespan
   improves (as ABZ do), capped here at ``reopt_rounds`` rounds per iteration (3 by default).

The schedule is the semi-active one of the final graph (each operation starts at its head). The first
iteration's subproblem optima are one-machine relaxations of the whole job-shop, so their maximum (with
the longest job) is the solver's proved lower bound (``bound``); the solution is ``"optimal"`` when the
makespan reaches it.

Time limit: re-optimisation after the k-th of m machines may use the time up to ``k / m`` of
``time_limit_s`` (it stops early otherwise, ``meta["reopt_cut_by_time"]``), which keeps time for
sequencing the remaining machines exactly, and one subproblem of a sequencing step may use at most
:data:`SUBPROBLEM_TIME_SHARE` times its even share of the time left for those steps; if the limit still runs out, the remaining machines are
sequenced by Schrage's heuristic (bottleneck by Schrage value), so a complete schedule always comes back
shortly after the limit; ``meta["time_limit_hit"]`` says so. Runs whose limit binds depend on the
machine's speed; with an ample limit the result is deterministic. Carlier's search is capped at ``max_nodes``
per subproblem; ``meta["subproblems_unproved"]`` counts subproblems it did not prove optimal (0 on Taillard
15x15 to 50x20 with 10 s; 2 over ta71-ta80, cut by their time share). No randomness, fixed tie-breaking.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from schedgym.baselines.base import check_time_limit
from schedgym.baselines.single_machine import (
    DEFAULT_MAX_NODES,
    OneMachineResult,
    carlier,
    evaluate_sequence,
    schrage,
)
from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution

#: a sequencing-step subproblem may use this many times its even share of the remaining time limit
SUBPROBLEM_TIME_SHARE = 8.0


class CycleError(RuntimeError):
    """The selected machine sequences and the job arcs form a cycle (a bug: SBH never selects one)."""


@dataclass
class _Paths:
    """Heads, tails and the topological order of the disjunctive graph (times in time units)."""

    head: list[int]
    tail: list[int]
    order: list[int]
    makespan: int
    _reach: list[int] | None = field(default=None, repr=False)
    _position: list[int] | None = field(default=None, repr=False)

    @property
    def position(self) -> list[int]:
        """``position[o]``: index of ``o`` in the topological order (computed once)."""
        if self._position is None:
            pos = [0] * len(self.order)
            for k, o in enumerate(self.order):
                pos[o] = k
            self._position = pos
        return self._position


class _Graph:
    """The disjunctive graph of a classic job-shop: job arcs plus the machine sequences selected so far.

    Operations are the instance's global indices; ``p[o]`` is the processing time (time units).
    """

    def __init__(self, instance: JobShopInstance):
        n = instance.n_ops
        mach = instance.op_machine.tolist()
        self.n = n
        self.p = instance.proc[np.arange(n), instance.op_machine].tolist() if n else []
        self.release = instance.release[instance.op_job].tolist() if n else []
        self.job_succ = [-1] * n
        self.job_pred = [-1] * n
        for j in range(instance.n_jobs):
            ops = list(instance.job_ops(j))
            for a, b in zip(ops, ops[1:], strict=False):
                self.job_succ[a] = b
                self.job_pred[b] = a
        self.mach_succ = [-1] * n
        self.mach_pred = [-1] * n
        self.ops_of: list[list[int]] = [[] for _ in range(instance.n_machines)]
        for o in range(n):
            self.ops_of[mach[o]].append(o)

    def set_sequence(self, seq: list[int]) -> None:
        """Select the machine arcs of ``seq`` (operations of one machine in processing order)."""
        for k, o in enumerate(seq):
            self.mach_pred[o] = seq[k - 1] if k > 0 else -1
            self.mach_succ[o] = seq[k + 1] if k + 1 < len(seq) else -1

    def clear_machine(self, machine: int) -> None:
        """Remove the machine arcs of ``machine``."""
        for o in self.ops_of[machine]:
            self.mach_pred[o] = -1
            self.mach_succ[o] = -1

    def paths(self) -> _Paths:
        """Heads, tails and makespan by one topological pass; :class:`CycleError` on a cycle."""
        n, p = self.n, self.p
        js, ms, jp, mp = self.job_succ, self.mach_succ, self.job_pred, self.mach_pred
        indeg = [(a >= 0) + (b >= 0) for a, b in zip(jp, mp, strict=True)]
        stack = [o for o in range(n - 1, -1, -1) if not indeg[o]]
        order: list[int] = []
        head = list(self.release)
        push, pop, visit = stack.append, stack.pop, order.append
        while stack:  # Kahn's algorithm, computing the heads on the way
            o = pop()
            visit(o)
            end = head[o] + p[o]
            s = js[o]
            if s >= 0:
                if end > head[s]:
                    head[s] = end
                indeg[s] -= 1
                if not indeg[s]:
                    push(s)
            s = ms[o]
            if s >= 0:
                if end > head[s]:
                    head[s] = end
                indeg[s] -= 1
                if not indeg[s]:
                    push(s)
        if len(order) < n:
            raise CycleError(f"the selected machine sequences close a cycle through {n - len(order)} operations")
        tail = [0] * n
        for o in reversed(order):
            t = 0
            s = js[o]
            if s >= 0:
                t = p[s] + tail[s]
            s = ms[o]
            if s >= 0 and p[s] + tail[s] > t:
                t = p[s] + tail[s]
            tail[o] = t
        makespan = max([h + d for h, d in zip(head, p, strict=True)], default=0)
        return _Paths(head, tail, order, makespan)

    def reach(self, paths: _Paths) -> list[int]:
        """``reach[o]``: bit set of the operations reachable from ``o`` (``o`` included), cached on ``paths``."""
        if paths._reach is None:
            reach = [0] * self.n
            js, ms = self.job_succ, self.mach_succ
            for o in reversed(paths.order):
                bits = 1 << o
                if js[o] >= 0:
                    bits |= reach[js[o]]
                if ms[o] >= 0:
                    bits |= reach[ms[o]]
                reach[o] = bits
            paths._reach = reach
        return paths._reach


@dataclass
class _Stats:
    """Counters reported in the solution's ``meta``."""

    subproblems: int = 0
    unproved: int = 0
    nodes: int = 0
    schrage_only: int = 0
    reopt_moves: int = 0
    reopt_rounds: int = 0
    time_limit_hit: bool = False
    reopt_cut: int = 0


class ShiftingBottleneckSolver:
    """Shifting Bottleneck (Adams, Balas & Zawack 1988) for the classic job-shop
    (:class:`~schedgym.baselines.base.Solver`).

    Args:
        time_limit_s: seconds, > 0 (``None`` or ``inf``: no limit); when reached the schedule is
            completed quickly (see the module docstring).
        reopt_rounds: at most this many full re-optimisation rounds after each bottleneck is
            sequenced (>= 0; 0 is plain SBH without re-optimisation).
        max_nodes: Carlier branch-and-bound nodes per one-machine subproblem (>= 1).
    """

    domains = ("jobshop",)
    name = "sbh"

    def __init__(self, time_limit_s: float | None = 60.0, reopt_rounds: int = 3,
                 max_nodes: int = DEFAULT_MAX_NODES):
        limit = check_time_limit(time_limit_s, type(self).__name__)
        if isinstance(reopt_rounds, bool) or not isinstance(reopt_rounds, int) or reopt_rounds < 0:
            raise ValueError(f"ShiftingBottleneckSolver: reopt_rounds={reopt_rounds!r} must be an integer >= 0")
        if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
            raise ValueError(f"ShiftingBottleneckSolver: max_nodes={max_nodes!r} must be an integer >= 1")
        self.time_limit_s = math.inf if limit is None else limit
        self.reopt_rounds = reopt_rounds
        self.max_nodes = max_nodes

    # ------------------------------------------------------------------------------------------
    def solve(self, instance: JobShopInstance, time_limit_s: float | None = None) -> JobShopSolution:
        """Schedule ``instance``; ``time_limit_s`` (seconds, > 0) overrides the constructor's limit.

        Returns a :class:`JobShopSolution` (start times in time units) with status ``"feasible"`` (or
        ``"optimal"`` when the makespan meets the proved one-machine bound), ``bound`` = that bound, and
        ``meta`` with ``wall_time_s``, ``time_limit_s``, ``time_limit_hit``, ``makespan``,
        ``machine_order`` (the order machines were sequenced), ``subproblems``, ``subproblems_unproved``,
        ``carlier_nodes``, ``schrage_only`` (subproblems left to Schrage after the time limit),
        ``reopt_rounds``, ``reopt_moves`` (re-optimisations that changed a sequence) and
        ``reopt_cut_by_time`` (re-optimisation passes stopped to keep time for the remaining machines).

        Raises:
            ValueError: a flexible instance (SBH here is for the classic job-shop), or a bad time limit.
        """
        t0 = time.perf_counter()
        limit = self.time_limit_s if time_limit_s is None else check_time_limit(time_limit_s, type(self).__name__)
        if instance.is_flexible:
            raise ValueError(f"{instance.name}: ShiftingBottleneckSolver handles the classic job-shop only "
                             "(one machine per operation); this instance is flexible")
        run = _Run(instance, self.reopt_rounds, self.max_nodes, t0, limit)
        run.sequence_all_machines()
        paths = run.graph.paths()
        makespan = paths.makespan
        bound = run.bound
        status = "optimal" if bound is not None and makespan <= bound else "feasible"
        mach = instance.op_machine.astype(np.int64)
        sol = JobShopSolution(start=np.asarray(paths.head, dtype=np.int64), machine=mach, status=status,
                              bound=None if bound is None else float(bound))
        st = run.stats
        sol.meta.update(
            solver=self.name, makespan=makespan, time_limit_s=limit, time_limit_hit=st.time_limit_hit,
            machine_order=list(run.fixed), subproblems=st.subproblems, subproblems_unproved=st.unproved,
            carlier_nodes=st.nodes, schrage_only=st.schrage_only, reopt_rounds=st.reopt_rounds,
            reopt_moves=st.reopt_moves, reopt_cut_by_time=st.reopt_cut, reopt_rounds_max=self.reopt_rounds, max_nodes=self.max_nodes,
            wall_time_s=time.perf_counter() - t0,
        )
        return sol


class _Run:
    """One SBH run on one instance: the graph, the sequenced machines and the counters."""

    def __init__(self, instance: JobShopInstance, reopt_rounds: int, max_nodes: int, t0: float, limit: float):
        self.instance = instance
        self.graph = _Graph(instance)
        self.reopt_rounds = reopt_rounds
        self.max_nodes = max_nodes
        self.t0 = t0
        self.limit = limit
        self.deadline = t0 + limit if math.isfinite(limit) else None
        self.n_machines = sum(1 for ops in self.graph.ops_of if ops)
        self.fixed: list[int] = []  # machines in the order they were sequenced
        self.value: dict[int, int] = {}  # last subproblem value of each sequenced machine (time units)
        self.seq: dict[int, list[int]] = {}
        self.stats = _Stats()
        self.bound: int | None = None

    def reopt_time_left(self) -> bool:
        """Re-optimisation may go on: under a finite limit it gets the share of the limit proportional to
        the machines sequenced so far, so that sequencing the rest exactly keeps its time."""
        if self.deadline is None:
            return True
        if time.perf_counter() > self.reopt_deadline():
            self.stats.reopt_cut += 1
            return False
        return True

    def reopt_deadline(self) -> float | None:
        """The ``time.perf_counter()`` value re-optimisation must stop at (None: no limit)."""
        if self.deadline is None:
            return None
        return self.t0 + self.limit * len(self.fixed) / max(1, self.n_machines)

    def construction_deadline(self, unscheduled: int, solved: int) -> float | None:
        """Deadline of one subproblem of the sequencing step with ``unscheduled`` machines left, of which
        ``solved`` were solved in this step: a hard subproblem may take at most
        :data:`SUBPROBLEM_TIME_SHARE` times the remaining time divided by the subproblems still to come
        in the sequencing steps (None: no limit)."""
        if self.deadline is None:
            return None
        now = time.perf_counter()
        to_come = unscheduled * (unscheduled + 1) // 2 - solved
        return min(self.deadline, now + SUBPROBLEM_TIME_SHARE * max(0.0, self.deadline - now) / max(1, to_come))

    def out_of_time(self) -> bool:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            self.stats.time_limit_hit = True
            return True
        return False

    # ---- one-machine subproblems ------------------------------------------------------------
    def subproblem(self, machine: int, paths: _Paths, exact: bool, deadline: float | None = None) -> OneMachineResult:
        """Solve machine ``machine``'s 1|r_j, q_j|C_max problem from the graph's heads and tails: by
        Carlier's branch and bound with the graph's paths as precedences (``exact``, stopped at
        ``deadline``, default the run's), else by Schrage."""
        ops = self.graph.ops_of[machine]
        p = [self.graph.p[o] for o in ops]
        r = [paths.head[o] for o in ops]
        q = [paths.tail[o] for o in ops]
        rank = [paths.position[o] for o in ops]
        if not exact:
            self.stats.schrage_only += 1
            _, order, _ = schrage(r, p, q, rank)
            value = evaluate_sequence(r, p, q, order)
            return OneMachineResult(value, [ops[k] for k in order], 0, False, 0)

        def preds() -> list[list[int]]:  # the graph's paths between the machine's operations
            reach = self.graph.reach(paths)
            return [[i for i, oi in enumerate(ops) if i != j and (reach[oi] >> oj) & 1] for j, oj in enumerate(ops)]

        res = carlier(r, p, q, preds=preds, rank=rank, max_nodes=self.max_nodes,
                      deadline=self.deadline if deadline is None else deadline)
        self.stats.subproblems += 1
        self.stats.nodes += res.nodes
        if not res.proved:
            self.stats.unproved += 1
        return OneMachineResult(res.value, [ops[k] for k in res.sequence], res.lower_bound, res.proved, res.nodes)

    # ---- main loop ---------------------------------------------------------------------------
    def sequence_all_machines(self) -> None:
        """Sequence every machine with operations, bottleneck first, re-optimising after each."""
        todo = [m for m, ops in enumerate(self.graph.ops_of) if ops]
        first = True
        while todo:
            paths = self.graph.paths()
            exact = not self.out_of_time()
            results = {}
            for k, m in enumerate(todo):
                results[m] = self.subproblem(m, paths, exact, self.construction_deadline(len(todo), k))
            if first:
                self._set_bound(results, paths)
                first = False
            bottleneck = max(todo, key=lambda m: (results[m].value, -m))
            self._fix(bottleneck, results[bottleneck])
            todo.remove(bottleneck)
            if exact and len(self.fixed) > 1:
                self.reoptimise(just_fixed=bottleneck)

    def _set_bound(self, results: dict[int, OneMachineResult], paths: _Paths) -> None:
        """The proved makespan bound: the one-machine relaxations of the empty graph and the longest job."""
        self.bound = max([paths.makespan, *(res.lower_bound for res in results.values())])

    def _fix(self, machine: int, res: OneMachineResult) -> None:
        self.graph.set_sequence(res.sequence)
        self.fixed.append(machine)
        self.seq[machine] = res.sequence
        self.value[machine] = res.value

    def reoptimise(self, just_fixed: int) -> None:
        """Re-solve each sequenced machine with the others fixed, in rounds, while the makespan improves."""
        makespan = self.graph.paths().makespan
        for rnd in range(self.reopt_rounds):
            before = makespan
            machines = sorted(self.fixed, key=lambda m: (-self.value[m], m))
            for m in machines:
                if rnd == 0 and m == just_fixed:
                    continue  # its subproblem was just solved with the same other sequences
                if self.out_of_time() or not self.reopt_time_left():
                    return
                makespan = self._reoptimise_machine(m, makespan)
            self.stats.reopt_rounds += 1
            if makespan >= before:
                return

    def _reoptimise_machine(self, machine: int, makespan: int) -> int:
        """Re-sequence ``machine`` optimally for the others' sequences; keep it unless the makespan grows."""
        self.graph.clear_machine(machine)
        paths = self.graph.paths()
        res = self.subproblem(machine, paths, exact=True, deadline=self.reopt_deadline())
        old = self.seq[machine]
        self.graph.set_sequence(res.sequence)
        if res.sequence == old:
            self.value[machine] = res.value
            return makespan
        new_makespan = self.graph.paths().makespan
        if new_makespan > makespan:
            self.graph.set_sequence(old)
            return makespan
        self.stats.reopt_moves += 1
        self.seq[machine] = res.sequence
        self.value[machine] = res.value
        return new_makespan


def solve_sbh(instance: JobShopInstance, time_limit_s: float | None = None, reopt_rounds: int = 3) -> JobShopSolution:
    """Shortcut: :class:`ShiftingBottleneckSolver` ``(reopt_rounds=...).solve(instance, time_limit_s)``."""
    return ShiftingBottleneckSolver(time_limit_s=None, reopt_rounds=reopt_rounds).solve(instance, time_limit_s)
