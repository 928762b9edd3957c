"""Independent feasibility check of a job-shop schedule.

Written from the problem definition only (it imports no scheduling code): every operation has a
start time and an eligible machine, runs for exactly its processing time on that machine, starts no
earlier than its job's release and its job predecessor's completion, and no machine processes two
operations at once.
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution


def validate(instance: JobShopInstance, solution: JobShopSolution) -> None:
    """Raise :class:`InfeasibleSolution` naming the first violated constraint; return None if feasible."""
    n_ops = instance.proc.shape[0]
    start = np.asarray(solution.start)
    machine = np.asarray(solution.machine)
    if start.shape != (n_ops,) or machine.shape != (n_ops,):
        raise InfeasibleSolution(
            f"{instance.name}: solution has {start.shape}/{machine.shape} start/machine entries, "
            f"expected ({n_ops},) each")
    for o in range(n_ops):
        if start[o] < 0:
            raise InfeasibleSolution(f"{instance.name}: operation {o} is not scheduled (start {start[o]})")
        m = int(machine[o])
        if not 0 <= m < instance.proc.shape[1] or not instance.eligible[o, m]:
            allowed = [int(x) for x in np.flatnonzero(instance.eligible[o])]
            raise InfeasibleSolution(
                f"{instance.name}: operation {o} runs on machine {m}, allowed machines are {allowed}")
    ends = [int(start[o]) + int(instance.proc[o, int(machine[o])]) for o in range(n_ops)]
    # precedence inside each job, and release dates
    for j in range(len(instance.job_ptr) - 1):
        first, last = int(instance.job_ptr[j]), int(instance.job_ptr[j + 1])
        if first < last and start[first] < instance.release[j]:
            raise InfeasibleSolution(
                f"{instance.name}: job {j} starts at {start[first]} before its release {instance.release[j]}")
        for o in range(first + 1, last):
            if start[o] < ends[o - 1]:
                raise InfeasibleSolution(
                    f"{instance.name}: job {j}: operation {o} starts at {start[o]} before its predecessor "
                    f"{o - 1} ends at {ends[o - 1]}")
    # one operation at a time per machine
    per_machine: dict[int, list[tuple[int, int, int]]] = {}
    for o in range(n_ops):
        per_machine.setdefault(int(machine[o]), []).append((int(start[o]), ends[o], o))
    for m, items in per_machine.items():
        items.sort()
        latest_end, latest_op, latest_start = -1, -1, -1
        for s, e, o in items:
            if e == s:  # zero-length operations occupy no time
                continue
            if s < latest_end:
                raise InfeasibleSolution(
                    f"{instance.name}: machine {m} runs operations {latest_op} [{latest_start}, {latest_end}) and "
                    f"{o} [{s}, {e}) at the same time")
            if e > latest_end:
                latest_end, latest_op, latest_start = e, o, s
