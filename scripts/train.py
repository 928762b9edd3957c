"""Run ``schedgym-train`` from a clone: ``python scripts/train.py <Hydra overrides>``.

Usage, examples and exit codes: :mod:`schedgym.cli.train` (and the README).
"""

from schedgym.cli.train import main

if __name__ == "__main__":
    main()
