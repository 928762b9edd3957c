"""Trained agents behind the same protocols as the baselines (DESIGN.md section 2).

* :class:`TrainedPolicy`: greedy (or sampling) step-wise policy from a checkpoint.
* :class:`SampledPolicySolver`: best of ``samples`` episodes (one greedy, the rest sampled), run in
  lock-step so that each step is one batched forward pass; an offline solver for evaluation.
* :func:`load_trained_agent`: what ``conf/policy/ppo_gnn.yaml`` instantiates.
"""

from __future__ import annotations

import math
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from schedgym.agents.batched_sampler import BatchedJobShopSampler, supports
from schedgym.agents.checkpoint import (
    checkpoint_domain,
    load_policy,
    payload_domain,
    read_checkpoint,
    resolve_checkpoint,
    shipped_name,
)
from schedgym.agents.malloc_tuning import keep_freed_memory
from schedgym.agents.policies import masked_logits
from schedgym.envs.core.errors import PolicyDomainError

#: env keywords that change what a policy observes; a checkpoint's values are always used (LLM
#: serving: ``mode`` picks the routing or queue env, ``admission="agent"`` adds the admission actions,
#: ``router`` routes the arrivals a queue policy sees, ``queue_order`` orders each replica's queue)
OBSERVATION_KWARGS = ("time_origin", "action_mode", "mode", "admission", "router", "queue_order",
                      "candidate_features")


def _checkpoint_domains(checkpoint: str | None) -> tuple[str, ...] | None:
    """(domain,) the checkpoint was trained on; None when unknown or unreadable (building the agent
    then fails with the loader's message)."""
    try:
        domain = checkpoint_domain(checkpoint)
    except (FileNotFoundError, ValueError):
        return None
    return (domain,) if domain else None


def _sampler_domains(checkpoint: str | None, domain: str) -> tuple[str, ...]:
    """(domain,) of a sampled-policy solver; a :class:`PolicyDomainError` when its checkpoint was
    trained on another domain than the configured one."""
    trained = _checkpoint_domains(checkpoint)
    if trained is not None and domain not in trained:
        raise PolicyDomainError(f"checkpoint {checkpoint or 'jobshop_gnn'!r} was trained on {trained[0]!r} but the "
                                f"sampled solver is configured for domain={domain!r}; set policy.domain={trained[0]}")
    return (domain,)


def _obs_to_tensor(obs: dict[str, np.ndarray] | list[dict[str, np.ndarray]], device: str = "cpu"):
    if isinstance(obs, list):
        return {k: torch.as_tensor(np.stack([o[k] for o in obs])).to(device).float() for k in obs[0]}
    return {k: torch.as_tensor(v).unsqueeze(0).to(device).float() for k, v in obs.items()}


class TrainedPolicy:
    """A checkpoint as a step-wise :class:`~schedgym.baselines.base.Policy`.

    Args:
        checkpoint: path or shipped name (None: the shipped job-shop policy).
        deterministic: greedy (argmax) actions; else sample from the policy.
        seed: seed of the sampling.
    """

    def __init__(self, checkpoint: str | None = None, deterministic: bool = True, seed: int = 0,
                 name: str | None = None, device: str = "cpu"):
        self.checkpoint = str(resolve_checkpoint(checkpoint))
        payload = read_checkpoint(self.checkpoint)
        self.env_id = payload["env_id"]
        domain = payload_domain(payload)
        #: the domain the checkpoint was trained on (None: unknown, not checked)
        self.domains = (domain,) if domain else None
        self.env_kwargs = dict(payload["env_kwargs"])
        self.scheme = self.env_kwargs.get("scheme", "active")
        # observation settings the policy was trained with (evaluation builds its env with them)
        self.required_env_kwargs = {k: self.env_kwargs[k] for k in OBSERVATION_KWARGS if k in self.env_kwargs}
        self.deterministic = deterministic
        self.name = name or payload["meta"].get("name", "ppo_gnn")
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self._policy = None
        self._spaces_key = None

    @staticmethod
    def domains_for(checkpoint: str | None = None, **_: Any) -> tuple[str, ...] | None:
        """Domains of the policy a config builds, without building it: the checkpoint's."""
        return _checkpoint_domains(checkpoint)

    def reset_seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def _policy_for(self, env: gym.Env):
        key = (repr(env.observation_space), repr(env.action_space))
        if self._policy is None or key != self._spaces_key:
            self._policy = load_policy(self.checkpoint, env.observation_space, env.action_space, self.device)
            self._spaces_key = key
        return self._policy

    def reset(self, env: gym.Env) -> None:
        self.env = env
        self._policy_for(env)

    @torch.no_grad()
    def logits(self, obs: dict[str, np.ndarray], mask: np.ndarray) -> torch.Tensor:
        """Masked action logits (B=1) of the policy for ``obs``."""
        return masked_logits(self._policy, _obs_to_tensor(obs, self.device), mask[None])[0]

    def act(self, obs: dict[str, np.ndarray], info: dict) -> int:
        mask = np.asarray(info.get("action_mask", obs["action_mask"]), dtype=bool)
        logits = self.logits(obs, mask)
        if self.deterministic:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))


