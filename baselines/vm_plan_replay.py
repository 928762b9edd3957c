"""Replay a migration plan (for example a CP-SAT LNS plan) as actions of the two-phase env.

A :class:`~schedgym.envs.vmsched.types.VMSolution` lists its moves in execution order, each feasible
when it is made (the solvers sequence them so: :func:`schedgym.baselines.vm_cpsat.sequence_plan`).
:class:`VMPlanReplayPolicy` plays them one by one through ``VMReschedule-v0`` (phase 0: the VM,
phase 1: its target), so a solver plan becomes a trajectory of (observation, action) pairs, for
imitation, and the env's final fragment rate equals the plan's. :func:`replay_actions` gives the
flat action list.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from schedgym.baselines.vm_common import Move, MovePolicy
from schedgym.envs.vmsched.state import VMState
from schedgym.envs.vmsched.types import VMSolution


def replay_actions(env: gym.Env, plan: VMSolution) -> list[int]:
    """The two-phase actions ``[vm_0, target_0, vm_1, target_1, ...]`` of ``plan`` in ``env``
    (``target = 2 * pm + numa``; STOP is not included).

    Raises:
        ValueError: the env is not in the two-phase action mode.
    """
    u = env.unwrapped
    if getattr(u, "action_mode", "two_phase") != "two_phase":
        raise ValueError(f"replay_actions needs action_mode='two_phase', not {u.action_mode!r}")
    out: list[int] = []
    for v, p, n in plan.moves.tolist():
        out.extend(u.encode_move(v, p, n))
    return out


class VMPlanReplayPolicy(MovePolicy):
    """Plays a plan's moves in order, then STOP.

    Args:
        solver: an offline solver (``solve(instance, time_limit_s)``) whose plan for the env's
            instance is replayed; solved at :meth:`reset`.
        plan: a fixed plan instead of ``solver``.
        time_limit_s: the solver's time limit (seconds; None: its own).
    """

    name = "vm_plan_replay"

    def __init__(self, solver: Any = None, plan: VMSolution | None = None, time_limit_s: float | None = None):
        super().__init__()
        if (solver is None) == (plan is None):
            raise ValueError("vm_plan_replay: give exactly one of solver= and plan=")
        self.solver, self.fixed, self.time_limit_s = solver, plan, time_limit_s
        self.plan: VMSolution | None = plan
        self._next = 0

    def reset(self, env: gym.Env) -> None:
        super().reset(env)
        if self.solver is not None:
            self.plan = self.solver.solve(self.env.instance, self.time_limit_s)
        self._next = 0

    def rule(self, state: VMState) -> Move | None:
        if self.plan is None or self._next >= self.plan.n_moves:
            return None
        v, p, n = (int(x) for x in self.plan.moves[self._next])
        if not state.can_move(v, p, n):
            raise RuntimeError(f"vm_plan_replay: move {self._next} of the plan, VM {v} -> (PM {p}, NUMA {n}), "
                               "is infeasible in the env's state (a plan for another instance or limit?)")
        self._next += 1
        return v, p, n
