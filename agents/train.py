"""Training glue: environments, MaskablePPO, callbacks (evaluation, checkpoints) and loggers.

``scripts/train.py`` is a thin Hydra front end over :func:`train`; everything here takes plain
Python values so it can be called from notebooks and tests too.
"""

from __future__ import annotations

import math
import os
import re
import time
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
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper

import schedgym  # noqa: F401  (registers the env ids)
from schedgym.agents.checkpoint import save_policy
from schedgym.agents.malloc_tuning import keep_freed_memory
from schedgym.agents.rollout_buffer import DirectDictRolloutBuffer


def make_env_fn(env_id: str, env_kwargs: dict[str, Any], seed: int, rank: int) -> Callable[[], gym.Env]:
    def _init() -> gym.Env:
        env = Monitor(gym.make(env_id, **env_kwargs))
        env.reset(seed=seed + rank)
        return env

    return _init


VEC_ENVS = ("dummy", "subproc")


class ObsActionMasks(VecEnvWrapper):
    """Answers ``env_method("action_masks")`` (MaskablePPO asks before every step) from the
    ``action_mask`` of the observations that the last ``reset``/``step`` returned, instead of a round
    trip to every ``SubprocVecEnv`` worker. By the observation contract (DESIGN.md section 2) the two
    are the same mask; after an automatic reset the observation is the new episode's, as is the
    env's state. Other methods, and envs whose observations lack ``action_mask``, pass through."""

    def __init__(self, venv: VecEnv):
        super().__init__(venv)
        self._masks: np.ndarray | None = None

    def _keep(self, obs: Any) -> None:
        self._masks = obs["action_mask"].astype(bool) if isinstance(obs, dict) and "action_mask" in obs else None

    def reset(self):
        obs = self.venv.reset()
        self._keep(obs)
        return obs

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self._keep(obs)
        return obs, rewards, dones, infos

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        if method_name == "action_masks" and self._masks is not None and not method_args and not method_kwargs:
            return list(self._masks[list(self._get_indices(indices))])
        return self.venv.env_method(method_name, *method_args, indices=indices, **method_kwargs)


def make_vec_env(env_id: str, env_kwargs: dict[str, Any], seed: int, n_envs: int, vec_env: str = "dummy") -> VecEnv:
    """``n_envs`` copies of the env (seeds ``seed .. seed + n_envs - 1``): ``"dummy"`` steps them in
    this process, ``"subproc"`` in one worker process each (SB3's ``SubprocVecEnv``), so that env
    steps run on other cores than the policy. Both give the same transitions for the same seed."""
    if vec_env not in VEC_ENVS:
        raise ValueError(f"vec_env must be one of {VEC_ENVS}, got {vec_env!r} (agent.vec_env)")
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    fns = [make_env_fn(env_id, env_kwargs, seed, i) for i in range(n_envs)]
    if vec_env == "subproc":
        return ObsActionMasks(SubprocVecEnv(fns, start_method="forkserver"))
    return DummyVecEnv(fns)


