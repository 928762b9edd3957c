"""Routing baselines for LLM serving (``schedgym/LLMRouting-v0``): round robin, random, least
outstanding requests (queued + running), least KV load, power of two choices, prefix affinity
(longest cached prefix among the replicas within a load bound). The rules are those
of :class:`schedgym.envs.llmserve.cluster.Router`, applied to the load the env reports in
``info["candidates"]``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.llmserve.cluster import ROUTERS, Router, RouterView


class RoutingPolicy:
    """Route each arrival with a fixed rule (see :data:`schedgym.envs.llmserve.cluster.ROUTERS`)."""

    domains = ("llmserve",)

    def __init__(self, rule: str = "round_robin", seed: int = 0):
        if rule not in ROUTERS:
            raise ValueError(f"routing rule must be one of {ROUTERS}, got {rule!r}")
        self.rule = rule
        self.seed = int(seed)
        self.name = {"round_robin": "round_robin", "random": "random_route", "least_outstanding": "least_outstanding",
                     "least_kv": "least_kv", "power_of_two": "power_of_two",
                     "prefix_affinity": "prefix_affinity"}[rule]
        self.router = Router(rule, seed)

    def reset_seed(self, seed: int) -> None:
        self.router = Router(self.rule, self.seed + seed)

    def reset(self, env: gym.Env) -> None:
        self.router = Router(self.rule, int(self.router.rng.integers(1 << 30)))

    def act(self, obs: Any, info: dict) -> int:
        mask = info["action_mask"]
        c = info["candidates"]
        n = len(c["queued"])
        view = RouterView(n, np.array(c["kv_total"]))
        view.queued, view.running, view.kv_used = list(c["queued"]), list(c["running"]), list(c["kv_used"])
        a = int(self.router(view, c["prompt"], c["pending_blocks"], c.get("cached_prefix")))
        if not mask[a]:
            a = int(np.flatnonzero(mask)[0])
        return a
