"""Gymnasium adapter of the VM rescheduling core: ``schedgym/VMReschedule-v0``.

## Description
VM rescheduling (VMR2L, EuroSys 2025): given a snapshot of a cluster, migrate at most ``mnl``
VMs, one after the other, to lower the fragment rate FR = sum over ACTIVE PMs and NUMA nodes of
``free cores mod 16`` / total free cores. Each migration is a two-phase decision: phase 0 picks a
VM (or STOP), phase 1 picks its target (PM, NUMA node). Feasibility (capacity per NUMA node, 2-NUMA
VMs, anti-affinity, movable flag, ACTIVE target, evacuation of DISABLED/OUTAGE PMs) is enforced by
the masks; see :mod:`schedgym.envs.vmsched.state`.

## Action Space
``Discrete(A)`` with ``A = max(max_vms + 1, 2 * max_pms)``. Phase 0: action ``v < max_vms`` picks VM
``v``, action ``max_vms`` is STOP. Phase 1: action ``2 * pm + numa`` (``numa = 0`` for 2-NUMA VMs).
:meth:`action_masks` (sb3-contrib convention; also ``info["action_mask"]`` and
``obs["action_mask"]``) returns the current phase's mask; a phase-0 VM is valid only if it has a
feasible target, so phase 1 always has one. Invalid actions are no-ops with
``info["invalid_action"] = True`` and reward ``invalid_action_penalty``; after ``max_vms + mnl``
invalid actions the episode is truncated. :meth:`encode_move` / :meth:`step_move` give the flat
``(vm, pm, numa)`` view used by search baselines.

## Observation Space
The padded graph of :mod:`schedgym.envs.core.graph_obs`. Nodes: ``2 * max_pms`` NUMA nodes (row
``2 * pm + numa``), then ``max_vms`` VM nodes (row ``2 * max_pms + v``), then one STOP node.
Node features (cores, MB, GPUs divided by the largest NUMA capacity of the instance):

0. NUMA-node flag; 1. VM flag; 2. STOP flag; 3. NUMA: free cores, VM: cores per NUMA node;
4. memory (same); 5. GPUs (same); 6. NUMA: ``(free cores mod 16) / 16`` (0 if not ACTIVE), VM:
``(cores per node mod 16) / 16``; 7. NUMA: PM ACTIVE, VM: movable; 8. NUMA: node index, VM: 2-NUMA
flag; 9. NUMA: used-core fraction, VM: must be evacuated; 10. NUMA: valid target of the selected VM
(phase 1), VM: selected (phase 1); 11. VM: fragment cores its source loses if it leaves, / 16.

Edges: the two NUMA nodes of each PM (both directions) and VM -> NUMA node of its placement (two
edges for a 2-NUMA VM). Edge features: placement flag, sibling flag, cores per node / capacity.
``globals``: phase, migrations left / mnl, FR, initial FR, migrations used / mnl, PMs / max_pms,
VMs / max_vms, VMs still to evacuate / mnl. ``action_node`` maps each action to its node (VM, NUMA or
STOP node).

## Rewards
Phase-1 steps: decrease of FR by the move (scale-free; sums to initial FR - final FR) minus
``migration_cost``. Phase-0 steps and STOP: 0.

## Starting State
The snapshot given by ``options={"instance": ...}`` (a name such as ``"gen_m_medium_s0"``, a JSON
path or a :class:`VMInstance`), else one of the env's instances, else a fresh draw of the generator
(default: S size, medium utilisation).

## Episode End
Terminated on STOP or when the ``mnl`` migrations are used. At the end, ``info["solution"]`` (the
migration plan, :class:`VMSolution`) and ``info["metrics"]`` (``fragment_rate``,
``initial_fragment_rate``, ``migrations``, ``violations``, ...) are filled.
Once the episode has ended (terminated or truncated), ``step()`` raises
:class:`~schedgym.envs.core.errors.ResetNeededError` until the next ``reset()``, as before the first
``reset()`` and after one that raised (:mod:`schedgym.envs.core.base_env`).

## Arguments
``instance`` (name, path, instance or list of them), ``generator`` (callable ``rng -> VMInstance``),
``mnl`` (migration number limit, a whole number >= 0; None: the instance's; given, it replaces the
instance's limit: ``env.instance.mnl`` is the episode's limit), ``max_pms`` / ``max_vms`` (padded sizes),
``migration_cost`` (reward per migration), ``invalid_action_penalty``, ``render_mode`` (``"rgb_array"``),
``action_mode``: ``"two_phase"`` (default, the above) or ``"vm"``: one decision per migration, the
policy picks a VM (or STOP) and the env moves it to its best target by fragment-core change
(:func:`schedgym.envs.vmsched.targets.best_targets`: fewest fragment cores added, ties best-fit);
the phase is always 0, and node feature 10 of every VM holds the fragment cores that move would
remove (/ 16; 0 where the VM cannot move), see :mod:`schedgym.envs.vmsched.targets`.

## Version History
* v0: initial version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.core.base_env import SchedEnv, StepOutcome
from schedgym.envs.core.graph_obs import padded_graph_space
from schedgym.envs.core.sources import load_instances, padded_sizes
from schedgym.envs.vmsched.generator import VMClusterGenerator
from schedgym.envs.vmsched.instances import load_instance
from schedgym.envs.vmsched.metrics import metrics
from schedgym.envs.vmsched.state import VMState
from schedgym.envs.vmsched.targets import best_targets
from schedgym.envs.vmsched.types import VMInstance, VMSolution, check_mnl

N_NODE_FEATURES = 12
N_EDGE_FEATURES = 3
N_GLOBALS = 8
#: ``two_phase``: VM then target; ``vm``: VM only, the env picks the target (module docstring)
ACTION_MODES = ("two_phase", "vm")

InstanceSpec = str | VMInstance | Sequence[str | VMInstance] | None


class VMRescheduleEnv(SchedEnv):
    """Two-phase VM rescheduling (see the module docstring)."""

    def __init__(
        self,
        instance: InstanceSpec = None,
        generator: Callable[[np.random.Generator], VMInstance] | None = None,
        mnl: int | None = None,
        max_pms: int | None = None,
        max_vms: int | None = None,
        migration_cost: float = 0.0,
        invalid_action_penalty: float = -1.0,
        render_mode: str | None = None,
        action_mode: str = "two_phase",
    ):
        super().__init__(render_mode)
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
        self.action_mode = action_mode
        self._auto = action_mode == "vm"
        self._auto_target: np.ndarray | None = None
        self.mnl_arg = None if mnl is None else check_mnl(mnl, "mnl")
        self.migration_cost = float(migration_cost)
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.instances = load_instances(instance, load_instance)
        self.generator = generator or VMClusterGenerator(size="S")
        self.max_pms, self.max_vms = padded_sizes(
            self.instances, self.generator, lambda i: (i.n_pms, i.n_vms), (max_pms, max_vms))
        self.n_numa_nodes = 2 * self.max_pms
        self.stop_action = self.max_vms
        self.n_actions = max(self.max_vms + 1, 2 * self.max_pms)
        self.n_nodes = 2 * self.max_pms + self.max_vms + 1
        self.stop_node = self.n_nodes - 1
        self.max_edges = 2 * self.max_pms + 2 * self.max_vms
        self.action_space = gym.spaces.Discrete(self.n_actions)
        self.observation_space = padded_graph_space(
            self.n_nodes, N_NODE_FEATURES, self.max_edges, N_EDGE_FEATURES, self.n_actions, N_GLOBALS)
        # action -> node maps of the two phases
        node0 = np.zeros(self.n_actions, dtype=np.int64)
        node0[: self.max_vms] = 2 * self.max_pms + np.arange(self.max_vms)
        node0[self.stop_action] = self.stop_node
        node1 = np.zeros(self.n_actions, dtype=np.int64)
        node1[: 2 * self.max_pms] = np.arange(2 * self.max_pms)
        self._action_node = (node0, node1)
        self.state: VMState | None = None
        self.instance: VMInstance | None = None

    # ------------------------------------------------------------------------------------------
    # episode control
    # ------------------------------------------------------------------------------------------
    def _start_episode(self, options: dict[str, Any]) -> None:
        if options.get("instance") is not None:
            inst = load_instance(options["instance"])
        elif self.instances:
            inst = self.instances[int(self.np_random.integers(len(self.instances)))]
        else:
            inst = self.generator(self.np_random)
        if inst.n_pms > self.max_pms or inst.n_vms > self.max_vms:
            raise ValueError(
                f"instance {inst.name} ({inst.n_pms} PMs, {inst.n_vms} VMs) does not fit this env's padded "
                f"sizes (max_pms={self.max_pms}, max_vms={self.max_vms}); build the env with larger "
                "max_pms/max_vms")
        if self.mnl_arg is not None:  # one limit for the state, the plan, the validator and the metrics
            inst = inst.with_mnl(self.mnl_arg)
        self.instance = inst
        self.state = VMState(inst)
        self.phase = 0
        self.selected = -1
        self.n_invalid = 0
        self.done = False
        self.initial_fr = self.state.fragment_rate()
        self._t0 = time.perf_counter()
        self._prepare_static(inst)
        self._refresh()

    def _prepare_static(self, inst: VMInstance) -> None:
        P, V, Pm = inst.n_pms, inst.n_vms, self.max_pms
        st = self.state
        self.cpu_scale = float(max(1, inst.pm_cpu.max(initial=1)))
        self.mem_scale = float(max(1, inst.pm_mem.max(initial=1)))
        self.gpu_scale = float(max(1, inst.pm_gpu.max(initial=1)))
        g = st.g
        x = np.zeros((self.n_nodes, N_NODE_FEATURES), dtype=np.float32)
        x[: 2 * P, 0] = 1.0
        x[: 2 * P, 8] = np.tile([0.0, 1.0], P)
        x[: 2 * P, 7] = np.repeat(st.active, 2)
        vr = slice(2 * Pm, 2 * Pm + V)
        x[vr, 1] = 1.0
        x[vr, 3] = st.c / self.cpu_scale
        x[vr, 4] = st.m / self.mem_scale
        x[vr, 5] = st.gp / self.gpu_scale
        x[vr, 6] = (st.c % g) / g
        x[vr, 7] = st.movable
        x[vr, 8] = st.span == 2
        x[self.stop_node, 2] = 1.0
        self._x = x
        self._vr = vr
        self._xs = None
        self._cap = np.maximum(inst.pm_cpu.ravel(), 1).astype(np.float64)
        self._cap_list = self._cap.tolist()
        ei = np.zeros((2, self.max_edges), dtype=np.int64)
        ea = np.zeros((self.max_edges, N_EDGE_FEATURES), dtype=np.float32)
        em = np.zeros(self.max_edges, dtype=np.int8)
        nodes = np.arange(P)
        ei[0, : 2 * P] = np.stack([2 * nodes, 2 * nodes + 1], axis=1).ravel()
        ei[1, : 2 * P] = np.stack([2 * nodes + 1, 2 * nodes], axis=1).ravel()
        ea[: 2 * P, 1] = 1.0
        em[: 2 * P] = 1
        self._pe = 2 * Pm  # first placement edge; VM v uses edges _pe + 2v and _pe + 2v + 1
        vms = np.arange(V)
        ei[0, self._pe + 2 * vms] = 2 * Pm + vms
        ei[0, self._pe + 2 * vms + 1] = 2 * Pm + vms
        ea[self._pe + 2 * vms, 0] = 1.0
        ea[self._pe + 2 * vms + 1, 0] = 1.0
        ea[self._pe + 2 * vms, 2] = st.c / self.cpu_scale
        ea[self._pe + 2 * vms + 1, 2] = st.c / self.cpu_scale
        em[self._pe + 2 * vms] = 1
        em[self._pe + 2 * vms + 1] = st.span == 2
        self._ei, self._ea, self._em = ei, ea, em
        self._update_edges(vms)
        node_mask = np.zeros(self.n_nodes, dtype=np.int8)
        node_mask[: 2 * P] = 1
        node_mask[vr] = 1
        node_mask[self.stop_node] = 1
        self._node_mask = node_mask

    def _update_edges(self, vms: np.ndarray) -> None:
        st = self.state
        first = st.vm_pm[vms] * 2 + np.where(st.span[vms] == 2, 0, st.vm_numa[vms])
        self._ei[1, self._pe + 2 * vms] = first
        self._ei[1, self._pe + 2 * vms + 1] = st.vm_pm[vms] * 2 + 1

    def _update_edge(self, v: int) -> None:
        """:meth:`_update_edges` of one VM (after it moved)."""
        st = self.state
        p = int(st.vm_pm[v])
        e = self._pe + 2 * v
        self._ei[1, e] = 2 * p + (0 if st.span[v] == 2 else int(st.vm_numa[v]))
        self._ei[1, e + 1] = 2 * p + 1

    # ------------------------------------------------------------------------------------------
    # actions
    # ------------------------------------------------------------------------------------------
    def encode_move(self, vm: int, pm: int, numa: int) -> tuple[int, int]:
        """The (phase-0, phase-1) actions of migrating ``vm`` to ``(pm, numa)``."""
        if self.state is not None and self.state.span[vm] == 2:
            numa = 0
        return int(vm), 2 * int(pm) + int(numa)

    def decode_target(self, action: int) -> tuple[int, int]:
        """(pm, numa) of a phase-1 action."""
        return divmod(int(action), 2)

    def step_move(self, vm: int, pm: int, numa: int):
        """Both phases of one migration; returns the phase-1 step's ``(obs, reward, terminated,
        truncated, info)`` (or the phase-0 step's if that one was invalid or ended the episode)."""
        a0, a1 = self.encode_move(vm, pm, numa)
        if self._auto:  # one decision: the env's target must be the one asked for
            if self._auto_target is None or int(self._auto_target[vm]) != a1:
                raise ValueError(f"action_mode='vm' moves VM {vm} to its best target "
                                 f"{None if self._auto_target is None else divmod(int(self._auto_target[vm]), 2)}, "
                                 f"not to {(pm, numa)}; use action_mode='two_phase' to choose targets")
            return self.step(a0)
        out = self.step(a0)
        if out[2] or out[3] or out[4]["invalid_action"]:
            return out
        return self.step(a1)

    def _action_mask(self) -> np.ndarray:
        """(A,) bool mask of valid actions of the current phase."""
        return self._mask.copy()

    def _refresh(self) -> None:
        """Recompute the current phase's mask (after every state change)."""
        st = self.state
        mask = np.zeros(self.n_actions, dtype=bool)
        if self.done:
            self._vm_ok = np.zeros(st.V, dtype=bool)
        elif self.phase == 0:
            vm_ok = st.vm_mask()
            mask[: st.V] = vm_ok
            mask[self.stop_action] = st.stop_allowed(vm_ok)
            self._vm_ok = vm_ok
            if self._auto:
                self._refresh_targets()
        else:
            mask[: 2 * st.P] = st.target_mask(self.selected).ravel()
        self._mask = mask

    def _refresh_targets(self) -> None:
        """``vm`` action mode: every VM's best target now, and its fragment-core gain written into
        node feature 10 of the VM rows (kept in :meth:`_state_features`' array)."""
        target, gain = best_targets(self.state)
        self._auto_target = target
        x = self._state_features()
        x[self._vr, 10] = np.where(target >= 0, gain / self.state.g, 0.0)

    def _apply(self, action) -> StepOutcome:
        a = int(action)
        st = self.state
        if self.done or not (0 <= a < self.n_actions) or not self._mask[a]:
            self.n_invalid += 1
            truncated = self.n_invalid > self.max_vms + st.mnl and not self.done
            if truncated:
                self.done = True
            return StepOutcome(self.invalid_action_penalty, False, truncated, invalid=True)
        reward = 0.0
        terminated = False
        if self.phase == 0:
            if a == self.stop_action:
                terminated = True
            elif self._auto:
                pm, numa = divmod(int(self._auto_target[a]), 2)
                reward, terminated = self._migrate(a, pm, numa)
            else:
                self.selected = a
                self.phase = 1
        else:
            pm, numa = divmod(a, 2)
            reward, terminated = self._migrate(self.selected, pm, numa)
        if terminated:
            self.done = True
        self._refresh()
        return StepOutcome(float(reward), terminated, False, invalid=False)

    def _migrate(self, v: int, pm: int, numa: int) -> tuple[float, bool]:
        """Move VM ``v`` to ``(pm, numa)``; returns (reward, whether the migrations are used up)."""
        st = self.state
        before = st.fragment_rate()
        p0 = int(st.vm_pm[v])
        st.move(v, pm, numa)
        self._update_features(v, p0, pm)
        self._update_edge(v)
        reward = before - st.fragment_rate() - self.migration_cost
        self.phase = 0
        self.selected = -1
        return reward, st.migrations_left <= 0

    # ------------------------------------------------------------------------------------------
    # observation and info
    # ------------------------------------------------------------------------------------------
    def _state_features(self) -> np.ndarray:
        """Node features that depend on the placement only; built at reset, then kept up to date
        in place by :meth:`_update_features` after every move (never handed out: observations copy it)."""
        if self._xs is None:
            st = self.state
            P, g = st.P, st.g
            x = self._x.copy()
            fc = st.free_c.ravel()
            x[: 2 * P, 3] = fc / self.cpu_scale
            x[: 2 * P, 4] = st.free_m.ravel() / self.mem_scale
            x[: 2 * P, 5] = st.free_g.ravel() / self.gpu_scale
            x[: 2 * P, 6] = (fc % g) / g * self._x[: 2 * P, 7]
            x[: 2 * P, 9] = 1.0 - fc / self._cap
            vr = self._vr
            x[vr, 9] = st.pending
            x[vr, 11] = st.source_delta()[0] / -g
            self._xs = x
        return self._xs

    def _update_features(self, v: int, p0: int, p: int) -> None:
        """Refresh the rows of :meth:`_state_features` that the move of ``v`` from PM ``p0`` to PM
        ``p`` changed: the NUMA nodes of both PMs, ``v``'s evacuation flag and the source deltas of
        the VMs on both PMs (the same formulas as the full build, on those rows only)."""
        if self._xs is None:
            return
        st = self.state
        x, g = self._xs, st.g
        cs, ms, gs = self.cpu_scale, self.mem_scale, self.gpu_scale
        for q in ((p0,) if p == p0 else (p0, p)):  # 4 rows: plain Python floats beat numpy calls
            act = float(self._x[2 * q, 7])
            cap = self._cap_list[2 * q: 2 * q + 2]
            for k, (fc, fm, fg) in enumerate(zip(st.free_c[q].tolist(), st.free_m[q].tolist(),
                                                 st.free_g[q].tolist())):
                row = x[2 * q + k]
                row[3] = fc / cs
                row[4] = fm / ms
                row[5] = fg / gs
                row[6] = (fc % g) / g * act
                row[9] = 1.0 - fc / cap[k]
        off = 2 * self.max_pms
        x[off + v, 9] = st.pending[v]
        aff = st.last_affected
        x[off + aff, 11] = st.source_delta()[0][aff] / -g

    def _observation(self) -> dict[str, np.ndarray]:
        st = self.state
        P = st.P
        x = self._state_features().copy()
        if self.phase == 1:
            x[: 2 * P, 10] = self._mask[: 2 * P]
            x[2 * self.max_pms + self.selected, 10] = 1.0
        mnl = max(1, st.mnl)
        glob = np.array([self.phase, st.migrations_left / mnl, st.fragment_rate(), self.initial_fr,
                         len(st.moves) / mnl, P / self.max_pms, st.V / max(1, self.max_vms),
                         st.n_pending / mnl], dtype=np.float32)
        return {
            "x": x,
            "edge_index": self._ei.copy(),
            "edge_attr": self._ea.copy(),
            "edge_mask": self._em.copy(),
            "node_mask": self._node_mask.copy(),
            "action_mask": self._mask.astype(np.int8),
            "action_node": self._action_node[self.phase].copy(),
            "globals": glob,
        }

    def _domain_info(self) -> dict[str, Any]:
        st = self.state
        return {"phase": self.phase, "fragment_rate": st.fragment_rate(), "migrations_left": st.migrations_left}

    def _final_solution(self) -> VMSolution | None:
        return self.solution() if self.done else None

    def _metrics(self, solution: VMSolution) -> dict[str, float]:
        return metrics(self.instance, solution)

    def solution(self) -> VMSolution:
        """The migration plan so far, with the wall time since reset."""
        return self.state.solution(wall_time_s=time.perf_counter() - self._t0)

    # ------------------------------------------------------------------------------------------
    def _render_rgb(self) -> np.ndarray:
        from schedgym.envs.vmsched.viewer import usage_rgb

        return usage_rgb(self.instance, self.state.vm_pm, self.state.vm_numa)
