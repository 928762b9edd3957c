"""Self-labeling training (Corsini et al., "Self-Labeling the Job Shop Scheduling Problem", NeurIPS 2024).

For each random training instance the current policy samples ``samples`` complete solutions in
lock-step (one batched forward pass per step); the best one (lowest objective) becomes the label and
the policy is trained with cross-entropy on its (state, action) pairs. No critic and no reward
shaping: it needs far fewer episodes than PPO to beat the dispatching rules, which makes it the
recipe of choice on a 2-core CPU. The policy is the same :class:`GraphPointerPolicy` that
MaskablePPO trains, so checkpoints, evaluation and size transfer are shared.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import schedgym  # noqa: F401
from schedgym.agents.batched_sampler import greedy_metrics as batched_greedy_metrics
from schedgym.agents.batched_sampler import sample_labels
from schedgym.agents.checkpoint import save_policy
from schedgym.agents.policies import masked_logits


def _stack(obs_list: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.stack([o[k] for o in obs_list])).float() for k in obs_list[0]}


def objective_value(metrics: dict[str, float], objective: str) -> float:
    """The value to minimise: ``metrics[objective]``, or ``-metrics[name]`` for ``objective="-name"``
    (a metric to maximise, e.g. ``-goodput_rps``). A KeyError names the missing metric."""
    if objective.startswith("-"):
        return -float(metrics[objective[1:]])
    return float(metrics[objective])


def sample_solutions(policy, envs: list[gym.Env], instance: Any, seed: int, generator: torch.Generator,
                     objective: str, greedy_first: bool = True):
    """Run ``len(envs)`` episodes of ``instance`` in lock-step; returns the best episode's
    (objective value, observations, masks, actions) and all objective values."""
    k = len(envs)
    obs, infos = [], []
    for i, e in enumerate(envs):
        o, inf = e.reset(seed=seed + i, options={"instance": instance})
        obs.append(o)
        infos.append(inf)
    traj_obs: list[list[dict]] = [[] for _ in range(k)]
    traj_act: list[list[int]] = [[] for _ in range(k)]
    traj_mask: list[list[np.ndarray]] = [[] for _ in range(k)]
    values = [math.inf] * k
    alive = list(range(k))
    while alive:
        masks = np.stack([np.asarray(infos[i]["action_mask"], dtype=bool) for i in alive])
        with torch.no_grad():
            logits = masked_logits(policy, _stack([obs[i] for i in alive]), masks)
            acts = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(1)
            if greedy_first and alive[0] == 0:
                acts[0] = torch.argmax(logits[0])
        still = []
        for row, i in enumerate(alive):
            a = int(acts[row])
            traj_obs[i].append(obs[i])
            traj_act[i].append(a)
            traj_mask[i].append(masks[row])
            o, _, term, trunc, info = envs[i].step(a)
            obs[i], infos[i] = o, info
            if term or trunc:
                if "metrics" in info:
                    values[i] = objective_value(info["metrics"], objective)
            else:
                still.append(i)
        alive = still
    best = int(np.argmin(values))
    return values[best], traj_obs[best], traj_mask[best], traj_act[best], values


def policy_episode(agent: Any, env: gym.Env, instance: Any, seed: int, objective: str):
    """One episode of a baseline policy (``reset(env)``/``act``) recorded like :func:`sample_solutions`."""
    obs, info = env.reset(seed=seed, options={"instance": instance})
    agent.reset(env)
    t_obs, t_mask, t_act = [], [], []
    done = False
    while not done:
        a = int(agent.act(obs, info))
        t_obs.append(obs)
        t_mask.append(np.asarray(info["action_mask"], dtype=bool))
        t_act.append(a)
        obs, _, term, trunc, info = env.step(a)
        done = term or trunc
    val = objective_value(info["metrics"], objective) if "metrics" in info else math.inf
    return val, t_obs, t_mask, t_act


def train_self_labeling(
    *,
    policy,
    env_id: str,
    env_kwargs: dict[str, Any],
    generator: Callable[[np.random.Generator], Any],
    out_dir: str | Path,
    iterations: int = 1000,
    samples: int = 32,
    learning_rate: float = 1e-4,
    batch_size: int = 64,
    objective: str = "makespan",
    seed: int = 0,
    eval_fn: Callable[[Any], dict[str, float]] | None = None,
    eval_every: int = 100,
    log_fn: Callable[[dict[str, float], int], None] | None = None,
    progress_bar: bool = False,
    ckpt_meta: dict[str, Any] | None = None,
    label_policies: list[Any] | None = None,
    eval_metric: str | None = None,
    domain: str | None = None,
    epochs: int = 1,
    batched_sampling: bool = True,
) -> dict[str, Any]:
    """Train ``policy`` (a MaskableActorCriticPolicy) by self-labeling; returns a summary.

    ``label_policies`` (for example dispatching rules) also solve every training instance, and the
    best of their solutions and the policy's samples is the label: training starts from labels at
    least as good as the best rule instead of from random ones.

    ``domain`` (a registered domain name): build each instance's envs with the domain's
    ``make_env``, sized to the instance; otherwise all instances share envs padded for ``generator``.

    ``epochs``: passes of gradient steps over each label's (state, action) pairs (episodes of a
    few dozen decisions give one minibatch per pass).

    ``batched_sampling``: on a classic non-delay job-shop env with a policy that
    :mod:`schedgym.agents.batched_sampler` computes, the samples run in its vectorised lock-step
    sampler (:func:`~schedgym.agents.batched_sampler.sample_labels`: the same generator draws, the
    same episodes up to the float rounding of the logits); every other env uses
    :func:`sample_solutions` unchanged.

    ``objective`` (for example ``makespan``) ranks the candidate labels of a training instance.
    Saves ``policy.pt`` (last) and ``best_policy.pt`` (best ``eval_fn`` value of ``eval_metric``,
    default ``objective``; lower is better) in ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    if domain is not None:
        # envs sized to each training instance (the policy does not depend on the padding, and a
        # 10x10 instance in a 15x15-padded graph would cost 2.25 times as much per step)
        from schedgym.envs.core.domain import get_domain

        make_env = get_domain(domain).make_env
        build_kwargs = {k: v for k, v in env_kwargs.items() if k not in ("generator", "instance")
                        and not k.startswith("max_")}

        def envs_for(instance: Any) -> list[gym.Env]:
            envs = [make_env(instance, **build_kwargs) for _ in range(samples)]
            if envs[0].spec is not None and envs[0].spec.id != env_id:
                raise ValueError(f"domain {domain!r} builds {envs[0].spec.id} for {getattr(instance, 'name', instance)}, "
                                 f"not the training env {env_id}; train without domain sizing")
            return envs
    else:
        shared = [gym.make(env_id, generator=generator, **env_kwargs) for _ in range(samples)]

        def envs_for(instance: Any) -> list[gym.Env]:
            return shared

    ckpt_kwargs = {k: v for k, v in env_kwargs.items() if k not in ("generator", "instance")}
    history: list[dict[str, float]] = []
    best_eval = math.inf
    t0 = time.perf_counter()
    iterator = range(1, iterations + 1)
    if progress_bar:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="self-labeling", unit="inst")
    for it in iterator:
        instance = generator(rng)
        envs = envs_for(instance)
        policy.set_training_mode(False)
        ep_seed = int(rng.integers(1 << 30))
        fast = sample_labels(policy, envs[0], instance, ep_seed, len(envs), gen, objective) if batched_sampling else None
        best_val, b_obs, b_mask, b_act, vals = fast or sample_solutions(policy, envs, instance, ep_seed, gen, objective)
        sampled_best = best_val
        for agent in label_policies or []:
            r_val, r_obs, r_mask, r_act = policy_episode(agent, envs[0], instance, ep_seed, objective)
            if r_val < best_val:
                best_val, b_obs, b_mask, b_act = r_val, r_obs, r_mask, r_act
        policy.set_training_mode(True)
        order = np.concatenate([rng.permutation(len(b_act)) for _ in range(max(1, int(epochs)))]) \
            if epochs > 1 else rng.permutation(len(b_act))
        losses = []
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            obs_t = _stack([b_obs[i] for i in idx])
            masks = np.stack([b_mask[i] for i in idx])
            logits = masked_logits(policy, obs_t, masks)
            target = torch.as_tensor([b_act[i] for i in idx])
            loss = torch.nn.functional.cross_entropy(logits, target)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
        stats = {"train/loss": float(np.mean(losses)), "train/best_objective": best_val,
                 "train/sampled_best_objective": sampled_best,
                 "train/mean_objective": float(np.mean([v for v in vals if math.isfinite(v)])),
                 "time/elapsed_s": time.perf_counter() - t0}
        if eval_fn is not None and (it % eval_every == 0 or it == iterations):
            policy.set_training_mode(False)
            ev = eval_fn(policy)
            stats.update({f"eval/{k}": v for k, v in ev.items()})
            ev["iteration"] = it
            history.append(ev)
            val = objective_value(ev, eval_metric or objective)
            if val < best_eval:
                best_eval = val
                save_policy(policy, out / "best_policy.pt", env_id, ckpt_kwargs,
                            (ckpt_meta or {}) | {"iteration": it, "best": True})
            save_policy(policy, out / "policy.pt", env_id, ckpt_kwargs, (ckpt_meta or {}) | {"iteration": it})
        if log_fn is not None:
            log_fn(stats, it)
    save_policy(policy, out / "policy.pt", env_id, ckpt_kwargs, (ckpt_meta or {}) | {"iteration": iterations})
    return {"out_dir": str(out), "iterations": iterations, "eval_history": history, "policy": str(out / "policy.pt"),
            "wall_time_s": time.perf_counter() - t0}


