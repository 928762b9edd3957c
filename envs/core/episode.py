"""One evaluation episode: run a policy through an env (or a solver offline), validate, measure.

:class:`EpisodeResult` is the unit every evaluation table and the leaderboard store, resume from and
aggregate (DESIGN.md section 2).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

from schedgym.envs.core.domain import Domain


@dataclass
class EpisodeResult:
    """One row of results.

    Attributes:
        env_id: Gymnasium id of the env (solvers: the env id the instance belongs to).
        suite: name of the instance set or suite.
        instance: instance (or workload) name.
        policy: policy or solver name.
        seed: episode seed.
        metrics: the domain's metrics (``makespan``, ``gap_to_bks_pct``, ...).
        wall_time_s: wall-clock seconds of the whole episode (solvers: solve time), seconds.
        steps: env steps taken (0 for solvers).
        status: ``ok`` / ``optimal`` / ``feasible`` / ``fallback_heft`` (solvers; the last: CP-SAT
            returned HEFT's schedule, see baselines/cpsat_gpudag.py), ``invalid`` (failed validation),
            ``failed`` (exception), ``none`` (solver found nothing).
        error: validation message or traceback when status is not ok.
    """

    env_id: str
    suite: str
    instance: str
    policy: str
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    steps: int = 0
    status: str = "ok"
    error: str = ""

    def row(self) -> dict[str, Any]:
        """Flat dict (metrics as columns) for CSV and tables."""
        d = asdict(self)
        m = d.pop("metrics")
        d.update(m)
        return d


def is_solver(obj: Any) -> bool:
    """True for offline solvers (``solve(instance, time_limit_s)``), False for step-wise policies."""
    return callable(getattr(obj, "solve", None)) and not callable(getattr(obj, "act", None))


def env_kwargs_for_agent(env_kwargs: dict[str, Any] | None, agent: Any) -> dict[str, Any]:
    """The env keywords an agent runs with: the configured ones without ``None`` values, ``scheme``
    (when configured as ``None``) taken from the agent, and the observation settings the agent
    requires (``agent.required_env_kwargs``, e.g. a checkpoint's ``time_origin``) on top, since a
    policy only works on the observation it was trained on."""
    given = dict(env_kwargs or {})
    out = {k: v for k, v in given.items() if v is not None}
    if "scheme" in given and given["scheme"] is None:
        out["scheme"] = getattr(agent, "scheme", "active")
    out.update(getattr(agent, "required_env_kwargs", None) or {})
    return out


def apply_env_overrides(domain: Domain, instance: Any, env_kwargs: dict[str, Any] | None) -> Any:
    """``instance`` with the run's env settings that change the problem written into it (the
    domain's ``with_env_overrides`` hook, e.g. VM rescheduling's migration limit ``mnl``); the
    instance itself when the domain has no such hook."""
    if domain.with_env_overrides is None:
        return instance
    return domain.with_env_overrides(instance, dict(env_kwargs or {}))


def run_episode(
    domain: Domain,
    instance: Any,
    agent: Any,
    seed: int = 0,
    suite: str = "",
    env_kwargs: dict[str, Any] | None = None,
    time_limit_s: float | None = None,
) -> EpisodeResult:
    """Run ``agent`` (policy or solver) on ``instance`` and validate the result with the domain's
    independent validator. Exceptions and invalid solutions are recorded, never raised.

    The env settings that change the problem (:func:`apply_env_overrides`) are applied to the
    instance first, so the solver or env, the validator and the metrics see the same instance."""
    name = getattr(agent, "name", type(agent).__name__)
    env_id = domain.env_id_of(instance)
    res = EpisodeResult(env_id=env_id, suite=suite, instance=getattr(instance, "name", str(instance)),
                        policy=name, seed=seed)
    t0 = time.perf_counter()
    try:
        instance = apply_env_overrides(domain, instance, env_kwargs)
        if is_solver(agent):
            solution = agent.solve(instance, time_limit_s)
            status = getattr(solution, "status", "feasible")
            if status == "none":
                res.status = "none"
                res.wall_time_s = time.perf_counter() - t0
                return res
            res.status = status
        else:
            env = domain.make_env(instance, **(env_kwargs or {}))
            if env.spec is not None:
                res.env_id = env.spec.id
            obs, info = env.reset(seed=seed, options={"instance": instance})
            agent.reset(env)
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
                res.steps += 1
                done = terminated or truncated
            env.close()
            if "solution" not in info:
                raise RuntimeError(f"episode ended after {res.steps} steps without a complete solution "
                                   f"(truncated={truncated})")
            solution = info["solution"]
        res.wall_time_s = time.perf_counter() - t0
        try:
            domain.validate(instance, solution)
        except ValueError as exc:  # InfeasibleSolution is a ValueError
            res.status = "invalid"
            res.error = str(exc)
            return res
        res.metrics = domain.metrics(instance, solution)
        bound = getattr(solution, "bound", None)
        if bound is not None:
            res.metrics["solver_bound"] = float(bound)
    except Exception:  # a crashing policy marks its cell failed; the run goes on
        res.wall_time_s = time.perf_counter() - t0
        res.status = "failed"
        res.error = traceback.format_exc(limit=8)
    return res
