"""Seeded generator of cluster snapshots calibrated to VMR2L's medium cluster (EuroSys 2025).

Calibration targets (DESIGN.md section 7 and the issue): PMs with 2 NUMA nodes of 44 cores and
184,388 MB each (88 cores, 368,776 MB per PM); VMR2L's ``ecs.g1`` VM types (2, 4, 8, 16 cores on
one NUMA node; 32, 64, 84, 88 cores split over both; 4,096 MB per core, 350,208 MB for the 84-core
type), about 88 % of VMs at most 16 cores; CPU utilisation about 94 % and an initial fragment rate
about 0.55-0.60 at the ``medium`` level; sizes S (40 PMs / about 300 VMs, for tests), M (279 / about
2,089) and L (1,176 / about 4,546).

How a snapshot is made: a cluster's history is simulated. VMs arrive with the type mix and are
placed on a feasible NUMA node by a mix of best-fit and random-fit (a production scheduler with
some randomness), and depart at random, until the CPU utilisation reaches its target; then
arrivals and departures alternate for ``churn`` x V more events at that utilisation. Churn is
what leaves the fragments of a real cluster. Some VMs are marked non-migratable, and host- and
rack-level anti-affinity groups (deployment sets) are drawn among VMs that already satisfy them.

The GPU variant (``gpu=True``) gives every PM 8 GPUs (4 per NUMA node) and adds GPU VMs with 1, 2
or 4 GPUs on one NUMA node or 8 GPUs over both, with 8 cores and 32,768 MB per GPU (see
:data:`GPU_TYPES`).

Every generator is a callable ``generator(rng) -> VMInstance`` so that environments can draw a
fresh snapshot per episode from their seeded ``np_random``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from schedgym.envs.vmsched.types import ACTIVE, DEFAULT_MNL, DISABLED, OUTAGE, VMInstance

NUMA_CPU = 44
NUMA_MEM_MB = 184_388
MB_PER_CORE = 4096

#: VMR2L's VM types: (name, cores, MB, NUMA span, GPUs).
CPU_TYPES: tuple[tuple[str, int, int, int, int], ...] = (
    ("ecs.g1.large", 2, 8192, 1, 0),
    ("ecs.g1.xlarge", 4, 16384, 1, 0),
    ("ecs.g1.2xlarge", 8, 32768, 1, 0),
    ("ecs.g1.4xlarge", 16, 65536, 1, 0),
    ("ecs.g1.8xlarge", 32, 131072, 2, 0),
    ("ecs.g1.16xlarge", 64, 262144, 2, 0),
    ("ecs.g1.21xlarge", 84, 350208, 2, 0),
    ("ecs.g1.22xlarge", 88, 360448, 2, 0),
)
#: Arrival probabilities of :data:`CPU_TYPES`. With churn, large VMs are rejected more often, so the
#: snapshot holds about 89 % of VMs at most 16 cores (VMR2L: 88 %) and 2,090 VMs at M / medium.
CPU_MIX = np.array([0.15, 0.22, 0.25, 0.24, 0.10, 0.028, 0.004, 0.008])

#: GPU VM types (cores, MB, span, GPUs): 1/2/4 GPUs on one NUMA node, 8 GPUs over both.
GPU_TYPES: tuple[tuple[str, int, int, int, int], ...] = (
    ("gpu.1x", 8, 32768, 1, 1),
    ("gpu.2x", 16, 65536, 1, 2),
    ("gpu.4x", 32, 131072, 1, 4),
    ("gpu.8x", 64, 262144, 2, 8),
)
GPU_MIX = np.array([0.45, 0.3, 0.17, 0.08])

#: Named sizes: (PMs, approximate VMs) of VMR2L's datasets; S is for tests.
SIZES: dict[str, tuple[int, int]] = {"S": (40, 300), "M": (279, 2089), "L": (1176, 4546)}
#: Utilisation levels: target CPU utilisation of the active PMs.
UTILISATION: dict[str, float] = {"low": 0.85, "medium": 0.94, "high": 0.97}


@dataclass
class VMClusterGenerator:
    """Seeded cluster snapshots (see the module docstring).

    Args:
        n_pms: number of PMs (or use ``size``).
        size: ``"S"``, ``"M"`` or ``"L"`` (sets ``n_pms``).
        utilisation: target CPU utilisation (fraction) or a level name ``low``/``medium``/``high``.
        churn: departure/arrival events at the target utilisation, as a multiple of the VM count.
        best_fit: probability that an arrival is placed best-fit (else random-fit).
        gpu: GPU cluster variant (8 GPUs per PM, GPU VM types added).
        gpu_share: fraction of arrivals that are GPU VMs in the GPU variant.
        non_migratable: fraction of VMs with ``allow_migration: false``.
        host_groups / rack_groups: number of host- and rack-level anti-affinity groups.
        group_size: VMs per anti-affinity group.
        n_disabled / n_outage: PMs marked DISABLED / OUTAGE (their VMs must be evacuated), drawn
            among the least-used quarter of the PMs.
        rack_size: PMs per rack.
        mnl: migration number limit written into the instance.
    """

    n_pms: int | None = None
    size: str = "S"
    utilisation: float | str = "medium"
    churn: float = 2.0
    best_fit: float = 0.8
    gpu: bool = False
    gpu_share: float = 0.25
    non_migratable: float = 0.02
    host_groups: int | None = None
    rack_groups: int | None = None
    group_size: int = 4
    n_disabled: int = 0
    n_outage: int = 0
    rack_size: int = 8
    mnl: int = DEFAULT_MNL

    def __post_init__(self):
        if self.n_pms is None:
            if self.size not in SIZES:
                raise ValueError(f"size must be one of {sorted(SIZES)}, got {self.size!r}")
            self.n_pms = SIZES[self.size][0]
        if isinstance(self.utilisation, str):
            if self.utilisation not in UTILISATION:
                raise ValueError(f"utilisation must be a fraction or one of {sorted(UTILISATION)}, "
                                 f"got {self.utilisation!r}")
            self.util = UTILISATION[self.utilisation]
        else:
            self.util = float(self.utilisation)
        if not 0.0 < self.util < 1.0:
            raise ValueError(f"utilisation must be in (0, 1), got {self.util}")
        n = int(self.n_pms)
        self.host_groups = max(1, n // 10) if self.host_groups is None else self.host_groups
        self.rack_groups = max(1, n // 20) if self.rack_groups is None else self.rack_groups

    def size_bounds(self) -> tuple[int, int]:
        """(max PMs, max VMs) of the snapshots this generator draws (VMs: a safe upper bound)."""
        n = int(self.n_pms)
        # smallest VM has 2 cores: never more than capacity / 2 VMs; in practice about 7.5 per PM
        return n, int(np.ceil(n * 2 * NUMA_CPU * self.util / 2.0 * 0.25)) + 16

    def name(self, seed: int | None = None) -> str:
        util = self.utilisation if isinstance(self.utilisation, str) else f"u{int(round(self.util * 100))}"
        size = self.size.lower() if self.n_pms == SIZES.get(self.size, (None,))[0] else f"p{self.n_pms}"
        base = f"gen_{size}_{util}{'_gpu' if self.gpu else ''}"
        return base if seed is None else f"{base}_s{seed}"

    # ------------------------------------------------------------------------------------------
    def __call__(self, rng: np.random.Generator, name: str | None = None) -> VMInstance:
        P = int(self.n_pms)
        types = list(CPU_TYPES)
        mix = CPU_MIX.copy()
        if self.gpu:
            types += list(GPU_TYPES)
            mix = np.concatenate([CPU_MIX * (1 - self.gpu_share), GPU_MIX * self.gpu_share])
        mix = mix / mix.sum()
        t_cpu = np.array([t[1] for t in types], dtype=np.int64)
        t_mem = np.array([t[2] for t in types], dtype=np.int64)
        t_span = np.array([t[3] for t in types], dtype=np.int64)
        t_gpu = np.array([t[4] for t in types], dtype=np.int64)
        cap_cpu = np.full((P, 2), NUMA_CPU, dtype=np.int64)
        cap_mem = np.full((P, 2), NUMA_MEM_MB, dtype=np.int64)
        cap_gpu = np.full((P, 2), 4 if self.gpu else 0, dtype=np.int64)
        free_cpu, free_mem, free_gpu = cap_cpu.copy(), cap_mem.copy(), cap_gpu.copy()
        target = self.util * cap_cpu.sum()
        # live VMs: type, pm, numa
        live_t: list[int] = []
        live_p: list[int] = []
        live_n: list[int] = []
        self._simulate(rng, free_cpu, free_mem, free_gpu, t_cpu, t_mem, t_gpu, t_span, mix, target,
                       live_t, live_p, live_n)
        V = len(live_t)
        order = rng.permutation(V)
        vt = np.asarray(live_t, dtype=np.int64)[order]
        vp = np.asarray(live_p, dtype=np.int64)[order]
        vn = np.asarray(live_n, dtype=np.int64)[order]
        movable = rng.random(V) >= self.non_migratable
        # racks and statuses
        rack = (np.arange(P) // max(1, self.rack_size)).astype(np.int64)
        status = np.full(P, ACTIVE, dtype=np.int8)
        # DISABLED/OUTAGE PMs are drawn among the least-used quarter (operators drain light PMs first),
        # redrawn until their VMs can be evacuated first-fit into the other PMs' free space
        n_bad = min(P, self.n_disabled + self.n_outage)
        light = np.argsort(cap_cpu.sum(axis=1) - free_cpu.sum(axis=1), kind="stable")[: max(n_bad, P // 4)]
        bad = rng.choice(light, size=n_bad, replace=False)
        for _ in range(50):
            if n_bad == 0 or self._evacuable(bad, vp, vt, t_cpu, t_mem, t_gpu, t_span, free_cpu, free_mem, free_gpu):
                break
            bad = rng.choice(light, size=n_bad, replace=False)
        else:
            raise RuntimeError(f"{self.name()}: found no {n_bad} PMs whose VMs can be evacuated; "
                               "lower n_disabled/n_outage or the utilisation")
        status[bad[: self.n_disabled]] = DISABLED
        status[bad[self.n_disabled:]] = OUTAGE
        host_groups = self._groups(rng, vp, self.host_groups, key=vp)
        rack_groups = self._groups(rng, vp, self.rack_groups, key=rack[vp])
        return VMInstance(
            name=name or self.name(),
            pm_cpu=cap_cpu, pm_mem=cap_mem, pm_gpu=cap_gpu, pm_status=status, pm_rack=rack,
            vm_cpu=t_cpu[vt], vm_mem=t_mem[vt], vm_gpu=t_gpu[vt], vm_span=t_span[vt],
            vm_movable=movable, vm_type=vt, init_pm=vp, init_numa=vn,
            host_groups=host_groups, rack_groups=rack_groups, mnl=int(self.mnl),
            type_names=tuple(t[0] for t in types),
            pm_ids=tuple(f"pm_{i}" for i in range(P)), vm_ids=tuple(f"vm_{i}" for i in range(V)),
            rack_ids=tuple(f"rack_{r}" for r in range(int(rack.max()) + 1)),
            source=f"generator:{self.name()}",
            meta={"generator": {"n_pms": P, "utilisation": self.util, "churn": self.churn,
                                "best_fit": self.best_fit, "gpu": self.gpu}},
        )

    def _simulate(self, rng: np.random.Generator, free_cpu: np.ndarray, free_mem: np.ndarray, free_gpu: np.ndarray,
                  t_cpu: np.ndarray, t_mem: np.ndarray, t_gpu: np.ndarray, t_span: np.ndarray, mix: np.ndarray,
                  target: float, live_t: list[int], live_p: list[int], live_n: list[int]) -> None:
        """The cluster's history (module docstring): fill to ``target`` used cores, then churn. Updates
        the ``(P, 2)`` free arrays in place and appends the live VMs' type, PM and NUMA node.

        The random draws are those of the plain numpy formulation, one for one: a type is
        ``rng.choice(n_types, p=mix)`` (the inverse CDF of one ``rng.random()``), a best-fit placement
        adds ``rng.random(n) * 0.5`` to the candidates' free cores and takes the first minimum, a
        random-fit one is ``rng.choice(candidates)`` (``rng.integers(n)``), a departure
        ``rng.integers(n_live)``. The state lives in flat NUMA-node arrays (row ``2 * pm + numa``) and
        the per-type demands in Python lists, which keeps the ~2.5 events per VM cheap."""
        fc, fm, fg = free_cpu.reshape(-1), free_mem.reshape(-1), free_gpu.reshape(-1)  # views
        # per NUMA node: cores, MB, GPUs; span; cores of the whole VM
        dem = [(int(t_cpu[t] // t_span[t]), int(t_mem[t] // t_span[t]), int(t_gpu[t] // t_span[t]), int(t_span[t]),
                int(t_cpu[t])) for t in range(len(t_cpu))]
        cdf = mix.cumsum()
        cdf /= cdf[-1]
        cdf_list = cdf.tolist()
        best_fit = self.best_fit
        used = 0

        def draw_type() -> int:  # rng.choice(len(mix), p=mix)
            return bisect.bisect_right(cdf_list, rng.random())

        def place(t: int) -> bool:
            nonlocal used
            c, m, g, s, cores = dem[t]
            ok = (fc >= c) & (fm >= m)
            if g:
                ok &= fg >= g
            if s == 2:
                cand = (ok[0::2] & ok[1::2]).nonzero()[0]
                n_cand = len(cand)
                if n_cand == 0:
                    return False
                if rng.random() < best_fit:
                    left = fc[2 * cand] + fc[2 * cand + 1]
                    p = int(cand[(left + rng.random(n_cand) * 0.5).argmin()])
                else:
                    p = int(cand[rng.integers(n_cand)])
                for k in (2 * p, 2 * p + 1):
                    fc[k] -= c
                    fm[k] -= m
                    fg[k] -= g
                n = 0
            else:
                cand = ok.nonzero()[0]
                n_cand = len(cand)
                if n_cand == 0:
                    return False
                if rng.random() < best_fit:
                    k = int(cand[(fc[cand] + rng.random(n_cand) * 0.5).argmin()])
                else:
                    k = int(cand[rng.integers(n_cand)])
                p, n = divmod(k, 2)
                fc[k] -= c
                fm[k] -= m
                fg[k] -= g
            live_t.append(t)
            live_p.append(p)
            live_n.append(n)
            used += cores
            return True

        def depart() -> None:
            nonlocal used
            i = int(rng.integers(len(live_t)))
            t, p, n = live_t[i], live_p[i], live_n[i]
            c, m, g, s, cores = dem[t]
            for k in ((2 * p, 2 * p + 1) if s == 2 else (2 * p + n,)):
                fc[k] += c
                fm[k] += m
                fg[k] += g
            used -= cores
            for lst in (live_t, live_p, live_n):
                lst[i] = lst[-1]
                lst.pop()

        # fill to the target, then churn at the target utilisation
        fails = 0
        while used < target and fails < 200:
            fails = 0 if place(draw_type()) else fails + 1
        n_churn = int(self.churn * max(1, len(live_t)))
        for _ in range(n_churn):
            depart()
            tries = 0
            while used < target and tries < 50:
                place(draw_type())
                tries += 1

    @staticmethod
    def _evacuable(bad, vp, vt, t_cpu, t_mem, t_gpu, t_span, free_cpu, free_mem, free_gpu) -> bool:
        """Whether the VMs on the ``bad`` PMs fit first-fit (largest first) into the other PMs."""
        fc, fm, fg = free_cpu.copy(), free_mem.copy(), free_gpu.copy()
        ok_pm = np.ones(len(fc), dtype=bool)
        ok_pm[bad] = False
        vms = np.flatnonzero(np.isin(vp, bad))
        for v in vms[np.argsort(-t_cpu[vt[vms]], kind="stable")]:
            t = vt[v]
            c, m, g = t_cpu[t] // t_span[t], t_mem[t] // t_span[t], t_gpu[t] // t_span[t]
            fit = (fc >= c) & (fm >= m) & (fg >= g) & ok_pm[:, None]
            if t_span[t] == 2:
                cand = np.flatnonzero(fit.all(axis=1))
                if not len(cand):
                    return False
                p = cand[0]
                fc[p] -= c
                fm[p] -= m
                fg[p] -= g
            else:
                cand = np.flatnonzero(fit.ravel())
                if not len(cand):
                    return False
                p, n = divmod(int(cand[0]), 2)
                fc[p, n] -= c
                fm[p, n] -= m
                fg[p, n] -= g
        return True

    def _groups(self, rng: np.random.Generator, vm_pm: np.ndarray, n_groups: int, key: np.ndarray) -> list:
        """``n_groups`` anti-affinity groups of ``group_size`` VMs with pairwise different ``key``
        (PM or rack), so that the snapshot satisfies them."""
        groups = []
        V = len(vm_pm)
        taken = np.zeros(V, dtype=bool)
        for _ in range(int(n_groups)):
            cand = rng.permutation(np.flatnonzero(~taken))
            members: list[int] = []
            seen: set[int] = set()
            for v in cand:
                k = int(key[v])
                if k in seen:
                    continue
                members.append(int(v))
                seen.add(k)
                if len(members) == self.group_size:
                    break
            if len(members) >= 2:
                taken[members] = True
                groups.append(np.asarray(sorted(members), dtype=np.int64))
        return groups
