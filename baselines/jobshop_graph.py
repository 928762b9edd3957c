"""Disjunctive-graph helpers for the classic job-shop (machine sequences -> schedule).

A classic job-shop solution is fully described by one processing order per machine (a *machine
sequence*). With the job arcs (operation ``o`` before ``o + 1`` of the same job) and the machine arcs
(consecutive operations of each machine sequence) the disjunctive graph is a DAG exactly when the
sequences are feasible, and then

* the **head** ``r[o]`` of operation ``o`` is the length of the longest path from the source to ``o``
  (its job's release included): the earliest start of ``o`` in the semi-active schedule;
* the **tail** ``q[o]`` is the length of the longest path from the end of ``o`` to the sink
  (``p[o]`` excluded), so ``r[o] + p[o] + q[o]`` is the longest path through ``o``;
* the **makespan** is ``max_o r[o] + p[o] (+ q[o])``; operations with ``r + p + q == makespan`` are
  critical, and a **critical path** is split into **blocks**: maximal runs of consecutive path
  operations on the same machine (Nowicki & Smutnicki 1996).

All times are in the instance's integer time units. Operations are the instance's global indices.
The class keeps Python lists rather than numpy arrays: the local searches built on it (tabu search,
INSA) touch a handful of entries per step, where list indexing is several times faster.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution

NONE = -1  # "no such operation" in the successor / predecessor arrays


class CycleError(ValueError):
    """The machine sequences and the job order together contain a cycle (infeasible sequences)."""


def check_classic(instance: JobShopInstance, who: str) -> None:
    """Raise ``ValueError`` unless ``instance`` is a classic job-shop (one machine per operation)."""
    if instance.n_ops and (instance.eligible.sum(axis=1) != 1).any():
        raise ValueError(f"{who}: {instance.name} is a flexible job-shop instance; this method needs a classic "
                         "job-shop (exactly one eligible machine per operation)")


def sequences_from_solution(instance: JobShopInstance, solution: JobShopSolution) -> list[list[int]]:
    """The machine sequences of a complete schedule: each machine's operations by start time
    (ties by end time, then operation index, so zero-length operations come first)."""
    start = np.asarray(solution.start, dtype=np.int64)
    end = np.asarray(solution.end(instance), dtype=np.int64)
    machine = np.asarray(solution.machine, dtype=np.int64)
    seqs: list[list[int]] = [[] for _ in range(instance.n_machines)]
    for o in np.lexsort((np.arange(instance.n_ops), end, start)):
        seqs[int(machine[o])].append(int(o))
    return seqs


class DisjunctiveGraph:
    """The disjunctive graph of a classic job-shop instance with (complete or partial) machine
    sequences; operations outside every sequence keep only their job arcs.

    Attributes:
        p: processing time of each operation (time units).
        machine: machine of each operation.
        release: release time of each operation's job if it is the job's first operation, else 0.
        job_next / job_prev: the next / previous operation of the same job, or :data:`NONE`.
        mach_next / mach_prev: the next / previous operation in its machine sequence, or :data:`NONE`.
        seqs: the machine sequences (lists of operations, first to last).
    """

    def __init__(self, instance: JobShopInstance, seqs: Sequence[Sequence[int]] | None = None):
        check_classic(instance, type(self).__name__)
        self.instance = instance
        n = instance.n_ops
        self.n = n
        self.machine: list[int] = instance.op_machine.tolist()
        self.p: list[int] = instance.proc[np.arange(n), instance.op_machine].tolist() if n else []
        self._p_ext = [*self.p, 0]  # with the sentinel (see order_and_heads)
        self.release: list[int] = [0] * n
        self.job_next: list[int] = [NONE] * n
        self.job_prev: list[int] = [NONE] * n
        for j in range(instance.n_jobs):
            a, b = int(instance.job_ptr[j]), int(instance.job_ptr[j + 1])
            if b > a:
                self.release[a] = int(instance.release[j])
            for o in range(a, b - 1):
                self.job_next[o] = o + 1
                self.job_prev[o + 1] = o
        self.mach_next: list[int] = [NONE] * n
        self.mach_prev: list[int] = [NONE] * n
        self.seqs: list[list[int]] = [[] for _ in range(instance.n_machines)]
        if seqs is not None:
            self.set_sequences(seqs)

    # ---- machine sequences -----------------------------------------------------------------
    def set_sequences(self, seqs: Sequence[Sequence[int]]) -> None:
        """Replace the machine sequences (each operation at most once, on its own machine)."""
        if len(seqs) != len(self.seqs):
            raise ValueError(f"{len(seqs)} machine sequences given, the instance has {len(self.seqs)} machines")
        seen = [False] * self.n
        self.mach_next = [NONE] * self.n
        self.mach_prev = [NONE] * self.n
        self.seqs = []
        for m, seq in enumerate(seqs):
            seq = [int(o) for o in seq]
            for o in seq:
                if not 0 <= o < self.n or self.machine[o] != m or seen[o]:
                    raise ValueError(f"machine sequence {m}: operation {o} is out of range, of another machine "
                                     "or listed twice")
                seen[o] = True
            for a, b in zip(seq, seq[1:], strict=False):
                self.mach_next[a] = b
                self.mach_prev[b] = a
            self.seqs.append(seq)

    def sequences(self) -> list[list[int]]:
        """A copy of the machine sequences."""
        return [list(s) for s in self.seqs]

    def insert(self, o: int, pos: int) -> None:
        """Insert the unsequenced operation ``o`` at index ``pos`` of its machine's sequence."""
        seq = self.seqs[self.machine[o]]
        before = seq[pos - 1] if pos > 0 else NONE
        after = seq[pos] if pos < len(seq) else NONE
        seq.insert(pos, o)
        self.mach_prev[o], self.mach_next[o] = before, after
        if before != NONE:
            self.mach_next[before] = o
        if after != NONE:
            self.mach_prev[after] = o

    def swap(self, u: int, v: int) -> None:
        """Swap the adjacent operations ``u`` (immediately before ``v``) of one machine sequence."""
        if self.mach_next[u] != v:
            raise ValueError(f"operations {u} and {v} are not adjacent (u before v) on one machine")
        a, b = self.mach_prev[u], self.mach_next[v]
        if a != NONE:
            self.mach_next[a] = v
        if b != NONE:
            self.mach_prev[b] = u
        self.mach_prev[v], self.mach_next[v] = a, u
        self.mach_prev[u], self.mach_next[u] = v, b
        seq = self.seqs[self.machine[u]]
        i = seq.index(u)
        seq[i], seq[i + 1] = v, u

    # ---- longest paths ---------------------------------------------------------------------
    # The passes below index their lists with NONE (-1) for a missing neighbour: every list has one
    # extra trailing entry (a sentinel with processing time 0 and an in-degree that never reaches 0)
    # that absorbs those reads and writes, which saves a branch per arc; it is dropped before returning.
    def order_and_heads(self) -> tuple[list[int], list[int]]:
        """(a topological order of the operations, their heads): Kahn's algorithm with the heads
        relaxed along the way. Raises :class:`CycleError` on a cycle."""
        n, jp, mp, jn, mn = self.n, self.job_prev, self.mach_prev, self.job_next, self.mach_next
        p = self._p_ext
        indeg = [(a != NONE) + (b != NONE) for a, b in zip(jp, mp, strict=True)]
        order = [o for o in range(n) if indeg[o] == 0]
        indeg.append(4 * n + 4)  # the sentinel: decremented at most twice per operation
        r = list(self.release)
        r.append(0)
        for o in order:  # the loop also visits the operations appended to ``order`` on the way
            e = r[o] + p[o]
            s = jn[o]
            if e > r[s]:
                r[s] = e
            indeg[s] -= 1
            if indeg[s] == 0:
                order.append(s)
            s = mn[o]
            if e > r[s]:
                r[s] = e
            indeg[s] -= 1
            if indeg[s] == 0:
                order.append(s)
        if len(order) != n:
            raise CycleError(f"{self.instance.name}: the machine sequences and the job order form a cycle")
        r.pop()
        return order, r

    def topological_order(self) -> list[int]:
        """All operations in a topological order of the job and machine arcs (Kahn's algorithm).

        Raises:
            CycleError: the arcs contain a cycle.
        """
        return self.order_and_heads()[0]

    def heads(self) -> list[int]:
        """Head (earliest start, time units) of every operation; raises :class:`CycleError`."""
        return self.order_and_heads()[1]

    def tails(self, order: list[int] | None = None) -> list[int]:
        """Tail of every operation (longest path from its end to the sink, time units); ``order`` a
        topological order (computed when not given)."""
        order = self.topological_order() if order is None else order
        p, jn, mn = self._p_ext, self.job_next, self.mach_next
        q = [0] * (self.n + 1)
        for o in reversed(order):
            s = jn[o]
            a = q[s] + p[s]
            s = mn[o]
            b = q[s] + p[s]
            q[o] = a if a > b else b
        q.pop()
        return q

    def heads_tails(self) -> tuple[list[int], list[int], int]:
        """Heads, tails and the makespan (time units); raises :class:`CycleError` on a cycle."""
        order, r = self.order_and_heads()
        q = self.tails(order)
        return r, q, max(map(operator.add, r, self.p), default=0)

    def makespan(self) -> int:
        """Length of the longest path (the semi-active schedule's makespan, time units)."""
        return max(map(operator.add, self.order_and_heads()[1], self.p), default=0)

    # ---- incremental update after a swap ------------------------------------------------------
    def swap_update(self, u: int, v: int, order: list[int], pos: list[int], r: list[int],
                    q: list[int]) -> int:
        """Swap the machine-adjacent ``u`` (before) and ``v`` and update, in place, a topological
        ``order`` (with ``pos[o]`` the index of ``o`` in it), the heads ``r`` and the tails ``q``;
        return the new makespan (time units). The swap must keep the graph acyclic (true for two
        adjacent operations of a critical path).

        Only the segment of ``order`` between ``u`` and ``v`` is reordered (as in Pearce & Kelly's
        dynamic topological sort: the operations there that reach ``v`` first, those reachable from
        ``u`` last), only the heads from ``u``'s old position on and the tails up to ``v``'s are
        recomputed: the arcs that change all end after the first and start before the second.
        """
        self.swap(u, v)
        i, j = pos[u], pos[v]
        if i > j:
            raise ValueError(f"operation {u} is not before {v} in the given topological order")
        jn, mn, jp, mp = self.job_next, self.mach_next, self.job_prev, self.mach_prev
        fwd = {u}
        stack = [u]
        while stack:
            o = stack.pop()
            for s in (jn[o], mn[o]):
                if s != NONE and s not in fwd and pos[s] <= j:
                    fwd.add(s)
                    stack.append(s)
        back = {v}
        stack = [v]
        while stack:
            o = stack.pop()
            for a in (jp[o], mp[o]):
                if a != NONE and a not in back and pos[a] >= i:
                    back.add(a)
                    stack.append(a)
        seg = order[i:j + 1]
        seg = ([o for o in seg if o in back] + [o for o in seg if o not in back and o not in fwd]
               + [o for o in seg if o in fwd])
        order[i:j + 1] = seg
        for k, o in enumerate(seg, i):
            pos[o] = k
        p, rel = self._p_ext, self.release
        r.append(0)  # the sentinel (see order_and_heads)
        for k in range(i, self.n):
            o = order[k]
            a, b = jp[o], mp[o]
            x, y = r[a] + p[a], r[b] + p[b]
            if y > x:
                x = y
            r[o] = x if x > rel[o] else rel[o]
        r.pop()
        q.append(0)
        for k in range(j, -1, -1):
            o = order[k]
            a, b = jn[o], mn[o]
            x, y = q[a] + p[a], q[b] + p[b]
            q[o] = x if x > y else y
        q.pop()
        return max(map(operator.add, r, self.p), default=0)

    # ---- critical path ---------------------------------------------------------------------
    def critical_path(self, r: list[int], q: list[int], cmax: int) -> list[int]:
        """One critical path (operations source to sink) given heads ``r``, tails ``q`` and the
        makespan ``cmax``. Traced back from the critical operation that ends last; at each step the
        machine predecessor is preferred over the job predecessor when both are critical (longer
        blocks), which makes the path a deterministic function of the sequences."""
        p, jp, mp = self.p, self.job_prev, self.mach_prev
        if not self.n:
            return []
        o = list(map(operator.add, r, p)).index(cmax)  # ends at cmax, so its tail is 0
        path = [o]
        while True:
            a = mp[o]
            if a != NONE and r[a] + p[a] == r[o]:
                o = a
            else:
                a = jp[o]
                if a != NONE and r[a] + p[a] == r[o]:
                    o = a
                else:
                    break
            path.append(o)
        path.reverse()
        return path

    def blocks(self, path: list[int]) -> list[list[int]]:
        """The blocks of a critical path: maximal runs of consecutive path operations that are
        machine-adjacent (same machine, each the next one in the machine sequence)."""
        out: list[list[int]] = []
        for o in path:
            if out and self.mach_next[out[-1][-1]] == o:
                out[-1].append(o)
            else:
                out.append([o])
        return out

    # ---- schedule ---------------------------------------------------------------------------
    def solution(self, status: str = "feasible", bound: float | None = None) -> JobShopSolution:
        """The semi-active schedule of the (complete) sequences: every operation starts at its head."""
        r = self.heads()
        return JobShopSolution(start=np.asarray(r, dtype=np.int64),
                               machine=np.asarray(self.machine, dtype=np.int64), status=status, bound=bound)


