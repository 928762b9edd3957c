"""Protocols every policy and solver implements (DESIGN.md section 2).

* A **policy** acts step by step on an environment: ``reset(env)`` once per episode, then
  ``act(obs, info) -> int`` for each decision. Baselines and trained agents alike.
* A **solver** is an offline method: ``solve(instance, time_limit_s) -> Solution`` where the
  solution carries ``status`` (``"optimal"``, ``"feasible"`` or ``"none"``) and ``bound``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Policy(Protocol):
    name: str

    def reset(self, env: gym.Env) -> None: ...

    def act(self, obs: Any, info: dict) -> int: ...


@runtime_checkable
class Solver(Protocol):
    name: str

    def solve(self, instance: Any, time_limit_s: float | None = None) -> Any: ...


class RandomMaskedPolicy:
    """Uniformly random valid action (reads the env's ``action_masks()``)."""

    name = "random"

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.env: gym.Env | None = None

    def reset_seed(self, episode_seed: int) -> None:
        """Reseed from (constructor seed, episode seed): the same episode on any runner and order."""
        self.rng = np.random.default_rng([self.seed or 0, int(episode_seed)])

    def reset(self, env: gym.Env) -> None:
        self.env = env

    def act(self, obs: Any, info: dict) -> int:
        mask = info.get("action_mask")
        if mask is None:
            mask = self.env.unwrapped.action_masks()
        return int(self.rng.choice(np.flatnonzero(mask)))


def check_time_limit(time_limit_s: Any, solver: str) -> float | None:
    """``time_limit_s`` (seconds) as a float, ``None`` passed through (the solver's default).

    A limit <= 0, NaN or a non-number would let a solver return its warm start or HEFT hint as if it
    had searched, so it is a ``ValueError`` naming ``time_limit_s``, the solver and the valid range
    (> 0 seconds; ``inf`` means no limit).
    """
    if time_limit_s is None:
        return None
    try:
        value = float(time_limit_s)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(time_limit_s, bool) or not value > 0:
        raise ValueError(f"{solver}: time_limit_s={time_limit_s!r} is out of range; it must be a number of "
                         "seconds > 0 (inf for no limit)")
    return value
