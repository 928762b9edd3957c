"""Shared pieces of the VM rescheduling baselines: move policies on the two-phase env, and running a
move rule without an env.

A *move rule* is a callable ``rule(state) -> (vm, pm, numa) | None`` on a
:class:`~schedgym.envs.vmsched.state.VMState`; None means STOP. :class:`MovePolicy` turns a rule
into a policy for ``schedgym/VMReschedule-v0`` (phase 0 returns the VM or STOP, phase 1 the
target), :func:`run_rule` builds a plan directly (same moves, no observation overhead).

Evacuation first: while VMs still have to leave a DISABLED/OUTAGE PM, every rule here moves one of
them (:func:`candidate_vms`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.vmsched.state import VMState
from schedgym.envs.vmsched.types import VMInstance, VMSolution

Move = tuple[int, int, int]
MoveRule = Callable[[VMState], Move | None]

#: a move must lower the fragment-core count by more than this to count as an improvement
EPS = 1e-12


def plan_limit(instance: VMInstance, mnl: int | None = None) -> int:
    """The migration limit a baseline plans under: the instance's ``mnl`` (the episode's one limit,
    see :func:`schedgym.envs.core.episode.apply_env_overrides`), or a baseline's own ``mnl`` when it
    is smaller: a baseline's setting can tighten the instance's limit, never raise it."""
    return int(instance.mnl) if mnl is None else min(int(instance.mnl), int(mnl))


def candidate_vms(state: VMState) -> tuple[np.ndarray, bool]:
    """(V,) bool VMs the next move may take, and whether they are evacuations (pending VMs that
    can move come first, whatever the fragment rate does)."""
    mask = state.vm_mask()
    ev = mask & state.pending
    if ev.any():
        return ev, True
    return mask, False


class MovePolicy:
    """A move rule as a policy of the two-phase env (``reset(env)``, ``act(obs, info)``)."""

    domains = ("vmsched",)
    name = "vm_move_rule"

    def __init__(self) -> None:
        self.env: Any = None
        self._target: tuple[int, int] | None = None

    def rule(self, state: VMState) -> Move | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self, env: gym.Env) -> None:
        self.env = env.unwrapped
        self._target = None

    def act(self, obs: Any, info: dict) -> int:
        env = self.env
        if info.get("phase", 0) == 1:
            pm, numa = self._target if self._target is not None else divmod(
                int(np.flatnonzero(info["action_mask"])[0]), 2)
            self._target = None
            return 2 * pm + numa
        move = self.rule(env.state)
        if move is None:
            if info["action_mask"][env.stop_action]:
                return env.stop_action
            # STOP not allowed (an evacuation is still possible): take the first valid VM
            move_vm = int(np.flatnonzero(info["action_mask"][: env.stop_action])[0])
            tm = env.state.target_mask(move_vm).ravel()
            self._target = divmod(int(np.flatnonzero(tm)[0]), 2)
            return move_vm
        v, p, n = move
        self._target = (int(p), int(n))
        return int(v)

    def solve_plan(self, instance: VMInstance, mnl: int | None = None) -> VMSolution:
        """The plan this rule makes on ``instance`` without an env, with at most
        :func:`plan_limit` migrations."""
        return run_rule(instance, self.rule, mnl=mnl, name=self.name)


def run_rule(instance: VMInstance, rule: MoveRule, mnl: int | None = None, name: str = "") -> VMSolution:
    """Apply ``rule`` until it stops or the :func:`plan_limit` migrations are used; returns the
    plan with its wall time (seconds)."""
    t0 = time.perf_counter()
    st = VMState(instance, mnl=plan_limit(instance, mnl))
    while st.migrations_left > 0:
        move = rule(st)
        if move is None:
            break
        v, p, n = move
        if not st.can_move(v, p, n):
            raise RuntimeError(f"{name}: rule proposed an infeasible move {move}")
        st.move(v, p, n)
    sol = st.solution(wall_time_s=time.perf_counter() - t0)
    sol.meta["policy"] = name
    return sol
