"""Command-line front ends (Hydra apps) installed as console scripts.

``schedgym-train``, ``schedgym-evaluate`` and ``schedgym-leaderboard`` run
:mod:`schedgym.cli.train`, :mod:`schedgym.cli.evaluate` and :mod:`schedgym.cli.leaderboard` with the
Hydra configs shipped inside the package (:mod:`schedgym.conf`, the repository's ``conf/``), so they
work from a wheel as well as from a clone (``python scripts/<name>.py`` calls the same ``main``).

Exit codes: 0 on success; 1 when any episode failed or produced an invalid solution (what
succeeded is written first); 2 for a bad command line or config (unknown name, empty list, a policy
that does not apply to the env); 130 when interrupted (resume with the same command).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

#: Hydra config path of the shipped configs (the repository's ``conf/``, packaged as ``schedgym.conf``).
CONFIG_PATH = "pkg://schedgym.conf"


def conf_dir() -> Path:
    """Directory of the shipped Hydra configs (``conf/`` in a clone, ``schedgym/conf`` in a wheel)."""
    return Path(str(files("schedgym.conf")))
