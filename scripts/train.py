"""Train an agent on a schedgym environment (Hydra front end of :func:`schedgym.agents.train.train`).

Examples::

    python scripts/train.py env=jobshop agent=ppo_gnn
    python scripts/train.py env=jobshop agent=ppo_mlp logger=tensorboard total_timesteps=20000
    python scripts/train.py experiment=l2d_10x10
    python scripts/train.py -m seed=0,1,2 hydra/launcher=joblib
    python scripts/train.py hydra.run.dir=outputs/train/my-run resume=true   # continue a killed run

W&B runs offline unless ``WANDB_MODE`` is set or ``logger.mode=online``; ``wandb sync <dir>``
uploads an offline run later.

This file runs :func:`schedgym.cli.train.main` from a clone; an installed package provides the same
command as ``schedgym-train``.
"""

from schedgym.cli.train import main

if __name__ == "__main__":
    main()
