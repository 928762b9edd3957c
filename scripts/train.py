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


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
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
    print(f"trained {summary['timesteps']} steps; policy checkpoint: {summary['policy']}")
    if final:
        print("last evaluation: " + ", ".join(f"{k}={v:.3f}" for k, v in final.items()))
    return float(final.get(metric, float("nan"))) if metric else float("nan")


if __name__ == "__main__":
    main()
