"""Run ``schedgym-leaderboard`` from a clone: ``python scripts/leaderboard.py <Hydra overrides>``.

Usage, examples and exit codes: :mod:`schedgym.cli.leaderboard` (and the README).
"""

from schedgym.cli.leaderboard import main

if __name__ == "__main__":
    main()
