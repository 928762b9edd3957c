"""Job-shop instance and solution types, shared by the env, the baselines, the solvers and the validator.

Time is in the instance's abstract integer time units throughout (the benchmark files have no unit).
Operations are numbered globally, job by job: the operations of job ``j`` are
``job_ptr[j] .. job_ptr[j+1]-1`` in their processing order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True, eq=False)
class JobShopInstance:
    """A (flexible) job-shop scheduling problem.

    A classic JSSP instance is the special case where every operation has exactly one eligible
    machine. Durations are non-negative integers (time units).

    Attributes:
        name: instance name (``"ta01"``) or a generated name.
        job_ptr: (J+1,) int64, operations of job j are ``job_ptr[j]:job_ptr[j+1]``.
        proc: (O, M) int64, processing time of operation o on machine m; 0 where not eligible.
        eligible: (O, M) bool, machine m may process operation o.
        release: (J,) int64, earliest start of each job's first operation (0 when unused).
        due: (J,) int64 or None, due date of each job (for tardiness objectives and EDD).
        weight: (J,) float64 or None, tardiness weight of each job (None means all 1).
        lower_bound: best known lower bound on the optimal makespan, or None.
        upper_bound: best known makespan (upper bound), or None.
        source: where the instance came from (file path, "generator:...").
    """

    name: str
    job_ptr: np.ndarray  # (J+1,) int64
    proc: np.ndarray  # (O, M) int64
    eligible: np.ndarray  # (O, M) bool
    release: np.ndarray  # (J,) int64
    due: np.ndarray | None = None  # (J,) int64
    weight: np.ndarray | None = None  # (J,) float64
    lower_bound: int | None = None
    upper_bound: int | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def n_jobs(self) -> int:
        return int(self.job_ptr.shape[0] - 1)

    @property
    def n_machines(self) -> int:
        return int(self.proc.shape[1])

    @property
    def n_ops(self) -> int:
        return int(self.proc.shape[0])

    @cached_property
    def ops_per_job(self) -> np.ndarray:
        """(J,) int64 number of operations of each job."""
        return np.diff(self.job_ptr)

    @cached_property
    def op_job(self) -> np.ndarray:
        """(O,) int64 job of each operation."""
        return np.repeat(np.arange(self.n_jobs, dtype=np.int64), self.ops_per_job)

    @cached_property
    def op_pos(self) -> np.ndarray:
        """(O,) int64 position of each operation within its job (0-based)."""
        return np.arange(self.n_ops, dtype=np.int64) - self.job_ptr[self.op_job]

    @cached_property
    def is_flexible(self) -> bool:
        """True when some operation may run on more than one machine."""
        return bool((self.eligible.sum(axis=1) > 1).any())

    @cached_property
    def min_proc(self) -> np.ndarray:
        """(O,) int64 shortest processing time of each operation over its eligible machines."""
        big = np.iinfo(np.int64).max
        return np.where(self.eligible, self.proc, big).min(axis=1)

    @cached_property
    def mean_proc(self) -> np.ndarray:
        """(O,) float64 mean processing time over eligible machines."""
        return (self.proc * self.eligible).sum(axis=1) / self.eligible.sum(axis=1)

    @cached_property
    def op_machine(self) -> np.ndarray:
        """(O,) int64 the machine of each operation (classic JSSP); -1 for flexible operations."""
        m = self.eligible.argmax(axis=1).astype(np.int64)
        m[self.eligible.sum(axis=1) != 1] = -1
        return m

    @cached_property
    def max_proc(self) -> int:
        return int(self.proc.max()) if self.proc.size else 1

    @property
    def has_due_dates(self) -> bool:
        return self.due is not None

    @property
    def best_known(self) -> int | None:
        """Best known makespan (alias of ``upper_bound``)."""
        return self.upper_bound

    def job_ops(self, j: int) -> range:
        return range(int(self.job_ptr[j]), int(self.job_ptr[j + 1]))

    def __repr__(self) -> str:
        kind = "FJSP" if self.is_flexible else "JSSP"
        return (
            f"JobShopInstance({self.name!r}, {kind}, jobs={self.n_jobs}, machines={self.n_machines}, "
            f"ops={self.n_ops}, lb={self.lower_bound}, ub={self.upper_bound})"
        )

    # ---- constructors --------------------------------------------------------------------
    @staticmethod
    def from_matrices(
        name: str,
        machines: np.ndarray,
        durations: np.ndarray,
        n_machines: int | None = None,
        **kwargs,
    ) -> JobShopInstance:
        """Build a classic JSSP from (J, K) machine and duration matrices (machine 0-indexed)."""
        machines = np.asarray(machines, dtype=np.int64)
        durations = np.asarray(durations, dtype=np.int64)
        n_jobs, n_per = machines.shape
        m = int(n_machines if n_machines is not None else machines.max() + 1)
        n_ops = n_jobs * n_per
        proc = np.zeros((n_ops, m), dtype=np.int64)
        eligible = np.zeros((n_ops, m), dtype=bool)
        rows = np.arange(n_ops)
        proc[rows, machines.ravel()] = durations.ravel()
        eligible[rows, machines.ravel()] = True
        job_ptr = np.arange(0, n_ops + 1, n_per, dtype=np.int64)
        release = kwargs.pop("release", None)
        if release is None:
            release = np.zeros(n_jobs, dtype=np.int64)
        return JobShopInstance(
            name=name, job_ptr=job_ptr, proc=proc, eligible=eligible,
            release=np.asarray(release, dtype=np.int64), **kwargs,
        )

    def with_due_dates(self, due: np.ndarray, weight: np.ndarray | None = None) -> JobShopInstance:
        """A copy of this instance with job due dates (and optional tardiness weights)."""
        return JobShopInstance(
            name=self.name, job_ptr=self.job_ptr, proc=self.proc, eligible=self.eligible,
            release=self.release, due=np.asarray(due, dtype=np.int64),
            weight=None if weight is None else np.asarray(weight, dtype=np.float64),
            lower_bound=self.lower_bound, upper_bound=self.upper_bound, source=self.source,
            meta=dict(self.meta),
        )


@dataclass
class JobShopSolution:
    """A complete schedule: the start time and the machine of every operation.

    Attributes:
        start: (O,) int64 start time of each operation (time units).
        machine: (O,) int64 machine that processes each operation.
        status: "feasible", "optimal" (proved by a solver) or "none".
        bound: best lower bound on the objective known to the producer (solvers), else None.
        meta: free-form details (solver wall time, scheme, policy).
    """

    start: np.ndarray  # (O,) int64
    machine: np.ndarray  # (O,) int64
    status: str = "feasible"
    bound: float | None = None
    meta: dict = field(default_factory=dict)

    def end(self, instance: JobShopInstance) -> np.ndarray:
        """(O,) int64 completion time of each operation."""
        return self.start + instance.proc[np.arange(instance.n_ops), self.machine]

    def makespan(self, instance: JobShopInstance) -> int:
        return int(self.end(instance).max()) if instance.n_ops else 0
