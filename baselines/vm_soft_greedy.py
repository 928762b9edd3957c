"""Softmax-sampled greedy rescheduling: a randomised rule (for best-of-k runs and training labels).

Every migration samples a VM with probability proportional to ``exp(gain / temperature)``, where
``gain`` is the number of fragment cores its best single move removes
(:func:`schedgym.envs.vmsched.targets.best_targets`: fewest fragment cores added at the target,
ties best-fit), and moves it there. Unlike the greedy rules it does not stop at a local optimum: a
neutral or worsening move can open a better one later, which is where the headroom between the
greedy rules and CP-SAT LNS lies. Evacuations first (:func:`~schedgym.baselines.vm_common.candidate_vms`).
"""

from __future__ import annotations

import time

import numpy as np

from schedgym.baselines.vm_common import Move, MovePolicy, candidate_vms, run_rule
from schedgym.envs.vmsched.metrics import metrics
from schedgym.envs.vmsched.state import VMState
from schedgym.envs.vmsched.targets import best_targets
from schedgym.envs.vmsched.types import VMInstance, VMSolution


class VMSoftGreedyPolicy(MovePolicy):
    """Softmax-sampled greedy (see the module docstring).

    Args:
        temperature: softmax temperature in fragment cores (> 0; small: close to the joint greedy).
        seed: seed of the sampling; successive episodes continue the same random stream.
    """

    name = "vm_soft_greedy"

    def __init__(self, temperature: float = 1.0, seed: int = 0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"vm_soft_greedy: temperature must be > 0 fragment cores, got {temperature!r}")
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def reset_seed(self, seed: int) -> None:
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def rule(self, state: VMState) -> Move | None:
        target, gain = best_targets(state)
        cand, _ = candidate_vms(state)
        ok = np.flatnonzero(cand & (target >= 0))
        if len(ok) == 0:
            return None
        z = gain[ok] / self.temperature
        p = np.exp(z - z.max())
        v = int(ok[self.rng.choice(len(ok), p=p / p.sum())])
        pm, numa = divmod(int(target[v]), 2)
        return v, pm, numa


class VMSoftGreedySolver:
    """Best of ``samples`` softmax-sampled greedy plans (lowest final fragment rate); an offline
    solver, the randomised-rule counterpart of the learned policy's best of k.

    Args:
        samples: plans drawn per instance (>= 1).
        temperature: as :class:`VMSoftGreedyPolicy`.
        seed: seed of the first plan's sampling (plan i uses ``seed + i``).
        name: policy name in result tables (default ``vm_soft_greedy_x<samples>``).
    """

    domains = ("vmsched",)

    def __init__(self, samples: int = 8, temperature: float = 1.0, seed: int = 0, name: str | None = None):
        if int(samples) < 1:
            raise ValueError(f"vm_soft_greedy: samples must be >= 1, got {samples!r}")
        self.samples = int(samples)
        self.rule = VMSoftGreedyPolicy(temperature, seed)
        self.seed = int(seed)
        self.name = name or f"vm_soft_greedy_x{self.samples}"

    def reset_seed(self, seed: int) -> None:
        self.seed = int(seed)

    def solve(self, instance: VMInstance, time_limit_s: float | None = None) -> VMSolution:
        """The best of the sampled plans (``time_limit_s`` is not used: the sample count bounds the work)."""
        t0 = time.perf_counter()
        best, best_fr = None, float("inf")
        for i in range(self.samples):
            self.rule.reset_seed(self.seed + i)
            plan = run_rule(instance, self.rule.rule, name=self.name)
            fr = metrics(instance, plan)["fragment_rate"]
            if fr < best_fr:
                best, best_fr = plan, fr
        best.meta.update(samples=self.samples)
        best.wall_time_s = time.perf_counter() - t0
        return best
