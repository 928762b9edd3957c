"""Exceptions shared by all domains. Every message names the file, the field and the fix."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from gymnasium.error import ResetNeeded


class SchedGymError(Exception):
    """Base class of schedgym's own errors."""


class InstanceFormatError(SchedGymError, ValueError):
    """A malformed instance, trace or profile file (or object).

    The message names the source (file path or object name), the line or field, what is wrong and
    how to fix it.
    """

    def __init__(self, source: str, problem: str, line: int | None = None, fix: str | None = None):
        where = f"{source}, line {line}" if line is not None else source
        msg = f"{where}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)
        self.source = source
        self.line = line
        self.problem = problem


class UnknownNameError(SchedGymError, KeyError):
    """An unknown instance, set or policy name; the message lists the close matches."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
        m = re.fullmatch(r"([A-Za-z_]+)(\d+)", name)
        if m:  # "ta1" -> "ta01", "dmu5" -> "dmu05"
            padded = [f"{m.group(1)}{int(m.group(2)):0{w}d}" for w in (2, 3)]
            close = [p for p in padded if p in valid] + [c for c in close if c not in padded]
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += f"; did you mean {', '.join(repr(c) for c in close)}?"
        else:
            shown = ", ".join(valid[:30]) + (", ..." if len(valid) > 30 else "")
            msg += f"; valid names: {shown}"
        super().__init__(msg)
        self.name = name

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


class InfeasibleSolution(SchedGymError, ValueError):
    """A schedule or placement that violates a constraint of its instance."""


class ResetNeededError(SchedGymError, ResetNeeded, RuntimeError):
    """``step()`` (or ``action_masks()``) while no episode is running: before the first ``reset()``,
    after the episode ended (terminated or truncated) or after a ``reset()`` that raised.

    A subclass of Gymnasium's :class:`~gymnasium.error.ResetNeeded` (what its order-enforcing wrapper
    raises) and of :class:`RuntimeError` (what schedgym raised before), so existing handlers keep working.
    """

    def __init__(self, call: str, reason: str):
        super().__init__(f"call reset() before {call}: {reason}")
        self.call = call
        self.reason = reason


class ConfigError(SchedGymError, ValueError):
    """A command line or config that cannot run: an empty list (``names=[]``, ``seeds=[]``), a policy
    applied to a domain it does not handle, a suite cell without policies. The command-line tools
    exit with status 2 on it (see :mod:`schedgym.cli`)."""


class PolicyDomainError(ConfigError):
    """A policy or solver configured for an env of a domain it does not apply to (for example HEFT
    on job-shop, or a checkpoint trained on another domain)."""
