"""VM rescheduling instance and solution types, shared by the env, the baselines, the solvers and the validator.

Units: CPU in cores (vCPUs), memory in MB, GPUs in devices. Every physical machine (PM) has exactly
two NUMA nodes (index 0 and 1); capacities are given per NUMA. A VM spans one NUMA node
(``numa_span == 1``: all of its CPU, memory and GPUs come from that node) or both
(``numa_span == 2``: half of its CPU, memory and GPUs on each node of one PM, VMR2L's double-NUMA VMs).

A *placement* of a VM is a pair ``(pm, numa)``; for 2-NUMA VMs the ``numa`` entry carries no
information and is 0 by convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

#: PM status codes (VMR2L's ``status`` strings).
ACTIVE, DISABLED, OUTAGE = 0, 1, 2
STATUS_NAMES = ("ACTIVE", "DISABLED", "OUTAGE")

#: VMR2L's fragment granularity: free cores that cannot host a 16-core VM are fragments.
DEFAULT_GRANULARITY = 16
#: VMR2L's default migration number limit.
DEFAULT_MNL = 50


def check_mnl(value: object, what: str = "mnl") -> int:
    """``value`` as a migration number limit (migrations allowed per plan): a whole number >= 0.

    Raises:
        ValueError: naming ``what`` (the setting or field) and the valid range, for anything else
            (bools, strings, fractions, NaN, negative numbers).
    """
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or int(value) < 0:
        raise ValueError(f"{what}: the migration number limit must be a whole number >= 0 (migrations per "
                         f"plan), got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class VMInstance:
    """A snapshot of a cluster to be rescheduled with at most ``mnl`` migrations.

    Feasibility of a placement (per NUMA node): CPU, memory and GPU capacity; anti-affinity (no two
    VMs of a host group on one PM, no two VMs of a rack group in one rack); only movable VMs move;
    the target PM is ACTIVE. VMs on DISABLED/OUTAGE PMs must move (evacuation).

    Attributes:
        name: instance name (``"gen_m_medium_s0"`` or the file stem).
        pm_cpu: (P, 2) int64 CPU cores of each NUMA node.
        pm_mem: (P, 2) int64 memory of each NUMA node, MB.
        pm_gpu: (P, 2) int64 GPUs of each NUMA node (0 on CPU-only PMs).
        pm_status: (P,) int8 ``ACTIVE`` (0), ``DISABLED`` (1) or ``OUTAGE`` (2).
        pm_rack: (P,) int64 rack index of each PM (0..R-1).
        vm_cpu: (V,) int64 total cores of each VM (split in halves for 2-NUMA VMs).
        vm_mem: (V,) int64 total memory of each VM, MB.
        vm_gpu: (V,) int64 total GPUs of each VM.
        vm_span: (V,) int64 NUMA span, 1 or 2.
        vm_movable: (V,) bool False for VMs that must not migrate (``allow_migration: false``).
        vm_type: (V,) int64 index into ``type_names``.
        init_pm: (V,) int64 PM of each VM in the snapshot.
        init_numa: (V,) int64 NUMA node of each 1-NUMA VM in the snapshot (0 for 2-NUMA VMs).
        host_groups: list of (k,) int64 arrays, VM indices of each host-level anti-affinity group.
        rack_groups: list of (k,) int64 arrays, VM indices of each rack-level anti-affinity group.
        mnl: migration number limit (moves allowed per plan).
        granularity: cores of the reference VM for the fragment rate (16, VMR2L).
        type_names: names of the VM types (``"ecs.g1.4xlarge"``).
        pm_ids: original PM ids (``node_id``), for writing files back.
        vm_ids: original VM ids (``instance_id``).
        rack_ids: original rack ids.
        source: where the instance came from (file path, ``"generator:..."``).
        meta: free-form details (generator parameters, cluster names).
    """

    name: str
    pm_cpu: np.ndarray  # (P, 2) int64
    pm_mem: np.ndarray  # (P, 2) int64
    pm_gpu: np.ndarray  # (P, 2) int64
    pm_status: np.ndarray  # (P,) int8
    pm_rack: np.ndarray  # (P,) int64
    vm_cpu: np.ndarray  # (V,) int64
    vm_mem: np.ndarray  # (V,) int64
    vm_gpu: np.ndarray  # (V,) int64
    vm_span: np.ndarray  # (V,) int64
    vm_movable: np.ndarray  # (V,) bool
    vm_type: np.ndarray  # (V,) int64
    init_pm: np.ndarray  # (V,) int64
    init_numa: np.ndarray  # (V,) int64
    host_groups: list = field(default_factory=list)  # list of (k,) int64
    rack_groups: list = field(default_factory=list)  # list of (k,) int64
    mnl: int = DEFAULT_MNL
    granularity: int = DEFAULT_GRANULARITY
    type_names: tuple = ()
    pm_ids: tuple = ()
    vm_ids: tuple = ()
    rack_ids: tuple = ()
    source: str = ""
    meta: dict = field(default_factory=dict)

    # ---- sizes ---------------------------------------------------------------------------------
    @property
    def n_pms(self) -> int:
        return int(self.pm_cpu.shape[0])

    @property
    def n_vms(self) -> int:
        return int(self.vm_cpu.shape[0])

    @property
    def n_racks(self) -> int:
        return int(self.pm_rack.max()) + 1 if self.n_pms else 0

    @cached_property
    def pm_active(self) -> np.ndarray:
        """(P,) bool: PMs with status ACTIVE."""
        return self.pm_status == ACTIVE

    @cached_property
    def must_move(self) -> np.ndarray:
        """(V,) bool: movable VMs placed on a DISABLED or OUTAGE PM in the snapshot (evacuation).
        Non-movable VMs on such PMs stay where they are."""
        return ~self.pm_active[self.init_pm] & self.vm_movable

    @cached_property
    def numa_cpu(self) -> np.ndarray:
        """(V,) int64 cores a VM takes on each NUMA node it uses."""
        return self.vm_cpu // self.vm_span

    @cached_property
    def numa_mem(self) -> np.ndarray:
        """(V,) int64 MB a VM takes on each NUMA node it uses."""
        return self.vm_mem // self.vm_span

    @cached_property
    def numa_gpu(self) -> np.ndarray:
        """(V,) int64 GPUs a VM takes on each NUMA node it uses."""
        return self.vm_gpu // self.vm_span

    @property
    def has_gpus(self) -> bool:
        return bool(self.pm_gpu.any())

    def usage(self, pm: np.ndarray, numa: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P, 2) used cores, MB and GPUs of a placement (all VMs, every PM whatever its status)."""
        P = self.n_pms
        pm = np.asarray(pm, dtype=np.int64)
        dbl = self.vm_span == 2
        # flat (PM, NUMA) slot of each VM's (first) node; 2-NUMA VMs also take slot + 1 (NUMA 1)
        slot = 2 * pm + np.where(dbl, 0, numa)
        slot2 = slot[dbl] + 1
        out = []
        for per in (self.numa_cpu, self.numa_mem, self.numa_gpu):
            # integer sums through bincount's float64 weights: exact below 2**53
            u = np.bincount(slot, weights=per, minlength=2 * P)
            if len(slot2):
                u += np.bincount(slot2, weights=per[dbl], minlength=2 * P)
            out.append(u.astype(np.int64).reshape(P, 2))
        return out[0], out[1], out[2]

    def with_mnl(self, mnl: int) -> VMInstance:
        """This instance with the migration number limit ``mnl`` (a whole number >= 0): itself when
        the limit is already ``mnl``, else a copy (one per limit, kept, so that per-instance caches
        stay warm across episodes).

        Raises:
            ValueError: ``mnl`` is not a whole number >= 0.
        """
        mnl = check_mnl(mnl)
        if mnl == self.mnl:
            return self
        copies = self.__dict__.setdefault("_mnl_copies", {})
        if mnl not in copies:
            copies[mnl] = replace(self, mnl=mnl)
        return copies[mnl]

    def __repr__(self) -> str:
        return (f"VMInstance({self.name!r}, pms={self.n_pms}, vms={self.n_vms}, racks={self.n_racks}, "
                f"gpus={int(self.pm_gpu.sum())}, mnl={self.mnl})")


