"""The VM rescheduling domain's hooks for evaluation and leaderboards."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.core.domain import Domain
from schedgym.envs.vmsched.instances import load_instance, resolve_instances
from schedgym.envs.vmsched.metrics import metrics
from schedgym.envs.vmsched.types import VMInstance, VMSolution, check_mnl
from schedgym.envs.vmsched.validate import validate

ENV_ID = "schedgym/VMReschedule-v0"


def env_id_of(instance: VMInstance) -> str:
    return ENV_ID


def render_solution(instance: VMInstance, solution: VMSolution) -> np.ndarray:
    """(H, W, 3) uint8 picture of PM/NUMA usage before and after the migration plan: per PM the
    used cores of both NUMA nodes, free cores in grey and fragment cores (free mod g) in red
    (:func:`schedgym.envs.vmsched.viewer.usage_rgb`)."""
    from schedgym.envs.vmsched.viewer import usage_rgb

    pm, numa = solution.final_placement(instance)
    moved = int(((pm != instance.init_pm) | (numa != instance.init_numa)).sum())
    policy = solution.meta.get("policy") or solution.meta.get("solver")
    title = f"after {solution.n_moves} migrations ({moved} VMs moved" + (f", {policy})" if policy else ")")
    return usage_rgb(instance, pm, numa, title=title)


def with_env_overrides(instance: VMInstance, env_kwargs: dict[str, Any]) -> VMInstance:
    """The instance with the run's migration limit: ``env_kwargs["mnl"]`` (``env.kwargs.mnl`` on
    the command line) when given and not None, else the instance's own. The one limit of the episode:
    solvers read it from the instance, the env builds its state from it, the validator and the
    ``mnl`` metric check against it.

    Raises:
        ValueError: ``mnl`` is not a whole number >= 0.
    """
    mnl = env_kwargs.get("mnl")
    if mnl is None:
        return instance
    return instance.with_mnl(check_mnl(mnl, "env.kwargs.mnl"))


def make_env(instance: VMInstance, **env_kwargs: Any) -> gym.Env:
    """An env sized for ``instance``."""
    import schedgym  # noqa: F401  (registers the ids)

    return gym.make(ENV_ID, instance=instance, **env_kwargs)


DOMAIN = Domain(
    name="vmsched",
    env_ids=(ENV_ID,),
    resolve=resolve_instances,
    load=load_instance,
    make_env=make_env,
    validate=validate,
    metrics=metrics,
    env_id_of=env_id_of,
    primary_metric="fragment_rate",
    lower_is_better=True,
    table_metrics=("initial_fragment_rate", "fragment_rate", "migrations", "violations"),
    render_solution=render_solution,
    with_env_overrides=with_env_overrides,
)