def _worker_pids(venv: VecEnv) -> list[int]:
    """Process ids of a ``SubprocVecEnv``'s workers (through VecEnv wrappers); none for other vec envs."""
    while hasattr(venv, "venv"):
        venv = venv.venv
    return [p.pid for p in getattr(venv, "processes", []) if p.pid is not None]


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + sys) of a live process, from ``/proc`` (0 where that is not readable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class ThroughputCallback(BaseCallback):
    """Measures training throughput: env steps per second of wall time over ``learn()`` (rollouts,
    updates and callbacks together), logged as ``time/env_steps_per_s``, and the CPU seconds spent
    meanwhile by this process (all its threads) and its ``SubprocVecEnv`` workers (``cpu_s``; Linux).
    With ``update_threads`` the PPO update runs with that many torch threads and the rollouts with
    ``rollout_threads``."""

    def __init__(self, update_threads: int | None = None, rollout_threads: int | None = None):
        super().__init__()
        self.update_threads = update_threads
        self.rollout_threads = rollout_threads or torch.get_num_threads()
        self.t0 = 0.0
        self.steps0 = 0
        self.wall_s = 0.0
        self.steps = 0
        self.cpu0 = 0.0
        self.cpu_s = 0.0

    def _cpu(self) -> float:
        return time.process_time() + sum(_process_cpu_s(p) for p in _worker_pids(self.training_env))

    def _on_training_start(self) -> None:
        self.t0 = time.perf_counter()
        self.cpu0 = self._cpu()
        self.steps0 = int(self.model.num_timesteps)

    def _on_rollout_start(self) -> None:
        if self.update_threads:
            torch.set_num_threads(self.rollout_threads)

    def _on_rollout_end(self) -> None:
        self._measure()
        if self.wall_s > 0:
            self.logger.record("time/env_steps_per_s", self.steps / self.wall_s)
        if self.update_threads:
            torch.set_num_threads(self.update_threads)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._measure()
        torch.set_num_threads(self.rollout_threads)

    def _measure(self) -> None:
        self.wall_s = time.perf_counter() - self.t0
        self.cpu_s = self._cpu() - self.cpu0
        self.steps = int(self.model.num_timesteps) - self.steps0

    @property
    def steps_per_s(self) -> float:
        """Env steps per second of wall time (0 before any step)."""
        return self.steps / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steps_per_cpu_s(self) -> float:
        """Env steps per CPU-second of this process and its env workers (0 before any step)."""
        return self.steps / self.cpu_s if self.cpu_s > 0 else 0.0


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
    vec_env: str = "dummy",
    update_threads: int | None = None,
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
    ``vec_env``: ``"dummy"`` or ``"subproc"`` (:func:`make_vec_env`); ``update_threads``: torch
    threads of the PPO update (None: the current number, also used for the rollouts). The summary
    has ``env_steps_per_s`` (env steps per second of ``learn()`` wall time) and ``learn_wall_s``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keep_freed_memory()  # minibatch tensors of several MB: reuse freed memory instead of page-faulting
    vec = make_vec_env(env_id, env_kwargs, seed, n_envs, vec_env)
    tb = str(out / "tb") if tensorboard else None
    ckpt_dir = out / "checkpoints"
    last = _latest_checkpoint(ckpt_dir) if resume else None
    if resume and last is None:
        print(f"resume: no checkpoint in {ckpt_dir}; starting from scratch")
    if last is not None:
        model = MaskablePPO.load(last, env=vec, device=device, tensorboard_log=tb)
        print(f"resumed from {last} at {model.num_timesteps} steps")
    else:
        if isinstance(vec.observation_space, gym.spaces.Dict) and "rollout_buffer_class" not in algo_kwargs:
            # the same minibatches without the flat copy of the observations (agents/rollout_buffer.py)
            algo_kwargs = {**algo_kwargs, "rollout_buffer_class": DirectDictRolloutBuffer}
        model = MaskablePPO(policy_class, vec, seed=seed, verbose=0, device=device, tensorboard_log=tb,
                            policy_kwargs=policy_kwargs, **algo_kwargs)
    throughput = ThroughputCallback(update_threads)
    callbacks: list[BaseCallback] = [throughput, *(extra_callbacks or [])]
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
        print(f"throughput: {throughput.steps_per_s:.1f} env steps/s ({throughput.steps} steps in "
              f"{throughput.wall_s:.1f} s of learn() wall time; {throughput.steps_per_cpu_s:.1f} steps per "
              f"CPU-second: {throughput.cpu_s:.1f} CPU-s of this process and its env workers; n_envs={n_envs}, "
              f"vec_env={vec_env}, update_threads={update_threads or torch.get_num_threads()})")
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
        "env_steps_per_s": throughput.steps_per_s,
        "learn_wall_s": throughput.wall_s,
        "learn_cpu_s": throughput.cpu_s,
    }


def set_threads(n: int) -> None:
    """One torch thread per process by default (DESIGN.md section 3)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    torch.set_num_threads(n)
