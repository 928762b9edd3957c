"""Gymnasium environments of schedgym, one sub-package per scheduling domain.

Environments are registered with string entry points so that importing this package stays cheap:
an environment's module is imported only when ``gymnasium.make`` builds it.
"""

from __future__ import annotations

import gymnasium as gym

#: Every environment id schedgym registers, with its entry point.
ENV_SPECS: dict[str, str] = {
    "schedgym/JobShop-v0": "schedgym.envs.jobshop.env:JobShopEnv",
    "schedgym/FlexibleJobShop-v0": "schedgym.envs.jobshop.env:FlexibleJobShopEnv",
    "schedgym/LLMRouting-v0": "schedgym.envs.llmserve.env:LLMRoutingEnv",
    "schedgym/LLMQueue-v0": "schedgym.envs.llmserve.env:LLMQueueEnv",
    "schedgym/GPUDag-v0": "schedgym.envs.gpudag.env:GPUDagEnv",
    "schedgym/VMReschedule-v0": "schedgym.envs.vmsched.env:VMRescheduleEnv",
}


def register_envs() -> None:
    """Register all schedgym environment ids with Gymnasium (idempotent)."""
    for env_id, entry_point in ENV_SPECS.items():
        if env_id not in gym.registry:
            # order_enforce=False: the envs check the order themselves (envs/core/base_env.py), so
            # step() before reset(), after the end and after a failed reset() raise one error
            gym.register(id=env_id, entry_point=entry_point, disable_env_checker=False, order_enforce=False)


__all__ = ["ENV_SPECS", "register_envs"]