@dataclass
class VMSolution:
    """A migration plan: moves executed one after the other, each feasible when it is executed.

    Attributes:
        moves: (K, 3) int64 rows ``(vm, pm, numa)`` in execution order; ``numa`` is 0 for 2-NUMA VMs.
            A move of a 1-NUMA VM to the other NUMA node of its own PM is a migration too.
        mnl: the migration number limit the plan was made under (None: the instance's ``mnl``);
            informational only: the validator and the metrics use the instance's ``mnl``.
        status: ``"feasible"``, ``"optimal"`` (proved by a solver) or ``"none"``.
        bound: best lower bound on the final fragment rate known to the producer (solvers), else None.
        wall_time_s: seconds spent deciding the plan (env: reset to episode end), or None.
        meta: free-form details (solver statistics, policy name).
    """

    moves: np.ndarray  # (K, 3) int64
    mnl: int | None = None
    status: str = "feasible"
    bound: float | None = None
    wall_time_s: float | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.moves = np.asarray(self.moves, dtype=np.int64).reshape(-1, 3)

    @property
    def n_moves(self) -> int:
        return int(self.moves.shape[0])

    def limit(self, instance: VMInstance) -> int:
        """The migration number limit that applies to this plan: the instance's ``mnl``, whatever
        the plan declares (run with another limit by passing ``instance.with_mnl(...)``)."""
        return int(instance.mnl)

    def final_placement(self, instance: VMInstance) -> tuple[np.ndarray, np.ndarray]:
        """(V,) PM and (V,) NUMA node of every VM after all moves (2-NUMA VMs: numa 0)."""
        pm = instance.init_pm.copy()
        numa = instance.init_numa.copy()
        span = instance.vm_span
        for v, p, n in self.moves.tolist():
            pm[v] = p
            numa[v] = n if span[v] == 1 else 0
        return pm, numa


def fragment_rate(instance: VMInstance, pm: np.ndarray, numa: np.ndarray, granularity: int | None = None) -> float:
    """VMR2L's fragment rate of a placement: sum over ACTIVE PMs and NUMA nodes of
    ``free_cpu mod g`` divided by the total free cores of the ACTIVE PMs (0 when nothing is free)."""
    g = int(granularity or instance.granularity)
    used, _, _ = instance.usage(pm, numa)
    free = (instance.pm_cpu - used)[instance.pm_active]
    total = int(free.sum())
    return float((free % g).sum()) / total if total > 0 else 0.0
