"""A scheduling domain as the evaluation tools see it.

Each domain (job-shop, LLM serving, VM rescheduling, GPU DAG) exposes one :class:`Domain` object
in ``envs/<domain>/domain.py``; ``scripts/evaluate.py`` and the leaderboard only talk to domains
through it, so a new domain plugs in by adding a line to :data:`DOMAINS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from schedgym.envs.core.errors import UnknownNameError


@dataclass(frozen=True)
class Domain:
    """Hooks of one scheduling domain.

    Attributes:
        name: short name used on the command line (``env=jobshop``).
        env_ids: the Gymnasium ids of the domain.
        resolve: expands an instance-set spec (set name, list of names or paths) into instance names.
        load: loads one instance (or workload) by name or path.
        make_env: ``make_env(instance, **env_kwargs) -> gym.Env`` builds an env for that instance.
        validate: ``validate(instance, solution)`` raises on an infeasible solution; independent code.
        metrics: ``metrics(instance, solution) -> dict[str, float]``.
        env_id_of: the env id used for an instance (for the results table).
        primary_metric: the metric tables sort by (for example ``gap_to_bks_pct``).
        lower_is_better: whether smaller primary metric values are better.
        table_metrics: metric columns shown in printed tables (all metrics go to CSV).
        objective: the metric a search over solutions minimises (best-of-k sampling); empty means
            ``primary_metric``.
        render_solution: ``render_solution(instance, solution) -> (H, W, 3) uint8`` picture of a
            complete solution (Gantt chart, placement), for leaderboard plots; None if unavailable.
        with_env_overrides: ``with_env_overrides(instance, env_kwargs) -> instance``: the instance with
            the run's env settings that change the problem itself (VM rescheduling: ``mnl``, the
            migration limit) written into it, so that solvers (which only see the instance), the env,
            the validator and the metrics all read one value; None when no env setting does.
        primary_metric_of: ``primary_metric_of(instance_name) -> metric`` where the metric a table
            sorts by depends on the instance (GPU DAG: ``mean_jct`` for online workloads, ``slr``
            for static DAGs), in the direction of ``lower_is_better``; None: ``primary_metric``
            everywhere. Use :meth:`primary_for`.
    """

    name: str
    env_ids: tuple[str, ...]
    resolve: Callable[[Any], list[str]]
    load: Callable[[Any], Any]
    make_env: Callable[..., gym.Env]
    validate: Callable[[Any, Any], None]
    metrics: Callable[[Any, Any], dict[str, float]]
    env_id_of: Callable[[Any], str]
    primary_metric: str
    lower_is_better: bool = True
    table_metrics: tuple[str, ...] = field(default_factory=tuple)
    objective: str = ""
    render_solution: Callable[[Any, Any], Any] | None = None
    with_env_overrides: Callable[[Any, dict[str, Any]], Any] | None = None
    primary_metric_of: Callable[[str], str] | None = None

    def primary_for(self, instances: Iterable[str]) -> str:
        """The metric a table of ``instances`` sorts by: their common :attr:`primary_metric_of`, or
        :attr:`primary_metric` when there is no such hook or the instances disagree."""
        if self.primary_metric_of is None:
            return self.primary_metric
        found = {self.primary_metric_of(str(name)) for name in instances}
        return found.pop() if len(found) == 1 else self.primary_metric


#: Domain name -> "module:attribute" of its :class:`Domain` (imported lazily).
DOMAINS: dict[str, str] = {
    "jobshop": "schedgym.envs.jobshop.domain:DOMAIN",
    "llmserve": "schedgym.envs.llmserve.domain:DOMAIN",
    "gpudag": "schedgym.envs.gpudag.domain:DOMAIN",
    "vmsched": "schedgym.envs.vmsched.domain:DOMAIN",
}


def get_domain(name: str) -> Domain:
    """The :class:`Domain` registered under ``name``; unknown names list the valid ones."""
    if name not in DOMAINS:
        raise UnknownNameError("domain (env=...)", name, DOMAINS)
    module, attr = DOMAINS[name].split(":")
    return getattr(importlib.import_module(module), attr)
