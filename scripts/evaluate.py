"""Evaluate a policy or solver on an instance set, validate every solution, print and save a table.

Examples::

    python scripts/evaluate.py env=jobshop instances=taillard_15x15 policy=mwkr
    python scripts/evaluate.py env=jobshop instances=ft policy=cpsat time_limit_s=30
    python scripts/evaluate.py -m policy=spt,mwkr,mopnr instances=taillard_15x15

Writes ``results.csv`` (one row per episode: env_id, suite, instance, policy, seed, metrics,
wall_time_s, steps, status, error) into the Hydra output dir; rerunning into the same dir
(``hydra.run.dir=...``) skips the episodes already there.

This file runs :func:`schedgym.cli.evaluate.main` from a clone; an installed package provides the same
command as ``schedgym-evaluate``.
"""

from schedgym.cli.evaluate import main

if __name__ == "__main__":
    main()
