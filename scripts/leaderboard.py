"""Run a leaderboard suite, store every episode, and render tables and plots.

Examples::

    python scripts/leaderboard.py                         # default suite on a local process pool
    python scripts/leaderboard.py suite=smoke runner=serial
    python scripts/leaderboard.py suite=full runner=ray runner.address=auto
    python scripts/leaderboard.py logger=wandb            # also log tables and plots to W&B (offline)

Outputs in the Hydra output dir (default ``outputs/leaderboard/<suite>``): ``results.sqlite`` (one
row per episode), ``leaderboard.md``, ``leaderboard.csv`` and ``plots/*.png``. A rerun into the same
dir computes only the episodes not stored yet.

This file runs :func:`schedgym.cli.leaderboard.main` from a clone; an installed package provides the same
command as ``schedgym-leaderboard``.
"""

from schedgym.cli.leaderboard import main

if __name__ == "__main__":
    main()
