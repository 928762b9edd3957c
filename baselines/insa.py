"""INSA, the insertion algorithm of Nowicki & Smutnicki for the classic job-shop.

E. Nowicki and C. Smutnicki, "A fast taboo search algorithm for the job shop problem", Management
Science 42(6):797-813, 1996 (INSA is TSAB's start solution; it follows the insertion idea
of Werner & Winkler 1995):

1. the partial solution starts with every operation of the job with the largest total processing
   time, each in its own machine sequence;
2. the remaining operations are taken in non-increasing order of processing time (ties: lower
   operation index first);
3. each is inserted into its machine's partial sequence at the position that minimises the length of
   the longest path through it, among the positions that keep the graph acyclic. Ties go to the
   earliest position.

The graph of a partial solution holds every operation with its job arcs and the machine arcs of the
partial sequences, so not-yet-inserted operations count with their processing times. Inserting ``v``
between ``a`` and ``b`` on its machine changes neither the heads of ``a`` and of ``v``'s job
predecessor nor the tails of ``b`` and of ``v``'s job successor, so with heads ``r`` and tails ``q``
of the graph before the insertion the longest path through ``v`` after it is exactly
``max(r_v, r_a + p_a) + p_v + max(q_v, q_b + p_b)``. The insertion is acyclic iff ``a`` is not a
descendant of ``v`` and ``b`` not an ancestor of ``v``. One insertion costs O(number of operations).

Deterministic; times in the instance's integer time units, wall times in seconds.

Measured (``python scripts/evaluate.py env=jobshop instances=taillard_<size> policy=insa``), mean gap
to the best known makespan on Taillard 15x15 / 20x15 / 20x20 / 30x15 / 30x20 / 50x15 / 50x20 / 100x20:
14.6 / 18.3 / 17.2 / 21.3 / 23.6 / 16.4 / 20.1 / 13.3 % (Corsini et al. 2024's results sheet: 14.5 /
18.9 / 17.3 / 21.1 / 22.6 / 15.9 / 20.3 / 13.5), 0.04 s per 15x15 instance and 4.5 s per 100x20 one.
"""

from __future__ import annotations

import time

from schedgym.baselines.base import check_time_limit
from schedgym.baselines.jobshop_graph import NONE, DisjunctiveGraph, check_classic, makespan_lower_bound
from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution

FIRST_JOB = ("longest", "none")


def insertion_order(instance: JobShopInstance, first_job: str = "longest") -> tuple[list[int], list[int]]:
    """(the operations placed first, the rest in insertion order).

    ``first_job="longest"`` (the paper) places the job with the largest total processing time first
    (lowest index on ties); ``"none"`` inserts every operation by processing time.
    """
    graph_p = instance.proc[range(instance.n_ops), instance.op_machine].tolist() if instance.n_ops else []
    first: list[int] = []
    if first_job == "longest" and instance.n_jobs:
        totals = [sum(graph_p[o] for o in instance.job_ops(j)) for j in range(instance.n_jobs)]
        first = list(instance.job_ops(max(range(instance.n_jobs), key=lambda j: (totals[j], -j))))
    placed = set(first)
    rest = sorted((o for o in range(instance.n_ops) if o not in placed), key=lambda o: -graph_p[o])
    return first, rest


def _reachable(start: int, nxt_a: list[int], nxt_b: list[int]) -> set[int]:
    """Operations reachable from ``start`` along the two successor arrays (``start`` excluded)."""
    seen: set[int] = set()
    stack = [start]
    while stack:
        o = stack.pop()
        for s in (nxt_a[o], nxt_b[o]):
            if s != NONE and s not in seen:
                seen.add(s)
                stack.append(s)
    return seen


def best_insertion(graph: DisjunctiveGraph, v: int) -> tuple[int, int]:
    """(position, longest path through ``v`` in time units) of the best acyclic insertion of the
    unsequenced operation ``v`` into its machine's sequence (earliest position on ties)."""
    order, r = graph.order_and_heads()
    q = graph.tails(order)
    p = graph.p
    desc = _reachable(v, graph.job_next, graph.mach_next)
    anc = _reachable(v, graph.job_prev, graph.mach_prev)
    seq = graph.seqs[graph.machine[v]]
    best_pos, best_len = -1, None
    for i in range(len(seq) + 1):
        a = seq[i - 1] if i > 0 else NONE
        b = seq[i] if i < len(seq) else NONE
        if (a != NONE and a in desc) or (b != NONE and b in anc):
            continue
        head = r[v] if a == NONE else max(r[v], r[a] + p[a])
        tail = q[v] if b == NONE else max(q[v], q[b] + p[b])
        length = head + p[v] + tail
        if best_len is None or length < best_len:
            best_pos, best_len = i, length
    # the ancestors of v on its machine form a prefix of the sequence and its descendants a suffix
    # (they cannot overlap in a DAG), so the position between them is always acyclic
    assert best_len is not None, "no acyclic insertion position: the partial graph has a cycle"
    return best_pos, best_len


def insa_sequences(instance: JobShopInstance, first_job: str = "longest") -> list[list[int]]:
    """INSA's machine sequences for a classic job-shop instance."""
    graph = insa_graph(instance, first_job)
    return graph.sequences()


def insa_graph(instance: JobShopInstance, first_job: str = "longest") -> DisjunctiveGraph:
    """The disjunctive graph with INSA's complete machine sequences."""
    check_classic(instance, "INSA")
    if first_job not in FIRST_JOB:
        raise ValueError(f"INSA: first_job={first_job!r}, expected one of {FIRST_JOB}")
    graph = DisjunctiveGraph(instance)
    first, rest = insertion_order(instance, first_job)
    for o in first:
        graph.insert(o, len(graph.seqs[graph.machine[o]]))
    for v in rest:
        pos, _ = best_insertion(graph, v)
        graph.insert(v, pos)
    return graph


class INSASolver:
    """INSA as a :class:`~schedgym.baselines.base.Solver` (classic job-shop, makespan).

    Args:
        first_job: ``"longest"`` (the paper: the longest job's operations are placed first) or
            ``"none"`` (every operation inserted by non-increasing processing time).
        name: the name results are reported under.

    The construction is deterministic and runs to completion (O(operations^2)); ``time_limit_s`` is
    validated and recorded but not needed. The solution's ``bound`` is the larger of the trivial bound
    (longest job, largest machine load) and the instance's published lower bound; ``status`` is ``"optimal"`` when the makespan meets it, else
    ``"feasible"``.
    """

    domains = ("jobshop",)

    def __init__(self, first_job: str = "longest", name: str = "insa"):
        if first_job not in FIRST_JOB:
            raise ValueError(f"INSASolver: first_job={first_job!r}, expected one of {FIRST_JOB}")
        self.first_job = first_job
        self.name = name

    def solve(self, instance: JobShopInstance, time_limit_s: float | None = None) -> JobShopSolution:
        """INSA's semi-active schedule of ``instance`` (start times in time units); ``meta`` holds
        ``makespan``, ``wall_time_s`` (seconds) and ``solution_source``."""
        limit = check_time_limit(time_limit_s, type(self).__name__)
        check_classic(instance, type(self).__name__)
        t0 = time.perf_counter()
        graph = insa_graph(instance, self.first_job)
        lb = makespan_lower_bound(instance)
        sol = graph.solution()
        mk = sol.makespan(instance)
        sol.status = "optimal" if mk <= lb else "feasible"
        sol.bound = float(lb)
        sol.meta.update(solver=self.name, makespan=mk, first_job=self.first_job, time_limit_s=limit,
                        solution_source="insa", wall_time_s=time.perf_counter() - t0)
        return sol