class SampledPolicySolver:
    """Best of ``samples`` episodes of a trained policy (sample 0 is greedy); an offline solver.

    The episodes run in lock-step so each decision is one batched forward pass, over the episodes
    that have a choice (an episode whose mask has one valid action takes it without a forward pass:
    greedy and sampling both pick it with probability 1). ``time_limit_s`` caps the wall time
    (seconds): sampling stops early and keeps the best complete solution.

    On a classic job-shop instance with a non-delay GIN pointer checkpoint (the shipped one) the
    batch runs in :class:`~schedgym.agents.batched_sampler.BatchedJobShopSampler` (one vectorised
    schedule state, features written straight into the network's input, the same logits up to float
    rounding); ``batched=False`` forces the generic loop over gymnasium envs.
    """

    def __init__(self, checkpoint: str | None = None, samples: int = 128, domain: str = "jobshop",
                 seed: int = 0, batch_size: int = 128, name: str | None = None, device: str = "cpu",
                 batched: bool = True):
        self.domains = _sampler_domains(checkpoint, domain)
        #: use the vectorised sampler where it applies (False: always the generic env loop)
        self.batched = bool(batched) and device == "cpu"
        self.base = TrainedPolicy(checkpoint, deterministic=False, seed=seed, device=device)
        self.samples = int(samples)
        self.batch_size = int(batch_size)
        self.domain_name = domain
        self.scheme = self.base.scheme
        self.required_env_kwargs = self.base.required_env_kwargs
        self.seed = seed
        self.name = name or f"{self.base.name}_x{self.samples}"

    @staticmethod
    def domains_for(checkpoint: str | None = None, domain: str = "jobshop", **_: Any) -> tuple[str, ...]:
        """Domains of the solver a config builds, without building it: the configured ``domain``."""
        return _sampler_domains(checkpoint, domain)

    @staticmethod
    def _finished(infos: list[dict], objective: str) -> tuple[Any, float]:
        """(solution, objective value) of the best complete episode among the final ``infos`` of a
        batch, in sample order (the first of equals wins); (None, inf) when none is complete."""
        best, best_val = None, math.inf
        for info in infos:
            if "solution" in info:
                val = float(info["metrics"][objective])
                if val < best_val:
                    best, best_val = info["solution"], val
        return best, best_val

    def _batched_sampler(self, domain: Any, instance: Any, objective: str) -> BatchedJobShopSampler | None:
        """The vectorised lock-step sampler (:mod:`schedgym.agents.batched_sampler`) when it computes
        this checkpoint on this instance (classic job-shop, non-delay, GIN pointer policy, makespan);
        None otherwise (the generic loop runs)."""
        if self.domain_name != "jobshop" or objective != "makespan":
            return None
        env = domain.make_env(instance, **self.base.env_kwargs)
        env.reset(seed=self.seed, options={"instance": instance})
        policy = self.base._policy_for(env)
        env = env.unwrapped
        if getattr(env, "objective_metric", None) not in (None, "makespan") or not supports(policy, env):
            return None
        return BatchedJobShopSampler(policy, env)

    def solve(self, instance: Any, time_limit_s: float | None = None):
        from schedgym.envs.core.domain import get_domain

        keep_freed_memory()  # the batched forward passes reuse their buffers instead of page-faulting
        domain = get_domain(self.domain_name)
        objective = domain.objective or domain.primary_metric
        t0 = time.perf_counter()
        best, best_val = None, math.inf
        done_samples = 0
        gen = torch.Generator().manual_seed(self.seed)
        sampler = self._batched_sampler(domain, instance, objective) if self.batched else None
        while sampler is not None and done_samples < self.samples:
            k = min(self.batch_size, self.samples - done_samples)
            sol, val = sampler.best(sampler.run(k, gen, greedy_first=done_samples == 0))
            if val < best_val:
                best, best_val = sol, val
            done_samples += k
            if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
                break
        while sampler is None and done_samples < self.samples:
            k = min(self.batch_size, self.samples - done_samples)
            envs = [domain.make_env(instance, **self.base.env_kwargs) for _ in range(k)]
            policy = self.base._policy_for(envs[0])
            obs, infos = zip(*[e.reset(seed=self.seed + i, options={"instance": instance}) for i, e in enumerate(envs)])
            obs, infos = list(obs), list(infos)
            envs = [e.unwrapped for e in envs]
            # an env may rank its episodes by another metric than the domain's (GPU DAG online: mean JCT)
            objective = getattr(envs[0], "objective_metric", None) or objective
            # envs with advance()/observe() (job-shop) build an observation only when it is used
            lazy = all(hasattr(e, "advance") and hasattr(e, "observe") for e in envs)
            alive = list(range(k))
            final: dict[int, Any] = {}
            while alive:
                masks = np.stack([np.asarray(infos[i]["action_mask"], dtype=bool) for i in alive])
                # an episode with one valid action takes it (what greedy and sampling both do with
                # probability 1); the network runs on the episodes with a choice only
                actions = masks.argmax(axis=1)
                choose = np.flatnonzero(masks.sum(axis=1) > 1)
                if choose.size:
                    for r in choose:
                        if obs[alive[r]] is None:
                            obs[alive[r]] = envs[alive[r]].observe()
                    with torch.no_grad():
                        logits = masked_logits(policy, _obs_to_tensor([obs[alive[r]] for r in choose]), masks[choose])
                        sampled = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(1)
                        if done_samples == 0 and alive[choose[0]] == 0:
                            sampled[0] = torch.argmax(logits[0])  # the first episode is the greedy one
                    actions[choose] = sampled.numpy()
                still = []
                for row, i in enumerate(alive):
                    if lazy:
                        _, term, trunc, info = envs[i].advance(int(actions[row]))
                        obs[i] = None
                    else:
                        obs[i], _, term, trunc, info = envs[i].step(int(actions[row]))
                    infos[i] = info
                    if term or trunc:
                        final[i] = info
                    else:
                        still.append(i)
                alive = still
            sol, val = self._finished([final[i] for i in sorted(final)], objective)
            if val < best_val:
                best, best_val = sol, val
            done_samples += k
            if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
                break
        if best is None:
            raise RuntimeError(f"{self.name}: no complete episode in {done_samples} samples")
        best.status = "feasible"
        best.meta.update(samples=done_samples, wall_time_s=time.perf_counter() - t0)
        return best


