"""Independent feasibility check of a job-shop schedule.

Written from the problem definition only (it imports no scheduling code): every operation has a
start time and an eligible machine, runs for exactly its processing time on that machine, starts no
earlier than its job's release and its job predecessor's completion, and no machine processes two
operations at once.

Times are in the instance's time units. Start times may be integers or floats; they are compared
exactly as given (never truncated), so a schedule with fractional starts is feasible only if it is
feasible in exact arithmetic on those values. The same function checks classic and flexible
instances (a classic instance is a flexible one with one eligible machine per operation).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution

Time = int | float


def _start_time(instance: JobShopInstance, o: int, value: object) -> Time:
    """Operation ``o``'s start time as a Python int or float (time units), exactly as given."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InfeasibleSolution(
            f"{instance.name}: operation {o} has start time {value!r} of type {type(value).__name__}; "
            "start times must be real numbers (time units)")
    if isinstance(value, numbers.Integral):
        return int(value)
    t = float(value)
    if not math.isfinite(t):
        raise InfeasibleSolution(
            f"{instance.name}: operation {o} has start time {t}; start times must be finite numbers (time units)")
    return t


def _machine_index(instance: JobShopInstance, o: int, value: object) -> int:
    """Operation ``o``'s machine as an int; a non-integral machine (1.5, "a") is an error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InfeasibleSolution(
            f"{instance.name}: operation {o} has machine {value!r}; machines are integer indices "
            f"0..{instance.proc.shape[1] - 1}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise InfeasibleSolution(
            f"{instance.name}: operation {o} has machine {value!r}; machines are integer indices "
            f"0..{instance.proc.shape[1] - 1}")
    return int(value)


def _as_list(values: np.ndarray, check: Callable[[int, object], Time]) -> list[Time]:
    """``values`` as Python numbers; integer arrays and finite float arrays as they are, anything else
    element by element through ``check(o, value)`` (which raises naming the first bad operation)."""
    if values.dtype.kind in "iu" or (values.dtype.kind == "f" and np.isfinite(values).all()):
        return values.tolist()
    return [check(o, v) for o, v in enumerate(values.tolist())]


def validate(instance: JobShopInstance, solution: JobShopSolution) -> None:
    """Raise :class:`InfeasibleSolution` naming the first violated constraint; return None if feasible."""
    n_ops = instance.proc.shape[0]
    start_arr = np.asarray(solution.start)
    machine_arr = np.asarray(solution.machine)
    if start_arr.shape != (n_ops,) or machine_arr.shape != (n_ops,):
        raise InfeasibleSolution(
            f"{instance.name}: solution has {start_arr.shape}/{machine_arr.shape} start/machine entries, "
            f"expected ({n_ops},) each")
    start = _as_list(start_arr, lambda o, v: _start_time(instance, o, v))
    machine = machine_arr.tolist() if machine_arr.dtype.kind in "iu" else \
        [_machine_index(instance, o, v) for o, v in enumerate(machine_arr.tolist())]
    for o in range(n_ops):
        if start[o] < 0:
            raise InfeasibleSolution(f"{instance.name}: operation {o} is not scheduled (start {start[o]})")
        m = machine[o]
        if not 0 <= m < instance.proc.shape[1] or not instance.eligible[o, m]:
            allowed = [int(x) for x in np.flatnonzero(instance.eligible[o])]
            raise InfeasibleSolution(
                f"{instance.name}: operation {o} runs on machine {m}, allowed machines are {allowed}")
    ends = [start[o] + int(instance.proc[o, machine[o]]) for o in range(n_ops)]
    _check_jobs(instance, start, ends)
    _check_machines(instance, start, ends, machine)


def _check_jobs(instance: JobShopInstance, start: list[Time], ends: list[Time]) -> None:
    """Release dates and precedence inside each job."""
    for j in range(len(instance.job_ptr) - 1):
        first, last = int(instance.job_ptr[j]), int(instance.job_ptr[j + 1])
        if first < last and start[first] < int(instance.release[j]):
            raise InfeasibleSolution(
                f"{instance.name}: job {j} starts at {start[first]} before its release {instance.release[j]}")
        for o in range(first + 1, last):
            if start[o] < ends[o - 1]:
                raise InfeasibleSolution(
                    f"{instance.name}: job {j}: operation {o} starts at {start[o]} before its predecessor "
                    f"{o - 1} ends at {ends[o - 1]}")


def _check_machines(instance: JobShopInstance, start: list[Time], ends: list[Time], machine: list[int]) -> None:
    """One operation at a time per machine (zero-length operations occupy no time)."""
    per_machine: dict[int, list[tuple[Time, Time, int]]] = {}
    for o, m in enumerate(machine):
        per_machine.setdefault(m, []).append((start[o], ends[o], o))
    for m, items in per_machine.items():
        items.sort()
        latest_end: Time = -1
        latest_op: int = -1
        latest_start: Time = -1
        for s, e, o in items:
            if e == s:
                continue
            if s < latest_end:
                raise InfeasibleSolution(
                    f"{instance.name}: machine {m} runs operations {latest_op} [{latest_start}, {latest_end}) and "
                    f"{o} [{s}, {e}) at the same time")
            if e > latest_end:
                latest_end, latest_op, latest_start = e, o, s
