"""The GPU-DAG domain's hooks for evaluation and leaderboards (static and online DAG scheduling)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.core.domain import Domain
from schedgym.envs.gpudag.instances import load_instance, resolve_workload
from schedgym.envs.gpudag.metrics import metrics
from schedgym.envs.gpudag.types import GPUDagInstance
from schedgym.envs.gpudag.validate import validate

ENV_ID = "schedgym/GPUDag-v0"


def env_id_of(instance: GPUDagInstance) -> str:
    return ENV_ID


def make_env(instance: GPUDagInstance, **env_kwargs: Any) -> gym.Env:
    """An env sized for ``instance``."""
    import schedgym  # noqa: F401  (registers the ids)

    return gym.make(ENV_ID, instance=instance, **env_kwargs)


def primary_metric_of(name: str) -> str:
    """``mean_jct`` for a workload of several jobs (online arrivals: what the env's ``auto`` reward
    and best-of-k sampling optimise), ``slr`` for one DAG."""
    return "mean_jct" if load_instance(name).n_jobs > 1 else "slr"


def render_solution(instance, solution) -> np.ndarray:
    """Gantt chart (one row per device) of a complete schedule."""
    from schedgym.envs.gpudag.viewer import gantt_rgb

    return gantt_rgb(instance, solution.start, solution.device)


DOMAIN = Domain(
    name="gpudag",
    env_ids=(ENV_ID,),
    resolve=resolve_workload,
    load=load_instance,
    make_env=make_env,
    validate=validate,
    metrics=metrics,
    env_id_of=env_id_of,
    primary_metric="slr",
    lower_is_better=True,
    table_metrics=("makespan", "slr", "speedup", "mean_jct"),
    objective="makespan",
    render_solution=render_solution,
    primary_metric_of=primary_metric_of,
)
