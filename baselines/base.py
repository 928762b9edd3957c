"""Protocols every policy and solver implements (DESIGN.md section 2).

* A **policy** acts step by step on an environment: ``reset(env)`` once per episode, then
  ``act(obs, info) -> int`` for each decision. Baselines and trained agents alike.
* A **solver** is an offline method: ``solve(instance, time_limit_s) -> Solution`` where the
  solution carries ``status`` (``"optimal"``, ``"feasible"`` or ``"none"``; ``"fallback_heft"`` from
  the GPU-DAG CP-SAT solver is a valid schedule too) and ``bound``.

Each policy or solver class declares the domains it applies to in a ``domains`` class attribute (a
tuple of domain names, :data:`ALL_DOMAINS` for domain-independent ones); a config whose target needs
more than its class to know (a checkpoint) provides ``domains_for(**config)`` instead.
:func:`check_policy_domain` is the one check the command-line tools make before running anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from schedgym.envs.core.errors import PolicyDomainError

#: every domain name (``Domain.name``); the ``domains`` of policies that apply to any env
ALL_DOMAINS: tuple[str, ...] = ("jobshop", "llmserve", "gpudag", "vmsched")


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
    domains = ALL_DOMAINS

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


def policy_domains(policy_cfg: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The domains the policy or solver of a Hydra config (``_target_`` and its keywords) applies
    to, without building it: the target's ``domains_for(**keywords)`` when it has one (trained
    agents: the checkpoint's domain), else its ``domains`` attribute; None when the target declares
    none or cannot be imported (it then fails when built, with the import error)."""
    from hydra.utils import get_object

    try:
        target = get_object(str(policy_cfg["_target_"]))
    except Exception:  # noqa: BLE001 - reported when the agent is built
        return None
    domains_for = getattr(target, "domains_for", None)
    if callable(domains_for):
        found = domains_for(**{k: v for k, v in policy_cfg.items() if not str(k).startswith("_")})
    else:
        found = getattr(target, "domains", None)
    return None if found is None else tuple(found)


def bind_env_domain(policy_cfg: Mapping[str, Any], domain: str, env: str | None = None) -> dict[str, Any]:
    """``policy_cfg`` with ``domain: null`` replaced by the env's ``domain`` (a copy).

    Trained-policy configs (``conf/policy/ppo_gnn.yaml``) leave ``domain`` null so that one policy
    name serves every env: the agent then loads that domain's shipped checkpoint
    (``agents/checkpoints/<domain>_gnn.pt``) unless ``checkpoint`` names another. With ``env`` (the
    env config's name) a null ``checkpoint`` becomes the env's own shipped one when there is one
    (``fjsp_gnn`` for ``env=fjsp``, whose domain is ``jobshop``). Configs without a ``domain`` key
    are returned unchanged.
    """
    out = dict(policy_cfg)
    if "domain" in out and out["domain"] is None:
        out["domain"] = domain
        if env is not None and "checkpoint" in out and out["checkpoint"] is None:
            from schedgym.agents.checkpoint import shipped_name

            if shipped_name(domain, env) != shipped_name(domain):
                out["checkpoint"] = shipped_name(domain, env)
    return out


def check_policy_domain(policy: str, policy_cfg: Mapping[str, Any], domain: str) -> None:
    """Raise :class:`PolicyDomainError` when the configured policy ``policy`` (its name on the command
    line or in the suite) does not apply to ``domain``; policies that declare no domains pass."""
    domains = policy_domains(policy_cfg)
    if domains is not None and domain not in domains:
        raise PolicyDomainError(
            f"policy {policy!r} applies to [{', '.join(domains)}], not {domain!r}: choose a policy of the "
            f"{domain} domain (conf/policy/) or an env of the policy's domain")
