"""Tabu search on the N5 neighbourhood for the classic job-shop (TSAB, Nowicki & Smutnicki 1996).

E. Nowicki and C. Smutnicki, "A fast taboo search algorithm for the job shop problem", Management
Science 42(6):797-813, 1996. The parts implemented here, as published:

* **start**: INSA (:mod:`schedgym.baselines.insa`);
* **neighbourhood N5**: on one critical path split into blocks (maximal runs of operations on one
  machine), swap the first two and the last two operations of every block, except the first two of
  the first block and the last two of the last block. Swapping adjacent critical operations never
  creates a cycle. A path made of a single block has no move;
* **tabu list** of ``tenure`` (maxt = 8) arcs: performing the swap of ``u`` before ``v`` stores the
  arc ``(u, v)``; a move is forbidden when it would restore a stored arc;
* **move selection (NSP)**: the best move, by makespan, among the unforbidden moves and the forbidden
  ones that would beat the best makespan found (aspiration). When every move is forbidden and none
  aspires, the tabu list is shifted (its newest arc repeated, the oldest dropped) until a move becomes
  unforbidden, which is taken;
* **back jump tracking** (TSAB): when a new best solution is left by a move, the solution, its other
  moves and the tabu list are pushed on a list of at most ``elite_size`` (maxl = 5) entries. After
  ``max_no_improve`` (maxiter; 2500 here) iterations without a new best, or when the makespans of the
  last ``cycle_repeats`` (maxc = 2) periods of some length <= ``cycle_period`` (maxδ = 100) equal
  those one period earlier (a cycle), the search jumps back to the newest entry, restricted to its
  untried moves. The paper's search ends when the list is empty; here (``restarts=True``, an addition
  for a time-boxed run) it restarts from the best solution after ``perturbation`` seeded random
  critical swaps, and ends at ``max_iters`` iterations, at the time limit, or at a makespan lower
  bound (proved optimal).

Move evaluation: ``evaluation="estimate"`` (default) ranks moves by the standard O(1) estimate of the
makespan after a swap of ``u`` before ``v`` from the current heads ``r`` and tails ``q`` (Taillard 1994,
"Parallel taboo search techniques for the job shop scheduling problem", ORSA J. Computing 6(2);
exact whenever the new longest path passes through ``u`` or ``v``, else a lower bound on it); the
chosen move is applied with an incremental update of the topological order, heads and tails
(:meth:`~schedgym.baselines.jobshop_graph.DisjunctiveGraph.swap_update`), which gives its exact
makespan. ``evaluation="exact"`` recomputes the longest path of every neighbour (O(operations) each).

The only randomness is the restarts' swaps (seeded): for a given seed and ``max_iters`` (and no
binding time limit) the result is a deterministic function of the instance. Under a time limit the
number of iterations depends on the machine's speed (about 5000 per second on Taillard 15x15 and
2500 on 20x20 on one shared CPU core). Times are in the instance's integer time units, limits and
wall times in seconds.

Measured (``python scripts/evaluate.py env=jobshop instances=taillard_<size> policy=tabu_10s``, or
``tabu_60s``), mean gap to the best known makespan: 15x15 1.60 % (10 s) and 1.25 % (60 s), 20x20
3.76 % (10 s) and 2.97 % (60 s).
"""

from __future__ import annotations

import math
import operator
import random
import time
from collections import deque
from dataclasses import dataclass

from schedgym.baselines.base import check_time_limit
from schedgym.baselines.insa import FIRST_JOB, insa_graph
from schedgym.baselines.jobshop_graph import NONE, DisjunctiveGraph, check_classic, makespan_lower_bound
from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution

EVALUATIONS = ("estimate", "exact")
_HISTORY_CAP = 100_000  # makespans kept for cycle detection (cleared when full)
#: time box (seconds) when neither the constructor nor the caller gives one
DEFAULT_TIME_LIMIT_S = 10.0

Move = tuple[int, int]  # (u, v): u immediately before v on one machine; the move puts v before u


def n5_moves(graph: DisjunctiveGraph, blocks: list[list[int]]) -> list[Move]:
    """The N5 moves of a critical path's blocks, in path order (first-two before last-two)."""
    moves: list[Move] = []
    last = len(blocks) - 1
    if last == 0:
        return moves
    for k, blk in enumerate(blocks):
        if len(blk) < 2:
            continue
        if k > 0:
            moves.append((blk[0], blk[1]))
        if k < last and (k == 0 or len(blk) > 2):
            moves.append((blk[-2], blk[-1]))
    return moves


