"""Exit statuses of the command-line tools (documented in :mod:`schedgym.cli`).

A Hydra app cannot choose its exit status: Hydra turns every exception into status 1 and a sweep
(``-m``) runs several jobs in one process. So each tool's console entry point wraps its Hydra app
with :func:`run_app`, and the app reports through an :class:`Outcome`: a bad command line or config
exits 2 (whether Hydra rejects it while composing the config or the app raises
:class:`~schedgym.envs.core.errors.ConfigError` / :class:`~schedgym.envs.core.errors.UnknownNameError`
before running anything), episodes that failed or were invalid exit 1 after every job wrote its
results, Ctrl-C exits 130.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from schedgym.envs.core.errors import ConfigError, UnknownNameError

EXIT_OK = 0
EXIT_FAILED = 1  # an episode failed or was invalid, or a plot failed (results are written first)
EXIT_USAGE = 2  # bad command line or config; nothing ran
EXIT_INTERRUPTED = 130  # Ctrl-C; rerun the same command to resume


@dataclass
class Outcome:
    """What the jobs of one process ran into.

    Attributes:
        started: a job got past Hydra's config composition (its body started).
        problems: one line per job that had failed or invalid episodes or failed plots.
    """

    started: bool = False
    problems: list[str] | None = None

    def fail(self, message: str) -> None:
        """Record a problem; the process exits with :data:`EXIT_FAILED` after its jobs."""
        self.problems = [*(self.problems or []), message]


def usage_error(exc: BaseException) -> NoReturn:
    """Print a bad command line's message and exit with :data:`EXIT_USAGE`."""
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


@contextmanager
def config_errors_exit() -> Iterator[None]:
    """Turn :class:`ConfigError` and :class:`UnknownNameError` raised inside into :func:`usage_error`."""
    try:
        yield
    except (ConfigError, UnknownNameError) as exc:
        usage_error(exc)


def run_app(app: Callable[[], Any], outcome: Outcome) -> None:
    """Run a ``@hydra.main`` app and exit with the status its :class:`Outcome` calls for.

    Hydra exits 1 when it cannot compose the config (an unknown config group option such as
    ``policy=nope``, a malformed override); that happens before the app's body starts, so it
    becomes :data:`EXIT_USAGE` here.
    """
    try:
        app()
    except SystemExit as exc:
        if exc.code == 1 and not outcome.started:
            sys.exit(EXIT_USAGE)
        raise
    if outcome.problems:
        for line in outcome.problems:
            print(line, file=sys.stderr)
        sys.exit(EXIT_FAILED)
