"""Run ``schedgym-evaluate`` from a clone: ``python scripts/evaluate.py <Hydra overrides>``.

Usage, examples and exit codes: :mod:`schedgym.cli.evaluate` (and the README).
"""

from schedgym.cli.evaluate import main

if __name__ == "__main__":
    main()
