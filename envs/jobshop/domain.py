"""The job-shop domain's hooks for evaluation and leaderboards (JSSP and flexible JSSP)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.core.domain import Domain
from schedgym.envs.jobshop.instances import load_instance, resolve_instances
from schedgym.envs.jobshop.metrics import metrics
from schedgym.envs.jobshop.types import JobShopInstance
from schedgym.envs.jobshop.validate import validate


def env_id_of(instance: JobShopInstance) -> str:
    return "schedgym/FlexibleJobShop-v0" if instance.is_flexible else "schedgym/JobShop-v0"


def render_solution(instance: JobShopInstance, solution) -> np.ndarray:
    """Gantt chart of a complete schedule."""
    from schedgym.envs.jobshop.viewer import gantt_rgb

    return gantt_rgb(instance, solution.start, solution.machine)


def make_env(instance: JobShopInstance, **env_kwargs: Any) -> gym.Env:
    """An env sized for ``instance`` (flexible instances get ``FlexibleJobShop-v0``)."""
    import schedgym  # noqa: F401  (registers the ids)

    return gym.make(env_id_of(instance), instance=instance, **env_kwargs)


DOMAIN = Domain(
    name="jobshop",
    env_ids=("schedgym/JobShop-v0", "schedgym/FlexibleJobShop-v0"),
    resolve=resolve_instances,
    load=load_instance,
    make_env=make_env,
    validate=validate,
    metrics=metrics,
    env_id_of=env_id_of,
    primary_metric="gap_to_bks_pct",
    lower_is_better=True,
    table_metrics=("makespan", "gap_to_bks_pct"),
    objective="makespan",
    render_solution=render_solution,
)
