"""Training-throughput benchmark: env steps per second of MaskablePPO with the GNN (a benchmark, not a test).

    python scripts/bench_training.py                          # VM S, job-shop 10x10, GPU DAG, 2048 steps
    python scripts/bench_training.py --envs vmsched --steps 4096 --n-envs 2 --vec-env subproc
    python scripts/bench_training.py --envs vmsched --padded  # the GNN over the whole padded batch
    python scripts/bench_training.py --envs vmsched --no-dedup  # PPO updates without the dedup shortcut

Each row trains ``agent=ppo_gnn`` (``conf/agent/ppo_gnn.yaml``: n_steps 1024, batch 256, 4 epochs) on
the env's default training config (``conf/env/<env>.yaml``'s ``train`` section: VMReschedule-v0 on
fresh S snapshots, JobShop-v0 on random 10x10, GPUDag-v0 on 30-task Topcuoglu DAGs) for ``--steps``
env steps, without evaluation, checkpoints or loggers, and reports the throughput that
``scripts/train.py`` prints (env steps per second of ``learn()`` wall time: rollouts and PPO updates
together), plus the CPU seconds that this process (all threads) and its env workers spent during
``learn()`` and the env steps per CPU-second (both printed by ``train()`` too). Wall times on a
shared machine are noisy; the CPU time shows how much work a step costs (on ``c`` idle cores the
wall-clock rate is at most ``c`` times the per-CPU-second rate).

    python scripts/bench_training.py --envs vmsched --steps 8192 --n-envs 4 --n-steps 512 \
        --vec-env subproc --update-threads 2   # 4 env workers, same 2,048 samples per PPO update
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from typing import Any

ENVS = ("vmsched", "jobshop", "gpudag")


def _cpu_s() -> float:
    """CPU seconds (user + sys) of this process and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _train_config(env: str) -> Any:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="schedgym.conf", version_base="1.3"):
        return compose(config_name="train", overrides=[f"env={env}", "agent=ppo_gnn", "logger=none"])


def bench_row(env: str, steps: int, n_envs: int = 1, vec_env: str = "dummy", update_threads: int | None = None,
              padded: bool = False, seed: int = 0, dedup: bool = True, n_steps: int | None = None) -> dict[str, Any]:
    """Train PPO+GNN on ``env``'s default training config for ``steps`` env steps; the throughput row."""
    import hydra
    from omegaconf import OmegaConf

    from schedgym.agents.train import train

    cfg = _train_config(env)
    tcfg, agent = cfg.env.train, cfg.agent
    policy_kwargs = OmegaConf.to_container(agent.policy_kwargs, resolve=True)
    policy_kwargs["features_extractor_class"] = hydra.utils.get_class(policy_kwargs["features_extractor_class"])
    policy_kwargs["features_extractor_kwargs"]["compact"] = not padded
    policy_kwargs["dedup"] = dedup and not padded
    algo = OmegaConf.to_container(agent.algo, resolve=True)
    if n_steps is not None:
        algo["n_steps"] = n_steps
    with tempfile.TemporaryDirectory() as out:
        cpu0 = time.perf_counter(), _cpu_s()
        summary = train(
            env_id=tcfg.env_id, env_kwargs=hydra.utils.instantiate(tcfg.env_kwargs, _convert_="all"),
            policy_class=hydra.utils.get_class(agent.policy_class), policy_kwargs=policy_kwargs,
            algo_kwargs=algo, total_timesteps=steps, out_dir=out,
            seed=seed, n_envs=n_envs, vec_env=vec_env, update_threads=update_threads, tensorboard=False,
            name=f"bench-{env}")
        cpu = _cpu_s() - cpu0[1]
    return {"env": env, "n_envs": n_envs, "n_steps": algo["n_steps"], "vec_env": vec_env, "update_threads": update_threads or 1,
            "extractor": "padded" if padded else ("dedup" if dedup else "compact"), "steps": summary["timesteps"],
            "learn_wall_s": summary["learn_wall_s"], "steps_per_s": summary["env_steps_per_s"],
            "cpu_s": summary["learn_cpu_s"], "train_cpu_s": cpu}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", default=",".join(ENVS), help=f"comma-separated subset of {ENVS}")
    ap.add_argument("--steps", type=int, default=2048, help="env steps per row (default 2048: 2 PPO updates)")
    ap.add_argument("--n-envs", type=int, default=1)
    ap.add_argument("--vec-env", default="dummy", choices=("dummy", "subproc"))
    ap.add_argument("--update-threads", type=int, default=None, help="torch threads of the PPO update")
    ap.add_argument("--padded", action="store_true", help="run the GNN over the padded batch (compact=False)")
    ap.add_argument("--no-dedup", action="store_true", help="PPO updates without the policy's dedup shortcut")
    ap.add_argument("--n-steps", type=int, default=None,
                    help="rollout steps per env per PPO update (default: conf/agent/ppo_gnn.yaml's 1024); "
                         "n_envs * n_steps samples per update")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    envs = [e.strip() for e in args.envs.split(",") if e.strip()]
    bad = [e for e in envs if e not in ENVS]
    if bad:
        ap.error(f"unknown env(s) {bad}; choose from {ENVS}")
    rows = [bench_row(e, args.steps, args.n_envs, args.vec_env, args.update_threads, args.padded,
                      dedup=not args.no_dedup, n_steps=args.n_steps) for e in envs]
    head = f"{'env':8s} {'n_envs':>6s} {'n_steps':>7s} {'vec_env':>8s} {'upd_thr':>7s} {'extractor':>9s} {'steps':>6s} " \
           f"{'wall_s':>7s} {'steps/s':>8s} {'cpu_s':>7s} {'steps/cpu_s':>11s}"
    print(head)
    for r in rows:
        print(f"{r['env']:8s} {r['n_envs']:6d} {r['n_steps']:7d} {r['vec_env']:>8s} {r['update_threads']:7d} {r['extractor']:>9s} "
              f"{r['steps']:6d} {r['learn_wall_s']:7.1f} {r['steps_per_s']:8.1f} {r['cpu_s']:7.1f} "
              f"{r['steps'] / r['cpu_s']:11.1f}")
    print("wall_s, steps/s: learn() wall time and env steps per wall second (what train.py prints); cpu_s: CPU "
          "seconds (user + sys) of this process and its env workers during learn(); steps/cpu_s: steps / cpu_s")


if __name__ == "__main__":
    main()