def swap_estimate(graph: DisjunctiveGraph, r: list[int], q: list[int], u: int, v: int) -> int:
    """Estimated makespan (time units) after putting ``v`` before its machine predecessor ``u``,
    from the heads ``r`` and tails ``q`` before the move (Taillard 1994)."""
    p, jp, jn = graph.p, graph.job_prev, graph.job_next
    a, b = graph.mach_prev[u], graph.mach_next[v]
    rv = graph.release[v]
    x = jp[v]
    if x != NONE:
        rv = max(rv, r[x] + p[x])
    if a != NONE:
        rv = max(rv, r[a] + p[a])
    ru = max(graph.release[u], rv + p[v])
    x = jp[u]
    if x != NONE:
        ru = max(ru, r[x] + p[x])
    qu = 0
    x = jn[u]
    if x != NONE:
        qu = q[x] + p[x]
    if b != NONE:
        qu = max(qu, q[b] + p[b])
    qv = qu + p[u]
    x = jn[v]
    if x != NONE:
        qv = max(qv, q[x] + p[x])
    return max(rv + p[v] + qv, ru + p[u] + qu)


def swap_exact(graph: DisjunctiveGraph, u: int, v: int) -> int:
    """Exact makespan (time units) after putting ``v`` before ``u`` (the graph is left unchanged)."""
    graph.swap(u, v)
    try:
        return graph.makespan()
    finally:
        graph.swap(v, u)


@dataclass
class _Elite:
    """A back-jump entry: a solution's machine sequences, its untried moves and its tabu list."""

    seqs: list[list[int]]
    moves: list[Move]
    tabu: list[Move]