def load_trained_agent(checkpoint: str | None = None, samples: int = 1, deterministic: bool = True,
                       domain: str | None = None, seed: int = 0, name: str | None = None):
    """A :class:`TrainedPolicy` (``samples=1``) or a :class:`SampledPolicySolver` (``samples>1``).

    ``checkpoint=None`` loads ``domain``'s shipped checkpoint (``agents/checkpoints/<domain>_gnn.pt``;
    ``domain=None``: job-shop). The CLIs fill ``domain`` with the env's domain."""
    domain = domain or "jobshop"
    checkpoint = checkpoint if checkpoint is not None else shipped_name(domain)
    if int(samples) > 1:
        return SampledPolicySolver(checkpoint, samples=samples, domain=domain, seed=seed, name=name)
    return TrainedPolicy(checkpoint, deterministic=deterministic, seed=seed, name=name)


def trained_agent_domains(checkpoint: str | None = None, samples: int = 1, domain: str | None = None,
                          **_: Any) -> tuple[str, ...] | None:
    """Domains of what :func:`load_trained_agent` builds from these keywords (see
    :func:`schedgym.baselines.base.policy_domains`)."""
    domain = domain or "jobshop"
    checkpoint = checkpoint if checkpoint is not None else shipped_name(domain)
    if int(samples) > 1:
        return SampledPolicySolver.domains_for(checkpoint, domain)
    return TrainedPolicy.domains_for(checkpoint)


load_trained_agent.domains_for = trained_agent_domains  # type: ignore[attr-defined]
