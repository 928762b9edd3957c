"""Seeded job-shop instance generators.

* :class:`UniformJobShopGenerator`: L2D's training distribution, processing times uniform in
  [low, high] (default [1, 99]) and a random machine permutation per job.
* :func:`taillard_instance`: Taillard's (1993) generator with his linear congruential random number
  generator; with the seeds of his paper it reproduces the benchmark instances exactly.
* :class:`FlexibleJobShopGenerator`: Brandimarte-style flexible instances.
* :func:`add_due_dates`: due dates by the total-work-content rule ``d_j = r_j + tightness * sum p``.

Every generator is a callable ``generator(rng) -> JobShopInstance`` so that environments can draw a
fresh instance per episode from their seeded ``np_random``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schedgym.envs.jobshop.types import JobShopInstance


def add_due_dates(
    instance: JobShopInstance, rng: np.random.Generator, tightness: float = 1.3, spread: float = 0.0
) -> JobShopInstance:
    """Return a copy with due dates ``d_j = r_j + round(f_j * total work of j)``.

    Args:
        tightness: due-date tightness factor (1.0 = no slack beyond the job's own work; larger is looser).
        spread: ``f_j`` is drawn uniformly in ``[tightness*(1-spread), tightness*(1+spread)]``.
    """
    work = np.add.reduceat(instance.min_proc, instance.job_ptr[:-1]).astype(np.float64)
    f = rng.uniform(tightness * (1 - spread), tightness * (1 + spread), size=instance.n_jobs)
    due = instance.release + np.round(f * work).astype(np.int64)
    return instance.with_due_dates(due)


@dataclass
class UniformJobShopGenerator:
    """Random JSSP with ``n_jobs`` x ``n_machines`` and processing times uniform in [low, high].

    This is the distribution L2D (Zhang et al., NeurIPS 2020) trains on. With ``due_tightness``
    set, due dates follow :func:`add_due_dates`. With ``sizes`` (for example ``["10x10", "15x15"]``,
    jobs x machines) each instance's size is drawn uniformly from the list instead of
    ``n_jobs`` x ``n_machines`` (a curriculum-free size mixture, as in self-labeling's training).
    """

    n_jobs: int = 10
    n_machines: int = 10
    low: int = 1
    high: int = 99
    due_tightness: float | None = None
    sizes: list[str] | None = None

    def __post_init__(self) -> None:
        self._sizes: list[tuple[int, int]] = []
        for s in self.sizes or []:
            try:
                j, m = (int(x) for x in str(s).lower().split("x"))
            except ValueError:
                raise ValueError(f"UniformJobShopGenerator: size {s!r} is not JOBSxMACHINES, e.g. '15x15'") from None
            if j < 1 or m < 1:
                raise ValueError(f"UniformJobShopGenerator: size {s!r} needs at least one job and one machine")
            self._sizes.append((j, m))

    def size_bounds(self) -> tuple[int, int, int]:
        """(max jobs, max machines, max operations) of the instances this generator draws."""
        if self._sizes:
            return (max(j for j, _ in self._sizes), max(m for _, m in self._sizes),
                    max(j * m for j, m in self._sizes))
        return self.n_jobs, self.n_machines, self.n_jobs * self.n_machines

    def __call__(self, rng: np.random.Generator) -> JobShopInstance:
        J, M = self.n_jobs, self.n_machines
        if self._sizes:
            J, M = self._sizes[int(rng.integers(len(self._sizes)))]
        durations = rng.integers(self.low, self.high + 1, size=(J, M))
        machines = np.argsort(rng.random((J, M)), axis=1)
        inst = JobShopInstance.from_matrices(
            f"uniform{J}x{M}", machines, durations, n_machines=M,
            source=f"generator:uniform({self.low},{self.high})",
        )
        if self.due_tightness is not None:
            inst = add_due_dates(inst, rng, self.due_tightness)
        return inst


class _TaillardLCG:
    """Taillard's random number generator (Lehmer, a=16807, m=2^31-1, Schrage's method)."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def unif(self, low: int, high: int) -> int:
        m, a, b, c = 2147483647, 16807, 127773, 2836
        k = self.seed // b
        self.seed = a * (self.seed % b) - k * c
        if self.seed < 0:
            self.seed += m
        return low + int(self.seed / m * (high - low + 1))


def taillard_instance(
    n_jobs: int, n_machines: int, time_seed: int, machine_seed: int, name: str | None = None
) -> JobShopInstance:
    """Taillard's (1993) job-shop generator: durations U[1, 99] and random machine orders.

    With the seeds printed in the paper (ta01: time seed 840612802, machine seed 398197754) it
    reproduces the benchmark instance.
    """
    t = _TaillardLCG(time_seed)
    g = _TaillardLCG(machine_seed)
    durations = np.array([[t.unif(1, 99) for _ in range(n_machines)] for _ in range(n_jobs)], dtype=np.int64)
    machines = np.zeros((n_jobs, n_machines), dtype=np.int64)
    for j in range(n_jobs):
        order = list(range(n_machines))
        for k in range(n_machines):
            s = g.unif(k, n_machines - 1)
            order[k], order[s] = order[s], order[k]
        machines[j] = order
    return JobShopInstance.from_matrices(
        name or f"taillard{n_jobs}x{n_machines}_{time_seed}", machines, durations, n_machines=n_machines,
        source=f"generator:taillard(time_seed={time_seed}, machine_seed={machine_seed})",
    )


@dataclass
class TaillardJobShopGenerator:
    """Taillard-style instances drawn with Taillard's own generator from seeds taken from ``rng``."""

    n_jobs: int = 15
    n_machines: int = 15

    def size_bounds(self) -> tuple[int, int, int]:
        return self.n_jobs, self.n_machines, self.n_jobs * self.n_machines

    def __call__(self, rng: np.random.Generator) -> JobShopInstance:
        ts, ms = (int(x) for x in rng.integers(1, 2**31 - 1, size=2))
        return taillard_instance(self.n_jobs, self.n_machines, ts, ms)


@dataclass
class FlexibleJobShopGenerator:
    """Brandimarte-style flexible job-shop.

    Each job has ``ops_low..ops_high`` operations; each operation can run on ``alt_low..alt_high``
    distinct machines with processing times uniform in ``[low, high]`` per machine.

    With ``variants`` (a list of keyword overrides of these fields, for example
    ``[{"n_jobs": 15, "n_machines": 8, "alt_high": 5}]``) each instance is drawn from one variant
    chosen uniformly: a mixture of sizes and flexibilities, as in Brandimarte's set.
    """

    n_jobs: int = 10
    n_machines: int = 6
    ops_low: int = 5
    ops_high: int = 7
    alt_low: int = 1
    alt_high: int = 3
    low: int = 1
    high: int = 20
    due_tightness: float | None = None
    variants: list[dict] | None = None

    def __post_init__(self) -> None:
        fields = ("n_jobs", "n_machines", "ops_low", "ops_high", "alt_low", "alt_high", "low", "high")
        self._variants: list[FlexibleJobShopGenerator] = []
        for i, v in enumerate(self.variants or []):
            bad = sorted(set(v) - set(fields))
            if bad:
                raise ValueError(f"FlexibleJobShopGenerator: variants[{i}] has unknown keys {bad}; allowed: {fields}")
            self._variants.append(FlexibleJobShopGenerator(
                **({f: getattr(self, f) for f in fields} | dict(v)), due_tightness=self.due_tightness))

    def size_bounds(self) -> tuple[int, int, int]:
        if self._variants:
            b = [g.size_bounds() for g in self._variants]
            return max(x[0] for x in b), max(x[1] for x in b), max(x[2] for x in b)
        return self.n_jobs, self.n_machines, self.n_jobs * self.ops_high

    def __call__(self, rng: np.random.Generator) -> JobShopInstance:
        if self._variants:
            return self._variants[int(rng.integers(len(self._variants)))](rng)
        n_ops = rng.integers(self.ops_low, self.ops_high + 1, size=self.n_jobs)
        job_ptr = np.concatenate([[0], np.cumsum(n_ops)]).astype(np.int64)
        total = int(job_ptr[-1])
        proc = np.zeros((total, self.n_machines), dtype=np.int64)
        eligible = np.zeros((total, self.n_machines), dtype=bool)
        hi_alt = min(self.alt_high, self.n_machines)
        for o in range(total):
            k = int(rng.integers(self.alt_low, hi_alt + 1))
            ms = rng.choice(self.n_machines, size=k, replace=False)
            eligible[o, ms] = True
            proc[o, ms] = rng.integers(self.low, self.high + 1, size=k)
        inst = JobShopInstance(
            name=f"flex{self.n_jobs}x{self.n_machines}", job_ptr=job_ptr, proc=proc, eligible=eligible,
            release=np.zeros(self.n_jobs, dtype=np.int64), source="generator:flexible",
        )
        if self.due_tightness is not None:
            inst = add_due_dates(inst, rng, self.due_tightness)
        return inst


@dataclass
class MixtureGenerator:
    """Draws each instance from one of ``generators`` chosen uniformly (e.g. several sizes)."""

    generators: list

    def size_bounds(self) -> tuple[int, int, int]:
        b = [g.size_bounds() for g in self.generators]
        return max(x[0] for x in b), max(x[1] for x in b), max(x[2] for x in b)

    def __call__(self, rng: np.random.Generator) -> JobShopInstance:
        return self.generators[int(rng.integers(len(self.generators)))](rng)