class TabuSearchSolver:
    """TSAB-style tabu search on N5 as a :class:`~schedgym.baselines.base.Solver` (classic job-shop,
    makespan).

    Args:
        time_limit_s: time box in seconds (> 0, ``inf`` for none). It overrides the caller's
            ``solve(..., time_limit_s)`` (so a ``tabu_10s`` config is 10 s whatever the run's limit);
            ``None`` takes the caller's, else :data:`DEFAULT_TIME_LIMIT_S`. It bounds the search; the
            INSA start always completes first (0.03 s on 15x15, about 3 s on 100x20).
        max_iters: cap on the number of moves (``None``: no cap).
        tenure: tabu list length (maxt, 8 in the paper).
        max_no_improve: iterations without a new best before a back jump (maxiter).
        elite_size: back-jump list length (maxl, 5 in the paper); 0 switches back jumps off (the
            search then ends after ``max_no_improve`` iterations without a new best).
        cycle_period: longest makespan cycle detected (maxδ, 100 in the paper); 0 switches it off.
        cycle_repeats: repetitions of a cycle that trigger a back jump (maxc, 2 in the paper).
        evaluation: ``"estimate"`` or ``"exact"`` (module docstring).
        first_job: INSA's ``first_job`` option.
        restarts: when the back-jump list is exhausted before the time limit or ``max_iters``,
            restart TSAB from the best solution after ``perturbation`` random critical swaps (an
            addition to the paper, whose TSAB stops there; ``False`` gives the paper's stop, and so
            does a run with neither a finite time limit nor ``max_iters``).
        perturbation: random swaps of a restart.
        seed: seed of the restarts' random swaps (the only randomness).
        name: the name results are reported under.
    """

    domains = ("jobshop",)

    def __init__(self, time_limit_s: float | None = None, max_iters: int | None = None, tenure: int = 8,
                 max_no_improve: int = 2500, elite_size: int = 5, cycle_period: int = 100,
                 cycle_repeats: int = 2, evaluation: str = "estimate", first_job: str = "longest",
                 restarts: bool = True, perturbation: int = 25, seed: int = 0, name: str = "tabu"):
        cls = type(self).__name__
        self.time_limit_s = check_time_limit(time_limit_s, cls)
        if evaluation not in EVALUATIONS:
            raise ValueError(f"{cls}: evaluation={evaluation!r}, expected one of {EVALUATIONS}")
        if first_job not in FIRST_JOB:
            raise ValueError(f"{cls}: first_job={first_job!r}, expected one of {FIRST_JOB}")
        for key, value, low in (("tenure", tenure, 1), ("max_no_improve", max_no_improve, 1),
                                ("elite_size", elite_size, 0), ("cycle_period", cycle_period, 0),
                                ("cycle_repeats", cycle_repeats, 1), ("perturbation", perturbation, 1),
                                ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{cls}: {key}={value!r}, expected an integer >= {low}")
        if max_iters is not None and (isinstance(max_iters, bool) or not isinstance(max_iters, int)
                                      or max_iters < 0):
            raise ValueError(f"{cls}: max_iters={max_iters!r}, expected None or an integer >= 0")
        self.max_iters = max_iters
        self.tenure = tenure
        self.max_no_improve = max_no_improve
        self.elite_size = elite_size
        self.cycle_period = cycle_period
        self.cycle_repeats = cycle_repeats
        self.evaluation = evaluation
        self.first_job = first_job
        self.restarts = bool(restarts)
        self.perturbation = perturbation
        self.seed = seed
        self.name = name

    # ------------------------------------------------------------------------------------------
    def solve(self, instance: JobShopInstance, time_limit_s: float | None = None) -> JobShopSolution:
        """The best schedule found (semi-active, start times in time units).

        ``bound`` is the larger of the trivial bound (longest job, largest machine load) and the
        instance's published lower bound; ``status`` is ``"optimal"`` when the makespan meets it (the
        search stops there), else ``"feasible"``. ``meta`` holds ``makespan``,
        ``start_makespan`` (INSA's), ``iterations``, ``back_jumps``, ``restarts``, ``stop_reason`` (``"time_limit"``,
        ``"max_iters"``, ``"lower_bound"``, ``"exhausted"``), ``time_limit_s``, ``wall_time_s`` and
        ``time_to_best_s`` (seconds).
        """
        t0 = time.perf_counter()
        given = check_time_limit(time_limit_s, type(self).__name__)
        limit = self.time_limit_s if self.time_limit_s is not None else (
            DEFAULT_TIME_LIMIT_S if given is None else given)
        check_classic(instance, type(self).__name__)
        graph = insa_graph(instance, self.first_job)
        lb = makespan_lower_bound(instance)
        search = _Search(self, graph, lb, t0 + limit if math.isfinite(limit) else math.inf)
        search.run()
        graph.set_sequences(search.best_seqs)
        sol = graph.solution(status="optimal" if search.best <= lb else "feasible", bound=float(lb))
        sol.meta.update(
            solver=self.name, makespan=search.best, start_makespan=search.start_makespan,
            iterations=search.iterations, back_jumps=search.back_jumps, restarts=search.restarts,
            seed=self.seed, stop_reason=search.stop_reason,
            time_limit_s=limit, evaluation=self.evaluation, tenure=self.tenure,
            time_to_best_s=search.time_to_best - t0, wall_time_s=time.perf_counter() - t0,
            solution_source="tabu" if search.best < search.start_makespan else "insa")
        return sol


class _Search:
    """One TSAB run on ``graph`` (modified in place); the best sequences end in ``best_seqs``."""

    def __init__(self, cfg: TabuSearchSolver, graph: DisjunctiveGraph, lb: int, deadline: float):
        self.cfg = cfg
        self.graph = graph
        self.lb = lb
        self.deadline = deadline
        self.tabu: deque[Move] = deque(maxlen=cfg.tenure)
        self.elite: list[_Elite] = []
        self.history: list[int] = []
        self.seen: dict[int, list[int]] = {}  # makespan -> its positions in history
        self._recompute()
        self.best = self.start_makespan = self.cmax
        self.best_seqs = graph.sequences()
        self.time_to_best = time.perf_counter()
        self.iterations = 0
        self.back_jumps = 0
        self.restarts = 0
        self.rng = random.Random(cfg.seed)
        self.stop_reason = ""

    # ---- main loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Iterate until a stop condition; fills ``stop_reason``."""
        g, cfg = self.graph, self.cfg
        restrict: list[Move] | None = None
        new_best = True  # the start solution is the first best: its untried moves are stored too
        no_improve = 0
        while True:
            if self.best <= self.lb:
                self.stop_reason = "lower_bound"
                return
            if cfg.max_iters is not None and self.iterations >= cfg.max_iters:
                self.stop_reason = "max_iters"
                return
            if time.perf_counter() >= self.deadline:
                self.stop_reason = "time_limit"
                return
            path = g.critical_path(self.r, self.q, self.cmax)
            moves = n5_moves(g, g.blocks(path)) if restrict is None else restrict
            restrict = None
            move = self._select(moves) if moves else None
            if move is not None and new_best and cfg.elite_size and len(moves) > 1:
                self._push_elite(moves, move)
            new_best = False
            stagnant = move is None
            if move is not None:
                self._apply(move)
                if self.cmax < self.best:
                    self.best, self.best_seqs, no_improve = self.cmax, g.sequences(), 0
                    self.time_to_best = time.perf_counter()
                    self._clear_history()
                    new_best = True
                else:
                    no_improve += 1
                    stagnant = no_improve >= cfg.max_no_improve or self._cycling()
            if stagnant:
                restrict = self._back_jump()
                no_improve = 0
                if restrict is None:
                    if not cfg.restarts or (self.deadline == math.inf and cfg.max_iters is None):
                        self.stop_reason = "exhausted"
                        return
                    self._restart()
                    new_best = True

    # ---- pieces ---------------------------------------------------------------------------------
    def _recompute(self) -> None:
        """Topological order, positions, heads, tails and makespan from scratch."""
        self.order, self.r = self.graph.order_and_heads()
        self.pos = [0] * self.graph.n
        for k, o in enumerate(self.order):
            self.pos[o] = k
        self.q = self.graph.tails(self.order)
        self.cmax = max(map(operator.add, self.r, self.graph.p), default=0)

    def _value(self, move: Move) -> int:
        if self.cfg.evaluation == "exact":
            return swap_exact(self.graph, *move)
        return swap_estimate(self.graph, self.r, self.q, *move)

    def _select(self, moves: list[Move]) -> Move:
        """NSP: the best unforbidden or aspiring move; when none, shift the tabu list until one is free."""
        tabu = set(self.tabu)
        best_move, best_val = None, None
        for u, v in moves:
            val = self._value((u, v))
            if (v, u) in tabu and val >= self.best:
                continue
            if best_val is None or val < best_val:
                best_move, best_val = (u, v), val
        if best_move is not None:
            return best_move
        if len(moves) == 1:
            return moves[0]
        while True:  # every move is forbidden: age the list until one of them is not
            self.tabu.append(self.tabu[-1])
            tabu = set(self.tabu)
            free = [(u, v) for u, v in moves if (v, u) not in tabu]
            if free:
                return min(free, key=self._value)

    def _apply(self, move: Move) -> None:
        u, v = move
        self.cmax = self.graph.swap_update(u, v, self.order, self.pos, self.r, self.q)
        self.tabu.append((u, v))
        self.iterations += 1
        self.history.append(self.cmax)

    def _push_elite(self, moves: list[Move], chosen: Move) -> None:
        rest = [m for m in moves if m != chosen]
        self.elite.append(_Elite(self.graph.sequences(), rest, list(self.tabu)))
        if len(self.elite) > self.cfg.elite_size:
            self.elite.pop(0)

    def _back_jump(self) -> list[Move] | None:
        """Restore the newest elite entry; its untried moves, or None when the list is empty."""
        if not self.elite:
            return None
        entry = self.elite.pop()
        self.graph.set_sequences(entry.seqs)
        self.tabu = deque(entry.tabu, maxlen=self.cfg.tenure)
        self._recompute()
        self._clear_history()
        self.back_jumps += 1
        return entry.moves

    def _restart(self) -> None:
        """From the best solution, ``perturbation`` random swaps of adjacent operations of a critical
        block (N1 moves, always acyclic), then an empty tabu list and elite list."""
        g = self.graph
        g.set_sequences(self.best_seqs)
        self._recompute()
        for _ in range(self.cfg.perturbation):
            path = g.critical_path(self.r, self.q, self.cmax)
            pairs = [(blk[k], blk[k + 1]) for blk in g.blocks(path) for k in range(len(blk) - 1)]
            if not pairs:
                break
            u, v = pairs[self.rng.randrange(len(pairs))]
            self.cmax = g.swap_update(u, v, self.order, self.pos, self.r, self.q)
        self.tabu.clear()
        self.elite.clear()
        self._clear_history()
        self.restarts += 1

    def _clear_history(self) -> None:
        self.history.clear()
        self.seen.clear()

    def _cycling(self) -> bool:
        """True when the makespans of the last ``cycle_repeats`` periods equal those one period
        earlier, for some period <= ``cycle_period`` (the newest makespan is in ``history``)."""
        h, maxd = self.history, self.cfg.cycle_period
        if maxd == 0:
            return False
        n = len(h)
        if n > _HISTORY_CAP:
            self._clear_history()
            return False
        last = n - 1
        positions = self.seen.setdefault(h[last], [])
        found = False
        for j in reversed(positions):
            delta = last - j
            if delta > maxd:
                break
            span = delta * self.cfg.cycle_repeats
            if n >= span + delta and h[n - span:] == h[n - span - delta:n - delta]:
                found = True
                break
        positions.append(last)
        return found