def schedule_from_sequences(instance: JobShopInstance, seqs: Sequence[Sequence[int]]) -> JobShopSolution:
    """The semi-active schedule (every operation as early as its job and machine predecessors allow)
    of complete machine sequences; raises :class:`CycleError` when they are infeasible."""
    graph = DisjunctiveGraph(instance, seqs)
    if sum(len(s) for s in graph.seqs) != instance.n_ops:
        raise ValueError(f"{instance.name}: the machine sequences hold {sum(len(s) for s in graph.seqs)} of "
                         f"{instance.n_ops} operations")
    return graph.solution()


def trivial_lower_bound(instance: JobShopInstance) -> int:
    """max(longest job incl. release, largest machine load) (time units): a makespan lower bound."""
    if instance.n_ops == 0:
        return 0
    p = instance.proc[np.arange(instance.n_ops), instance.op_machine]
    job = [int(instance.release[j]) + int(p[instance.job_ptr[j]:instance.job_ptr[j + 1]].sum())
           for j in range(instance.n_jobs)]
    load = np.bincount(instance.op_machine, weights=p, minlength=instance.n_machines)
    return int(max(max(job), int(load.max())))


def makespan_lower_bound(instance: JobShopInstance) -> int:
    """The larger of :func:`trivial_lower_bound` and the instance's published lower bound (the
    ``lower_bound`` of the bundled bounds file, proved in the literature), time units."""
    lb = trivial_lower_bound(instance)
    return max(lb, int(instance.lower_bound)) if instance.lower_bound is not None else lb
