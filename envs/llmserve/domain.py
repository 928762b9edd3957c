"""The LLM-serving domain's hooks for evaluation and leaderboards.

Instances are workloads named ``<trace>:key=value:...`` (see :mod:`schedgym.envs.llmserve.workload`);
sets of them live in ``conf/workload/*.yaml``. The env kwarg ``mode`` picks ``LLMQueue-v0``
(``queue``, the default) or ``LLMRouting-v0`` (``routing``); routing policies' conf files set it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from schedgym.envs.core.domain import Domain
from schedgym.envs.core.errors import UnknownNameError
from schedgym.envs.llmserve.metrics import metrics
from schedgym.envs.llmserve.types import LLMServeInstance
from schedgym.envs.llmserve.validate import validate
from schedgym.envs.llmserve.workload import TRACES, build_workload, parse_name

ENV_IDS = {"queue": "schedgym/LLMQueue-v0", "routing": "schedgym/LLMRouting-v0"}


def resolve(spec: Any) -> list[str]:
    """Workload names (each is checked to parse); a bare trace name gets the default options."""
    items = [spec] if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        item = str(item)
        trace, _ = parse_name(item)
        if trace not in TRACES and trace != "synthetic" and not trace.endswith(".csv"):
            raise UnknownNameError("workload trace", trace, list(TRACES) + ["synthetic"])
        out.append(item)
    return out


def load(name: Any) -> LLMServeInstance:
    return name if isinstance(name, LLMServeInstance) else build_workload(str(name))


def env_id_of(instance: LLMServeInstance) -> str:
    return ENV_IDS["queue"]


def make_env(instance: LLMServeInstance, mode: str = "queue", **env_kwargs: Any) -> gym.Env:
    """``LLMQueue-v0`` (mode ``queue``) or ``LLMRouting-v0`` (mode ``routing``) on ``instance``."""
    import schedgym  # noqa: F401  (registers the ids)

    if mode not in ENV_IDS:
        raise ValueError(f"mode must be one of {sorted(ENV_IDS)}, got {mode!r}")
    return gym.make(ENV_IDS[mode], instance=instance, max_replicas=max(8, instance.n_replicas), **env_kwargs)


def _render_solution(instance, solution):
    """Latency CDFs and the KV-cache timeline of a complete simulation."""
    from schedgym.envs.llmserve.viewer import render_rgb

    return render_rgb(instance, solution)


DOMAIN = Domain(
    name="llmserve",
    env_ids=tuple(ENV_IDS.values()),
    resolve=resolve,
    load=load,
    make_env=make_env,
    validate=validate,
    metrics=metrics,
    env_id_of=env_id_of,
    primary_metric="slo_attainment",
    lower_is_better=False,
    table_metrics=("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "slo_attainment", "goodput_rps",
                   "throughput_rps", "rejected_rate"),
    render_solution=_render_solution,
)
