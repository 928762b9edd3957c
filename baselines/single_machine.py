"""Exact one-machine head-body-tail problem 1|r_j, q_j|C_max (= 1|r_j|L_max with delivery times).

Each job ``j`` has a head (release time) ``r_j``, a body (processing time) ``p_j`` and a tail
(delivery time) ``q_j``, all non-negative integers in the caller's time units. A sequence is scheduled
semi-actively (each job starts at ``max(r_j, end of the previous job)``) and its value is
``max_j (start_j + p_j + q_j)``. This is the subproblem of the Shifting Bottleneck heuristic
(:mod:`schedgym.baselines.sbh`) and the one-machine relaxation of the job-shop.

* :func:`schrage` -- Schrage's list heuristic (among the released jobs, the one with the largest tail).
* :func:`preemptive_bound` -- the preemptive Jackson schedule's value, a lower bound (exact for the
  preemptive problem).
* :func:`carlier` -- Carlier's branch and bound (J. Carlier, "The one-machine sequencing problem",
  European Journal of Operational Research 11(1):42-47, 1982): Schrage at every node, branching on the
  interference job ``c`` of the critical block ``J`` (``c`` before all of ``J``: ``q_c >= p(J) + q(J)``;
  ``c`` after all of ``J``: ``r_c >= r(J) + p(J)``), depth first, nodes pruned by the preemptive bound.

Optional precedence constraints (``preds[j]``: the jobs that must precede ``j``; the transitive closure)
are handled as in Lageweg, Lenstra and Rinnooy Kan (1976): heads and tails are kept consistent
(``r_j >= r_i + p_i``, ``q_i >= p_j + q_j`` for ``i -> j``) at every node, so that Schrage's sequences
respect the precedences (ties broken by ``rank``, a topological order) and some optimal sequence of the
unconstrained problem respects them too: the optimum is the same with or without them. The Shifting
Bottleneck heuristic passes the paths of its disjunctive graph this way, so that fixing a machine's
sequence never closes a cycle.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: default cap on Carlier's branch-and-bound nodes per problem
DEFAULT_MAX_NODES = 20_000


@dataclass
class OneMachineResult:
    """The best sequence found for a 1|r_j, q_j|C_max problem.

    Attributes:
        value: its value ``max_j (start_j + p_j + q_j)`` under the original heads and tails (time units).
        sequence: the job indices in processing order.
        lower_bound: a proved lower bound on the optimum (``== value`` when ``proved``).
        proved: the sequence is proved optimal (the search finished within its node and time limits).
        nodes: branch-and-bound nodes explored.
    """

    value: int
    sequence: list[int]
    lower_bound: int
    proved: bool
    nodes: int


def evaluate_sequence(r: Sequence[int], p: Sequence[int], q: Sequence[int], sequence: Sequence[int]) -> int:
    """The value ``max_j (start_j + p_j + q_j)`` of ``sequence`` scheduled semi-actively (time units)."""
    t = 0
    value = 0
    for j in sequence:
        t = max(t, r[j]) + p[j]
        value = max(value, t + q[j])
    return value


def schrage(r: Sequence[int], p: Sequence[int], q: Sequence[int],
            rank: Sequence[int] | None = None) -> tuple[int, list[int], list[int]]:
    """Schrage's schedule: whenever the machine is free, start the released job with the largest tail
    (ties: the smaller head, then the smaller ``rank``, then the smaller index).

    Returns ``(value, sequence, start)`` with ``start[k]`` the start time of ``sequence[k]`` (time units).
    """
    n = len(p)
    rank = range(n) if rank is None else rank
    by_release = sorted(range(n), key=lambda j: (r[j], rank[j], j))
    ready: list[tuple[int, int, int, int]] = []
    seq: list[int] = []
    start: list[int] = []
    t = 0
    value = 0
    k = 0
    while len(seq) < n:
        if not ready and t < r[by_release[k]]:
            t = r[by_release[k]]
        while k < n and r[by_release[k]] <= t:
            j = by_release[k]
            heapq.heappush(ready, (-q[j], r[j], rank[j], j))
            k += 1
        j = heapq.heappop(ready)[3]
        seq.append(j)
        start.append(t)
        t += p[j]
        value = max(value, t + q[j])
    return value, seq, start


def preemptive_bound(r: Sequence[int], p: Sequence[int], q: Sequence[int]) -> int:
    """The value of the preemptive Jackson schedule (always run the released job with the largest tail,
    preempting it when a job with a larger tail is released): a lower bound on the optimum (time units)."""
    n = len(p)
    by_release = sorted(range(n), key=lambda j: r[j])
    left = list(p)
    ready: list[tuple[int, int]] = []
    t = 0
    value = 0
    k = 0
    done = 0
    while done < n:
        if not ready and t < r[by_release[k]]:
            t = r[by_release[k]]
        while k < n and r[by_release[k]] <= t:
            j = by_release[k]
            heapq.heappush(ready, (-q[j], j))
            k += 1
        j = ready[0][1]
        next_release = r[by_release[k]] if k < n else None
        if next_release is not None and t + left[j] > next_release:
            left[j] -= next_release - t
            t = next_release
            continue
        heapq.heappop(ready)
        t += left[j]
        left[j] = 0
        done += 1
        value = max(value, t + q[j])
    return value


def _critical_interference(r: list[int], p: Sequence[int], q: list[int], seq: list[int], start: list[int],
                           value: int) -> tuple[int, list[int]] | None:
    """Carlier's interference job ``c`` and critical set ``J`` of a Schrage schedule, or None when the
    schedule is optimal for these heads and tails (no job of the critical block has a smaller tail
    than its last job)."""
    b = max(pos for pos, j in enumerate(seq) if start[pos] + p[j] + q[j] == value)
    a = b
    while a > 0 and start[a - 1] + p[seq[a - 1]] == start[a]:  # the block without idle time before b
        a -= 1
    while start[a] != r[seq[a]]:  # the first job of the block that starts at its head
        a += 1
    qb = q[seq[b]]
    for pos in range(b - 1, a - 1, -1):
        if q[seq[pos]] < qb:
            return seq[pos], seq[pos + 1:b + 1]
    return None


class _Precedences:
    """Keeps heads and tails consistent with precedence constraints ``preds`` (transitively closed).

    Heads are pushed along the transitive reduction in topological order (``r_j >= r_i + p_i`` for each
    immediate predecessor ``i``, hence along every chain), tails backwards likewise; after Carlier
    changes one job's head (tail) only its descendants' heads (ancestors' tails) can change.
    """

    def __init__(self, preds: Sequence[Sequence[int]], rank: Sequence[int]):
        n = len(preds)
        self.order = sorted(range(n), key=lambda j: (rank[j], j))
        pos = [0] * n
        for k, j in enumerate(self.order):
            pos[j] = k
        self.pos = pos
        bits = [0] * n
        for j, pr in enumerate(preds):
            for i in pr:
                bits[j] |= 1 << i
        self.any = any(bits)
        self.closure_succs: list[list[int]] = [[] for _ in range(n)]
        for j, pr in enumerate(preds):
            for i in pr:
                self.closure_succs[i].append(j)
        self.closure_preds = [list(pr) for pr in preds]
        self.ipreds: list[list[int]] = [[] for _ in range(n)]
        self.isuccs: list[list[int]] = [[] for _ in range(n)]
        for j, pr in enumerate(preds):
            covered = 0
            for i in pr:
                covered |= bits[i]
            for i in pr:
                if not (covered >> i) & 1:
                    self.ipreds[j].append(i)
                    self.isuccs[i].append(j)
        self._desc: dict[int, list[int]] = {}
        self._anc: dict[int, list[int]] = {}

    def propagate(self, r: list[int], p: Sequence[int], q: list[int]) -> None:
        """Raise every head and tail to be consistent with the precedences (the whole order)."""
        if not self.any:
            return
        for j in self.order:
            self._raise_head(r, p, j)
        for i in reversed(self.order):
            self._raise_tail(q, p, i)

    def after_head_change(self, r: list[int], p: Sequence[int], c: int) -> None:
        """Push job ``c``'s raised head to its descendants."""
        desc = self._desc.get(c)
        if desc is None:
            desc = self._desc[c] = sorted(self.closure_succs[c], key=self.pos.__getitem__)
        for j in desc:
            self._raise_head(r, p, j)

    def after_tail_change(self, q: list[int], p: Sequence[int], c: int) -> None:
        """Push job ``c``'s raised tail to its ancestors."""
        anc = self._anc.get(c)
        if anc is None:
            anc = self._anc[c] = sorted(self.closure_preds[c], key=self.pos.__getitem__, reverse=True)
        for i in anc:
            self._raise_tail(q, p, i)

    def _raise_head(self, r: list[int], p: Sequence[int], j: int) -> None:
        for i in self.ipreds[j]:
            if r[i] + p[i] > r[j]:
                r[j] = r[i] + p[i]

    def _raise_tail(self, q: list[int], p: Sequence[int], i: int) -> None:
        for j in self.isuccs[i]:
            if p[j] + q[j] > q[i]:
                q[i] = p[j] + q[j]


def _block_bound(r: list[int], p: Sequence[int], q: list[int], jobs: Sequence[int]) -> int:
    """``min r + sum p + min q`` over ``jobs``: a lower bound on any schedule (time units)."""
    return min(r[j] for j in jobs) + sum(p[j] for j in jobs) + min(q[j] for j in jobs)


def carlier(r: Sequence[int], p: Sequence[int], q: Sequence[int], *,
            preds: Sequence[Sequence[int]] | Callable[[], Sequence[Sequence[int]]] | None = None,
            rank: Sequence[int] | None = None,
            max_nodes: int = DEFAULT_MAX_NODES, deadline: float | None = None) -> OneMachineResult:
    """Solve 1|r_j, q_j|C_max exactly by Carlier's branch and bound.

    Args:
        r, p, q: heads, processing times and tails of the jobs (non-negative integers, time units).
        preds: optional precedence constraints, ``preds[j]`` = jobs that must come before ``j``
            (transitively closed, acyclic); ``rank`` must then be a topological order (``rank[i] <
            rank[j]`` for ``i -> j``). A zero-argument callable returning them is called only when the
            search first branches (many problems are solved at the root); the heads and tails must
            then already be consistent with them (``r_j >= r_i + p_i``, ``q_i >= p_j + q_j``), as
            the longest-path heads and tails of a disjunctive graph are.
        rank: tie-breaking rank of the jobs (defaults to their index).
        max_nodes: node cap (>= 1); when reached the best sequence so far is returned with
            ``proved=False`` and the smallest bound of the open nodes.
        deadline: ``time.perf_counter()`` value after which the search stops the same way.

    Returns:
        The best sequence, its value under the given heads and tails, and a proved lower bound.
    """
    if max_nodes < 1:
        raise ValueError(f"carlier: max_nodes={max_nodes!r} must be >= 1")
    n = len(p)
    if n == 0:
        return OneMachineResult(0, [], 0, True, 0)
    r0, q0 = list(r), list(q)
    rank = list(range(n)) if rank is None else list(rank)
    prec = None
    if preds is not None and not callable(preds):
        prec = _Precedences(preds, rank)
        prec.propagate(r0, p, q0)
    best_value, best_seq, _ = schrage(r0, p, q0, rank)
    best_value = evaluate_sequence(r, p, q, best_seq)
    stack: list[tuple[int, list[int], list[int]]] = [(preemptive_bound(r0, p, q0), r0, q0)]
    nodes = 0
    while stack:
        lb, rn, qn = stack[-1]
        if lb >= best_value:
            stack.pop()
            continue
        if nodes >= max_nodes or (deadline is not None and nodes % 16 == 0 and time.perf_counter() > deadline):
            open_lb = min(node[0] for node in stack)
            return OneMachineResult(best_value, best_seq, min(open_lb, best_value), False, nodes)
        stack.pop()
        nodes += 1
        value, seq, start = schrage(rn, p, qn, rank)
        true_value = evaluate_sequence(r, p, q, seq)
        if true_value < best_value:
            best_value, best_seq = true_value, seq
        found = _critical_interference(rn, p, qn, seq, start, value)
        if found is None:
            continue
        c, crit = found
        if prec is None and callable(preds):
            prec = _Precedences(preds(), rank)
        children = _children(rn, p, qn, c, crit, lb, prec)
        # the smaller bound is explored first; on a tie "c after J" (it found optima in far fewer nodes
        # than "c before J" on the 100-job subproblems of ta71)
        for k in sorted(range(len(children)), key=lambda k: (-children[k][0], -k)):
            if children[k][0] < best_value:
                stack.append(children[k])
    return OneMachineResult(best_value, best_seq, best_value, True, nodes)


def _children(r: list[int], p: Sequence[int], q: list[int], c: int, crit: list[int], lb: int,
              prec: _Precedences | None) -> list[tuple[int, list[int], list[int]]]:
    """Carlier's two children (``c`` after the critical set ``crit``; ``c`` before it), each with its
    lower bound (time units); a child whose heads and tails do not change is dropped."""
    r_crit = min(r[j] for j in crit)
    q_crit = min(q[j] for j in crit)
    p_crit = sum(p[j] for j in crit)
    h_crit = r_crit + p_crit + q_crit
    children = []
    after_r, after_q = list(r), list(q)
    after_r[c] = max(r[c], r_crit + p_crit)
    before_r, before_q = list(r), list(q)
    before_q[c] = max(q[c], q_crit + p_crit)
    if prec is not None:
        prec.after_head_change(after_r, p, c)
        prec.after_tail_change(before_q, p, c)
    for cr, cq in ((after_r, after_q), (before_r, before_q)):
        if cr == r and cq == q:
            continue
        bound = max(lb, h_crit, _block_bound(cr, p, cq, [*crit, c]), preemptive_bound(cr, p, cq))
        children.append((bound, cr, cq))
    return children
