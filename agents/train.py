"""Training glue: environments, MaskablePPO, callbacks (evaluation, checkpoints) and loggers.

``scripts/train.py`` is a thin Hydra front end over :func:`train`; everything here takes plain
Python values so it can be called from notebooks and tests too.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import schedgym  # noqa: F401  (registers the env ids)
from schedgym.agents.checkpoint import save_policy


def make_env_fn(env_id: str, env_kwargs: dict[str, Any], seed: int, rank: int) -> Callable[[], gym.Env]:
    def _init() -> gym.Env:
        env = Monitor(gym.make(env_id, **env_kwargs))
        env.reset(seed=seed + rank)
        return env

    return _init


class MetricsEvalCallback(MaskableEvalCallback):
    """sb3-contrib's ``MaskableEvalCallback`` that also logs the mean of the domain metrics found in
    ``info["metrics"]`` at the end of each evaluation episode (``eval/makespan``, ``eval/gap_to_bks_pct``,
    ``eval/slo_attainment`` ...)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._episode_metrics: list[dict[str, float]] = []
        self.history: list[dict[str, float]] = []

    def _log_success_callback(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        super()._log_success_callback(locals_, globals_)
        if locals_.get("done"):
            m = locals_.get("info", {}).get("metrics")
            if m:
                self._episode_metrics.append(m)

    def _on_step(self) -> bool:
        self._episode_metrics = []
        cont = super()._on_step()
        if self._episode_metrics:
            keys = set().union(*self._episode_metrics)
            summary = {}
            for k in sorted(keys):
                vals = [float(m[k]) for m in self._episode_metrics if k in m and not math.isnan(float(m[k]))]
                if vals:
                    summary[k] = float(np.mean(vals))
                    self.logger.record(f"eval/{k}", summary[k])
            summary["timesteps"] = float(self.num_timesteps)
            self.history.append(summary)
            self._episode_metrics = []
        return cont


def match_padding(env_id: str, train_kwargs: dict[str, Any], eval_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Eval env kwargs with the training env's padded sizes (``max_*`` constructor arguments) and
    observation settings (``time_origin``) filled in, so that the policy built for the training
    spaces sees the observation it is trained on."""
    import inspect

    from schedgym.agents.trained import OBSERVATION_KWARGS

    env = gym.make(env_id, **train_kwargs).unwrapped
    params = inspect.signature(type(env).__init__).parameters
    out = dict(eval_kwargs)
    for name in params:
        if name.startswith("max_") and name not in out and hasattr(env, name):
            out[name] = getattr(env, name)
    for name in OBSERVATION_KWARGS:
        if name in train_kwargs and name not in out:
            out[name] = train_kwargs[name]
    env.close()
    return out


def _latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete SB3 checkpoint; a zip torn by a kill during its write is skipped."""
    import zipfile

    found = []
    for p in ckpt_dir.glob("ppo_*_steps.zip"):
        m = re.search(r"_(\d+)_steps\.zip$", p.name)
        if m:
            found.append((int(m.group(1)), p))
    # SB3 writes these members (data first, the version file near the end); a zip that lacks one
    # passes testzip() but fails to load ("No data found in the saved file")
    required = {"data", "policy.pth", "_stable_baselines3_version"}
    for _, p in sorted(found, reverse=True):
        try:
            with zipfile.ZipFile(p) as z:
                if required <= set(z.namelist()) and z.testzip() is None:
                    return p
        except (zipfile.BadZipFile, OSError):
            pass
        print(f"resume: skipping incomplete checkpoint {p}")
    return None


def train(
    *,
    env_id: str,
    env_kwargs: dict[str, Any],
    policy_class: type,
    policy_kwargs: dict[str, Any],
    algo_kwargs: dict[str, Any],
    total_timesteps: int,
    out_dir: str | Path,
    seed: int = 0,
    n_envs: int = 1,
    eval_env_kwargs: dict[str, Any] | None = None,
    eval_every: int = 0,
    eval_episodes: int = 5,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress_bar: bool = False,
    tensorboard: bool = True,
    device: str = "cpu",
    name: str = "ppo",
    extra_callbacks: list[BaseCallback] | None = None,
) -> dict[str, Any]:
    """Train MaskablePPO; returns a summary (paths, timesteps, evaluation history).

    Writes into ``out_dir``: ``checkpoints/ppo_<steps>_steps.zip`` (full SB3 state, for resume),
    ``best/best_model.zip`` (best evaluation), ``final_model.zip``, and ``policy.pt`` /
    ``best_policy.pt`` (size-transferable policy checkpoints for :mod:`schedgym.agents.trained`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vec = DummyVecEnv([make_env_fn(env_id, env_kwargs, seed, i) for i in range(n_envs)])
    tb = str(out / "tb") if tensorboard else None
    ckpt_dir = out / "checkpoints"
    last = _latest_checkpoint(ckpt_dir) if resume else None
    if resume and last is None:
        print(f"resume: no checkpoint in {ckpt_dir}; starting from scratch")
    if last is not None:
        model = MaskablePPO.load(last, env=vec, device=device, tensorboard_log=tb)
        print(f"resumed from {last} at {model.num_timesteps} steps")
    else:
        model = MaskablePPO(policy_class, vec, seed=seed, verbose=0, device=device, tensorboard_log=tb,
                            policy_kwargs=policy_kwargs, **algo_kwargs)
    callbacks: list[BaseCallback] = list(extra_callbacks or [])
    if checkpoint_every > 0:
        callbacks.append(CheckpointCallback(save_freq=max(1, checkpoint_every // n_envs), save_path=str(ckpt_dir),
                                            name_prefix="ppo"))
    eval_cb = None
    if eval_every > 0 and eval_env_kwargs is not None:
        eval_env_kwargs = match_padding(env_id, env_kwargs, eval_env_kwargs)
        eval_env = DummyVecEnv([make_env_fn(env_id, eval_env_kwargs, seed + 10_000, 0)])
        eval_cb = MetricsEvalCallback(eval_env, n_eval_episodes=eval_episodes, eval_freq=max(1, eval_every // n_envs),
                                      best_model_save_path=str(out / "best"), deterministic=True, verbose=0)
        callbacks.append(eval_cb)
    remaining = max(0, int(total_timesteps) - int(model.num_timesteps))
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), progress_bar=progress_bar,
                    reset_num_timesteps=last is None, tb_log_name=name)
    model.save(out / "final_model.zip")
    ckpt_env_kwargs = {k: v for k, v in env_kwargs.items() if k not in ("generator", "instance")}
    meta = {"name": name, "timesteps": int(model.num_timesteps), "seed": seed}
    save_policy(model.policy, out / "policy.pt", env_id, ckpt_env_kwargs, meta)
    best_zip = out / "best" / "best_model.zip"
    if best_zip.exists():
        best = MaskablePPO.load(best_zip, device=device)
        save_policy(best.policy, out / "best_policy.pt", env_id, ckpt_env_kwargs, meta | {"best": True})
    vec.close()
    return {
        "out_dir": str(out),
        "timesteps": int(model.num_timesteps),
        "eval_history": eval_cb.history if eval_cb else [],
        "policy": str(out / "policy.pt"),
    }


def set_threads(n: int) -> None:
    """One torch thread per process by default (DESIGN.md section 3)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    torch.set_num_threads(n)