def greedy_metrics(policy, env_id: str, env_kwargs: dict[str, Any], episodes: int,
                   domain: str | None = None) -> dict[str, float]:
    """Mean of ``info["metrics"]`` over ``episodes`` greedy episodes of ``policy`` (env built from kwargs),
    and ``geomean_<metric>``, the geometric mean, of the metrics that are positive on every episode.

    With ``domain`` and a list of instances with ``cycle``, each instance runs in the domain's env
    sized to it (the same logits as in the shared padding, far less work for the small ones).
    A classic non-delay job-shop episode runs in the lock-step sampler
    (:func:`schedgym.agents.batched_sampler.greedy_metrics`: the same argmax episode up to float
    rounding, about 4x less CPU for a candidate-attention policy); other envs are unchanged."""
    instances = env_kwargs.get("instance")
    per_instance = domain is not None and isinstance(instances, (list, tuple)) and env_kwargs.get("cycle")
    if per_instance:
        from schedgym.envs.core.domain import get_domain

        dom = get_domain(domain)
        base = {k: v for k, v in env_kwargs.items() if k not in ("instance", "cycle") and not k.startswith("max_")}
        loaded = [dom.load(i) for i in instances]
    else:
        env = gym.make(env_id, **env_kwargs)
    sums: dict[str, list[float]] = {}
    for ep in range(episodes):
        if per_instance:
            env = dom.make_env(loaded[ep % len(loaded)], **base)
        obs, info = env.reset(seed=ep)
        fast = batched_greedy_metrics(policy, env)  # job-shop: the lock-step sampler's greedy episode
        done = fast is not None
        while not done:
            with torch.no_grad():
                mask = np.asarray(info["action_mask"], dtype=bool)
                logits = masked_logits(policy, _stack([obs]), mask[None])[0]
            obs, _, term, trunc, info = env.step(int(torch.argmax(logits)))
            done = term or trunc
        for k, v in (fast if fast is not None else info.get("metrics", {})).items():
            if math.isfinite(float(v)):
                sums.setdefault(k, []).append(float(v))
    env.close()
    return summarise_metrics(sums)


def summarise_metrics(per_episode: dict[str, list[float]]) -> dict[str, float]:
    """Mean of each metric over the episodes, plus ``geomean_<metric>`` (geometric mean) for the
    metrics positive on every episode: it weighs a relative change equally on every instance (e.g.
    SLR across CCRs, where the arithmetic mean is dominated by the instances with the largest SLR)."""
    out = {k: float(np.mean(v)) for k, v in per_episode.items()}
    out.update({f"geomean_{k}": float(np.exp(np.mean(np.log(v)))) for k, v in per_episode.items()
                if v and min(v) > 0})
    return out
