"""Train an agent on a schedgym environment (Hydra front end of :func:`schedgym.agents.train.train`).

Examples::

    python scripts/train.py env=jobshop agent=ppo_gnn
    python scripts/train.py env=jobshop agent=ppo_mlp logger=tensorboard total_timesteps=20000
    python scripts/train.py experiment=l2d_10x10
    python scripts/train.py -m seed=0,1,2 hydra/launcher=joblib
    python scripts/train.py hydra.run.dir=outputs/train/my-run resume=true   # continue a killed run

W&B runs offline unless ``WANDB_MODE`` is set or ``logger.mode=online``; ``wandb sync <dir>``
uploads an offline run later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from schedgym.cli import CONFIG_PATH


def _start_logger(cfg: DictConfig, out_dir: Path) -> Any:
    kind = cfg.logger.kind
    if kind != "wandb":
        return None
    import wandb  # lazy: a heavy client

    mode = cfg.logger.get("mode") or os.environ.get("WANDB_MODE") or "offline"
    return wandb.init(
        project=cfg.logger.project, entity=cfg.logger.get("entity"), group=cfg.logger.get("group"),
        tags=list(cfg.logger.get("tags") or []), name=f"{cfg.name}-seed{cfg.seed}", dir=str(out_dir),
        mode=mode, sync_tensorboard=True, config=OmegaConf.to_container(cfg, resolve=True),
        resume="allow" if cfg.resume else None, id=_run_id(out_dir) if cfg.resume else None,
    )


def _run_id(out_dir: Path) -> str:
    """A stable W&B run id per output dir, so a resumed run continues the same W&B run."""
    f = out_dir / ".wandb_run_id"
    if f.exists():
        return f.read_text().strip()
    import uuid

    rid = uuid.uuid4().hex[:12]
    f.write_text(rid)
    return rid


def _load_weights(policy, checkpoint: str) -> None:
    """Start from a checkpoint's weights (any padded size: the graph policies have no size-dependent
    parameter)."""
    from schedgym.agents.checkpoint import read_checkpoint

    policy.load_state_dict(read_checkpoint(checkpoint)["state_dict"], strict=True)
    print(f"initial weights from {checkpoint}")


def _self_labeling(cfg: DictConfig, out_dir: Path, env_kwargs: dict, eval_kwargs: dict | None,
                   policy_kwargs: dict) -> dict:
    """Self-labeling training (agent=sls_gnn) with TensorBoard logging (synced to W&B when enabled)."""
    import gymnasium as gym
    import torch

    from schedgym.agents.self_labeling import greedy_metrics, train_self_labeling

    tcfg, algo = cfg.env.train, cfg.agent.algo
    env_kwargs = dict(env_kwargs)
    generator = env_kwargs.pop("generator")
    env = gym.make(tcfg.env_id, generator=generator, **env_kwargs)
    policy_cls = hydra.utils.get_class(cfg.agent.policy_class)
    torch.manual_seed(int(cfg.seed))  # the initial weights depend on the seed only
    policy = policy_cls(env.observation_space, env.action_space, lambda _: float(algo.learning_rate), **policy_kwargs)
    if cfg.agent.get("init_checkpoint"):
        _load_weights(policy, cfg.agent.init_checkpoint)
    metric = tcfg.get("eval_metric", "makespan")
    from schedgym.envs.core.domain import get_domain

    domain = get_domain(cfg.env.domain)
    # what ranks the candidate labels (agent.algo.objective, e.g. mean_jct for online DAGs; default the domain's)
    label_objective = algo.get("objective") or domain.objective or domain.primary_metric
    episodes = int(cfg.eval.episodes or tcfg.get("eval_episodes", 5))
    if eval_kwargs:
        from schedgym.agents.train import match_padding

        eval_kwargs = match_padding(tcfg.env_id, {"generator": generator, **env_kwargs}, eval_kwargs)
    eval_fn = (lambda p: greedy_metrics(p, tcfg.env_id, eval_kwargs, episodes, domain=cfg.env.domain)) \
        if eval_kwargs else None
    writer = None
    if cfg.logger.kind in ("wandb", "tensorboard"):
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tb" / f"{cfg.name}_1"))

    def log_fn(stats: dict, it: int) -> None:
        if writer is not None:
            for k, v in stats.items():
                writer.add_scalar(k, v, it)

    summary = train_self_labeling(
        policy=policy, env_id=tcfg.env_id, env_kwargs=env_kwargs, generator=generator, out_dir=out_dir,
        iterations=int(algo.iterations), samples=int(algo.samples), learning_rate=float(algo.learning_rate),
        batch_size=int(algo.batch_size), objective=label_objective, eval_metric=metric, seed=int(cfg.seed),
        eval_fn=eval_fn,
        eval_every=int(algo.eval_every), log_fn=log_fn, progress_bar=bool(cfg.progress_bar),
        ckpt_meta={"name": cfg.agent.name, "seed": int(cfg.seed)},
        label_policies=hydra.utils.instantiate(cfg.agent.get("label_policies") or [], _convert_="all"),
        domain=cfg.env.domain,
        **({"epochs": int(algo.epochs)} if "epochs" in algo else {}),
    )
    if writer is not None:
        writer.close()
    summary["timesteps"] = summary["iterations"]
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float:
    from schedgym.agents.train import set_threads, train

    set_threads(int(cfg.torch_threads))
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.logger.kind == "wandb" and not cfg.resume:
        _run_id(out_dir)
    run = _start_logger(cfg, out_dir)
    tcfg = cfg.env.train
    env_kwargs = hydra.utils.instantiate(tcfg.env_kwargs, _convert_="all")
    eval_kwargs = OmegaConf.to_container(tcfg.get("eval_env_kwargs"), resolve=True) if tcfg.get("eval_env_kwargs") else None
    agent = cfg.agent
    policy_kwargs = OmegaConf.to_container(agent.policy_kwargs, resolve=True)
    if "features_extractor_class" in policy_kwargs:
        policy_kwargs["features_extractor_class"] = hydra.utils.get_class(policy_kwargs["features_extractor_class"])
    if agent.get("algorithm", "ppo") == "self_labeling":
        summary = _self_labeling(cfg, out_dir, env_kwargs, eval_kwargs, policy_kwargs)
    else:
        summary = train(
            env_id=tcfg.env_id,
            env_kwargs=env_kwargs,
            policy_class=hydra.utils.get_class(agent.policy_class),
            policy_kwargs=policy_kwargs,
            algo_kwargs=OmegaConf.to_container(agent.algo, resolve=True),
            total_timesteps=int(cfg.total_timesteps),
            out_dir=out_dir,
            seed=int(cfg.seed),
            n_envs=int(cfg.n_envs),
            vec_env=str(agent.get("vec_env") or "dummy"),
            update_threads=int(agent.update_threads) if agent.get("update_threads") else None,
            eval_env_kwargs=eval_kwargs,
            eval_every=int(cfg.eval.every),
            eval_episodes=int(cfg.eval.episodes or tcfg.get("eval_episodes", 5)),
            checkpoint_every=int(cfg.checkpoint_every),
            resume=bool(cfg.resume),
            progress_bar=bool(cfg.progress_bar),
            tensorboard=cfg.logger.kind in ("wandb", "tensorboard"),
            device=str(cfg.device),
            name=str(cfg.name),
        )
    metric = tcfg.get("eval_metric")
    final = summary["eval_history"][-1] if summary["eval_history"] else {}
    if run is not None:
        if final:
            run.summary.update({f"eval/{k}": v for k, v in final.items()})
        run.save(str(out_dir / "policy.pt"), base_path=str(out_dir), policy="now")
        run.finish()
    unit = "iterations" if agent.get("algorithm", "ppo") == "self_labeling" else "steps"
    print(f"trained {summary['timesteps']} {unit}; policy checkpoint: {summary['policy']}")
    if final:
        print("last evaluation: " + ", ".join(f"{k}={v:.3f}" for k, v in final.items()))
    return float(final.get(metric, float("nan"))) if metric else float("nan")


if __name__ == "__main__":
    main()
