"""Fast core of VM rescheduling: a placement under migration, with incremental bookkeeping.

It knows nothing of Gymnasium. Free capacity is kept per (PM, NUMA node); anti-affinity through
per-group member counts per PM and per rack; the fragment rate through running sums over the ACTIVE
PMs. Feasibility questions are answered per *resource class* (VMs with the same per-NUMA cores, MB,
GPUs and span), of which a cluster has about ten, so that masks and move evaluations over all VMs
are a few numpy operations.

Move semantics (one migration): VM ``v`` goes from its current ``(pm0, numa0)`` to ``(pm, numa)``.
The target must be an ACTIVE PM with enough free cores, MB and GPUs on the NUMA node (both nodes,
half each, for 2-NUMA VMs) *before* ``v`` leaves its source (live migration holds both copies), no
member of ``v``'s host groups on ``pm`` and none of its rack groups in ``pm``'s rack; ``v`` must be
movable. Moving a 1-NUMA VM to the other NUMA node of its own PM is allowed (VMR2L's flip); moving to
its current placement, or a 2-NUMA VM to its own PM, is not a move. Units: cores, MB, GPUs.
"""

from __future__ import annotations

import copy
import weakref

import numpy as np

from schedgym.envs.vmsched.types import VMInstance, VMSolution

#: per-instance constants of :class:`VMState`, computed once per instance object
_STATIC: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted unique values of a 1-D array (``np.unique``; sort-based, faster on small arrays)."""
    a = np.sort(a)
    if len(a) < 2:
        return a
    keep = np.empty(len(a), dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


class VMState:
    """A placement of the VMs of a :class:`VMInstance` and the moves made so far.

    Args:
        instance: the snapshot.
        mnl: migration number limit (None: ``instance.mnl``).
    """

    def __init__(self, instance: VMInstance, mnl: int | None = None):
        inst = instance
        self.instance = inst
        self.mnl = int(inst.mnl if mnl is None else mnl)
        self.g = int(inst.granularity)
        self.P, self.V = inst.n_pms, inst.n_vms
        self.active = inst.pm_active.copy()
        self.rack = inst.pm_rack
        self.span = inst.vm_span
        self.dbl = inst.vm_span == 2
        self.movable = inst.vm_movable
        self.c = inst.numa_cpu
        self.m = inst.numa_mem
        self.gp = inst.numa_gpu
        self.n_racks = int(self.rack.max()) + 1 if self.P else 0
        st = _STATIC.get(inst)
        if st is None:
            st = _STATIC[inst] = self._static(inst)
        self.__dict__.update(st)
        self.reset()

    def _static(self, inst: VMInstance) -> dict:
        """Per-instance constants (cached): resource classes and anti-affinity structures."""
        out: dict = {}
        key = np.stack([self.c, self.m, self.gp, self.span], axis=1)
        if self.V:
            ukeys, cls = np.unique(key, axis=0, return_inverse=True)
        else:
            ukeys, cls = np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64)
        out["cls"] = cls.reshape(-1).astype(np.int64)
        out["k_c"], out["k_m"], out["k_g"], out["k_span"] = (ukeys[:, i].astype(np.int64) for i in range(4))
        out["K"] = len(ukeys)
        # per-class (cores, MB, GPUs, 2-NUMA) thresholds as Python values (incremental fit updates)
        out["k_list"] = [(int(a), int(b), int(c), int(d) == 2) for a, b, c, d in ukeys.tolist()]
        out["_row_arrays"] = {}  # fit pattern of one PM -> its (K, 2) bool and (K,) count arrays
        # anti-affinity: group memberships per VM and the max number of targets a VM's groups can block
        hg = [np.asarray(g, dtype=np.int64) for g in inst.host_groups]
        rg = [np.asarray(g, dtype=np.int64) for g in inst.rack_groups]
        vm_hg: list[list[int]] = [[] for _ in range(self.V)]
        vm_rg: list[list[int]] = [[] for _ in range(self.V)]
        rack_size = int(np.bincount(self.rack).max()) if self.P else 0
        max_block = np.zeros(self.V, dtype=np.int64)
        for gi, g in enumerate(hg):
            for v in g:
                vm_hg[int(v)].append(gi)
                max_block[int(v)] += 2 * (len(g) - 1)
        for gi, g in enumerate(rg):
            for v in g:
                vm_rg[int(v)].append(gi)
                max_block[int(v)] += 2 * (len(g) - 1) * rack_size
        out.update(hg=hg, rg=rg, vm_hg=vm_hg, vm_rg=vm_rg, max_block=max_block, in_group=max_block > 0,
                   group_vms=np.flatnonzero(max_block > 0))
        # ordered pairs (v, w) of distinct members of a host / rack group: w blocks v's targets
        out["immovable"] = np.flatnonzero(~inst.vm_movable)
        out["cm"] = self.c % self.g  # cores per node mod g
        out["cs"] = self.c * self.span  # total cores
        out["has_dbl"] = bool((self.span == 2).any())
        out["hp_v"], out["hp_w"] = self._pairs(hg)
        out["rp_v"], out["rp_w"] = self._pairs(rg)
        return out

    @staticmethod
    def _pairs(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        vs, ws = [], []
        for g in groups:
            a, b = np.meshgrid(g, g, indexing="ij")
            off = a != b
            vs.append(a[off])
            ws.append(b[off])
        if not vs:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(vs).astype(np.int64), np.concatenate(ws).astype(np.int64)

    # ------------------------------------------------------------------------------------------
    def reset(self) -> None:
        inst = self.instance
        self.vm_pm = inst.init_pm.copy()
        self.vm_numa = inst.init_numa.copy()
        used_c, used_m, used_g = inst.usage(self.vm_pm, self.vm_numa)
        self.free_c = inst.pm_cpu - used_c
        self.free_m = inst.pm_mem - used_m
        self.free_g = inst.pm_gpu - used_g
        self.host_cnt = np.zeros((len(self.hg), self.P), dtype=np.int64)
        for gi, g in enumerate(self.hg):
            np.add.at(self.host_cnt[gi], self.vm_pm[g], 1)
        n_racks = int(self.rack.max()) + 1 if self.P else 0
        self.rack_cnt = np.zeros((len(self.rg), n_racks), dtype=np.int64)
        for gi, g in enumerate(self.rg):
            np.add.at(self.rack_cnt[gi], self.rack[self.vm_pm[g]], 1)
        act = self.free_c[self.active]
        self.free_sum = int(act.sum())
        self.frag_sum = int((act % self.g).sum())
        self.pending = ~self.active[self.vm_pm] & self.movable  # VMs still to evacuate
        self.n_pending = int(self.pending.sum())
        self.moves: list[tuple[int, int, int]] = []
        self._full_fit()
        #: (V,) int64 flat (PM, NUMA) index ``2 * pm + numa`` of every VM's placement (numa 0 for 2-NUMA VMs)
        self.slot = self.vm_pm * 2 + np.where(self.span == 2, 0, self.vm_numa)
        self.own_idx = self.cls * (2 * self.P) + self.slot
        self._aa = None
        self._src = None
        #: (k,) int64 VMs whose source delta changed in the last move (on its source or target PM)
        self.last_affected = np.zeros(0, dtype=np.int64)

    def clone(self) -> VMState:
        """An independent copy (for look-ahead search)."""
        new = copy.copy(self)
        for name in ("vm_pm", "vm_numa", "free_c", "free_m", "free_g", "host_cnt", "rack_cnt", "pending"):
            setattr(new, name, getattr(self, name).copy())
        new.moves = list(self.moves)
        for name in ("fit", "fit_pm", "fit_cls", "fit_rack", "own_idx", "slot"):
            setattr(new, name, getattr(self, name).copy())
        new.fit_rows = list(self.fit_rows)  # rows are replaced, never mutated
        if self._src is not None:  # updated in place by move()
            new._src = (self._src[0].copy(), self._src[1].copy())
        return new

    # ------------------------------------------------------------------------------------------
    # objective
    # ------------------------------------------------------------------------------------------
    @property
    def migrations_left(self) -> int:
        return self.mnl - len(self.moves)

    def fragment_rate(self) -> float:
        """Current fragment rate (VMR2L): fragment cores / free cores over the ACTIVE PMs."""
        return self.frag_sum / self.free_sum if self.free_sum > 0 else 0.0

    def numa_frag(self) -> np.ndarray:
        """(P, 2) fragment cores (``free mod g``) of every NUMA node (0 on non-ACTIVE PMs)."""
        return np.where(self.active[:, None], self.free_c % self.g, 0)

    # ------------------------------------------------------------------------------------------
    # feasibility
    # ------------------------------------------------------------------------------------------
    def _fit_rows(self, fc: np.ndarray, fm: np.ndarray, fg: np.ndarray, act: np.ndarray) -> np.ndarray:
        """(K, n, 2) bool fit of every class on the NUMA nodes with free (n, 2) ``fc``/``fm``/``fg``."""
        fit = ((fc[None] >= self.k_c[:, None, None]) & (fm[None] >= self.k_m[:, None, None])
               & (fg[None] >= self.k_g[:, None, None]) & act[None, :, None])
        dbl = self.k_span == 2
        if dbl.any():
            both = fit[dbl].all(axis=2)
            fit[dbl, :, 0] = both
            fit[dbl, :, 1] = False
        return fit

    def _full_fit(self) -> None:
        self.fit = self._fit_rows(self.free_c, self.free_m, self.free_g, self.active)
        #: per PM, the fit of every class as a list of (numa0, numa1) bool pairs (change detection);
        #: None until the PM's fit is first updated (then read from ``fit``)
        self.fit_rows: list = [None] * self.P
        self.fit_pm = self.fit.sum(axis=2).astype(np.int64)  # (K, P)
        self.fit_cls = self.fit_pm.sum(axis=1)  # (K,)
        self.fit_rack = np.zeros((self.K, self.n_racks), dtype=np.int64)
        for k in range(self.K):
            self.fit_rack[k] = np.bincount(self.rack, weights=self.fit_pm[k], minlength=self.n_racks)

    def _update_fit(self, p: int) -> None:
        """Refresh the fit tables of PM ``p`` after its free capacity changed (same result as
        :meth:`_fit_rows` on that PM; a plain loop over the few classes beats numpy calls here)."""
        if self.active[p]:
            c0, c1 = self.free_c[p].tolist()
            m0, m1 = self.free_m[p].tolist()
            g0, g1 = self.free_g[p].tolist()
            rows = []
            for kc, km, kg, dbl in self.k_list:
                a = c0 >= kc and m0 >= km and g0 >= kg
                b = c1 >= kc and m1 >= km and g1 >= kg
                rows.append((a and b, False) if dbl else (a, b))
        else:
            rows = [(False, False)] * self.K
        old = self.fit_rows[p]
        if old is None:
            old = list(map(tuple, self.fit[:, p, :].tolist()))
        if rows == old:
            self.fit_rows[p] = old
            return
        self.fit_rows[p] = rows
        key = tuple(rows)
        arrs = self._row_arrays.get(key)
        if arrs is None:  # few distinct patterns per instance: cache their arrays
            arrs = self._row_arrays[key] = (np.array(rows, dtype=bool).reshape(self.K, 2),
                                            np.array([a + b for a, b in rows], dtype=np.int64))
        new, new_pm = arrs
        self.fit[:, p, :] = new
        diff = new_pm - self.fit_pm[:, p]
        if diff.any():
            self.fit_cls += diff
            self.fit_rack[:, self.rack[p]] += diff
            self.fit_pm[:, p] = new_pm

    def class_fit(self) -> np.ndarray:
        """(K, P, 2) bool: resource class k fits on (PM, NUMA) now; for 2-NUMA classes only the
        ``numa = 0`` entry is set (it stands for the whole PM). Kept up to date by :meth:`move`;
        read-only."""
        return self.fit

    def blocked_pms(self, v: int) -> np.ndarray:
        """(P,) bool: PMs that ``v``'s anti-affinity groups forbid (other members there)."""
        blocked = np.zeros(self.P, dtype=bool)
        own = int(self.vm_pm[v])
        for gi in self.vm_hg[v]:
            cnt = self.host_cnt[gi].copy()
            cnt[own] -= 1
            blocked |= cnt > 0
        if self.vm_rg[v]:
            own_rack = int(self.rack[own])
            for gi in self.vm_rg[v]:
                cnt = self.rack_cnt[gi].copy()
                cnt[own_rack] -= 1
                blocked |= (cnt > 0)[self.rack]
        return blocked

    def target_mask(self, v: int) -> np.ndarray:
        """(P, 2) bool: the (PM, NUMA) targets ``v`` may move to now (empty if ``v`` is not movable)."""
        if not self.movable[v]:
            return np.zeros((self.P, 2), dtype=bool)
        mask = self.class_fit()[self.cls[v]].copy()
        p0 = int(self.vm_pm[v])
        if self.span[v] == 2:
            mask[p0, :] = False
        else:
            mask[p0, int(self.vm_numa[v])] = False
        if self.in_group[v]:
            mask &= ~self.blocked_pms(v)[:, None]
        return mask

    def can_move(self, v: int, p: int, n: int) -> bool:
        """Whether moving ``v`` to ``(p, n)`` is a feasible migration now (ignores the MNL)."""
        if not (0 <= v < self.V and 0 <= p < self.P and n in (0, 1)):
            return False
        if self.span[v] == 2 and n != 0:
            return False
        return bool(self.target_mask(v)[p, n])

    def _blocking(self) -> tuple[np.ndarray, ...]:
        """(v, rack) pairs and (v, pm) pairs (PMs outside the blocked racks) that anti-affinity
        forbids, and their flat indices into ``fit_rack`` and ``fit_pm``; recomputed only after a
        group member moved."""
        if self._aa is None:
            R = self.n_racks
            rkey = _unique(self.rp_v * R + self.rack[self.vm_pm[self.rp_w]])
            rv, rr = np.divmod(rkey, R)
            hkey = _unique(self.hp_v * self.P + self.vm_pm[self.hp_w])
            hv, hp = np.divmod(hkey, self.P)
            if len(rkey) and len(hkey):
                k2 = hv * R + self.rack[hp]
                pos = np.minimum(np.searchsorted(rkey, k2), len(rkey) - 1)
                keep = rkey[pos] != k2
                hv, hp = hv[keep], hp[keep]
            # flat indices into fit_rack (K, R) and fit_pm (K, P) of each blocked pair
            self._aa = (rv, rr, hv, hp, self.cls[rv] * R + rr, self.cls[hv] * self.P + hp)
        return self._aa

    def n_targets(self) -> np.ndarray:
        """(V,) int64: number of feasible targets of every VM (exact; 0 for non-movable VMs).

        A VM's own PM and rack are never blocked by its groups (the placement satisfies them), so the
        count is: fitting targets of its class - its own placement - fitting targets on blocked
        racks - fitting targets on blocked PMs outside those racks."""
        n = self.fit_cls[self.cls]
        n -= self.fit.ravel()[self.own_idx]
        rv, _, hv, _, ridx, hidx = self._blocking()
        if len(rv):
            np.subtract.at(n, rv, self.fit_rack.ravel()[ridx])
        if len(hv):
            np.subtract.at(n, hv, self.fit_pm.ravel()[hidx])
        n[self.immovable] = 0
        return n

    def vm_mask(self) -> np.ndarray:
        """(V,) bool: VMs that may be chosen for the next migration (movable, with a feasible
        target, migrations left; when the evacuations still pending use up the migrations left,
        only pending VMs)."""
        left = self.migrations_left
        if left <= 0:
            return np.zeros(self.V, dtype=bool)
        ok = self.n_targets() > 0
        n_pending = self.n_pending
        if n_pending and n_pending >= left:
            ok &= self.pending
        return ok

    def stop_allowed(self, vm_mask: np.ndarray | None = None) -> bool:
        """STOP is allowed unless a pending evacuation can still be made."""
        if not self.n_pending or self.migrations_left <= 0:
            return True
        vm_mask = self.vm_mask() if vm_mask is None else vm_mask
        return not bool((vm_mask & self.pending).any())

    # ------------------------------------------------------------------------------------------
    # moves
    # ------------------------------------------------------------------------------------------
    def _numas(self, v: int, p: int, n: int) -> tuple[int, ...]:
        return (0, 1) if self.span[v] == 2 else (n,)

    def delta_frag(self, v: int, p: int, n: int) -> tuple[int, int]:
        """(change of fragment cores, change of free cores) over the ACTIVE PMs if ``v`` moved to
        ``(p, n)`` (no feasibility check)."""
        c = int(self.c[v])
        g = self.g
        dF = dS = 0
        p0 = int(self.vm_pm[v])
        if self.active[p0]:
            for k in self._numas(v, p0, int(self.vm_numa[v])):
                f = int(self.free_c[p0, k])
                dF += (f + c) % g - f % g
                dS += c
        if self.active[p]:
            for k in self._numas(v, p, n):
                f = int(self.free_c[p, k])
                dF += (f - c) % g - f % g
                dS -= c
        return dF, dS

    def delta_fr(self, v: int, p: int, n: int) -> float:
        """Change of the fragment rate if ``v`` moved to ``(p, n)`` (negative is better)."""
        dF, dS = self.delta_frag(v, p, n)
        new = (self.frag_sum + dF) / (self.free_sum + dS) if self.free_sum + dS > 0 else 0.0
        return new - self.fragment_rate()

    def move(self, v: int, p: int, n: int) -> None:
        """Migrate ``v`` to ``(p, n)``. The caller checks feasibility (:meth:`can_move`)."""
        v, p, n = int(v), int(p), int(n)
        if self.span[v] == 2:
            n = 0
        dF, dS = self.delta_frag(v, p, n)
        p0, n0 = int(self.vm_pm[v]), int(self.vm_numa[v])
        c, m, gp = int(self.c[v]), int(self.m[v]), int(self.gp[v])
        for k in self._numas(v, p0, n0):
            self.free_c[p0, k] += c
            self.free_m[p0, k] += m
            self.free_g[p0, k] += gp
        for k in self._numas(v, p, n):
            self.free_c[p, k] -= c
            self.free_m[p, k] -= m
            self.free_g[p, k] -= gp
        for gi in self.vm_hg[v]:
            self.host_cnt[gi, p0] -= 1
            self.host_cnt[gi, p] += 1
        for gi in self.vm_rg[v]:
            self.rack_cnt[gi, self.rack[p0]] -= 1
            self.rack_cnt[gi, self.rack[p]] += 1
        self.vm_pm[v] = p
        self.vm_numa[v] = n
        self.frag_sum += dF
        self.free_sum += dS
        if self.pending[v] and self.active[p]:
            self.pending[v] = False
            self.n_pending -= 1
        self.moves.append((v, p, n))
        self.own_idx[v] = self.cls[v] * (2 * self.P) + p * 2 + n
        self._update_fit(p0)
        if p != p0:
            self._update_fit(p)
        if self.in_group[v]:
            self._aa = None
        self.slot[v] = 2 * p + n
        # source deltas change only for the VMs on the source and target PMs
        vpm = self.vm_pm
        aff = np.flatnonzero(vpm == p0) if p == p0 else np.flatnonzero((vpm == p0) | (vpm == p))
        self.last_affected = aff
        if self._src is not None:
            self._src[0][aff] = self._source_frag_of(aff, bool(self.active[p0]) and bool(self.active[p]))
            if not (self.active[p0] and self.active[p]):
                self._src[1][aff] = self.cs[aff] * self.active[vpm[aff]]

    def placement_of(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the (V,) PM and (V,) NUMA node of every VM."""
        return self.vm_pm.copy(), self.vm_numa.copy()

    # ------------------------------------------------------------------------------------------
    # move evaluation over all VMs (joint greedy, features)
    # ------------------------------------------------------------------------------------------
    def source_delta(self) -> tuple[np.ndarray, np.ndarray]:
        """(V,) change of fragment cores and (V,) change of free cores over the ACTIVE PMs when each
        VM leaves its source (before it lands anywhere). Cached until the next move; read-only."""
        if self._src is None:
            act = self.active[self.vm_pm]
            self._src = (self._source_frag_of(None, False), self.cs * act)
        return self._src

    def _source_frag_of(self, vms: np.ndarray | None, all_active: bool) -> np.ndarray:
        """First half of :meth:`source_delta` for the VMs ``vms`` (None: all): the change of
        fragment cores when each leaves its source; ``all_active`` says their PMs are all ACTIVE.

        With ``r = free mod g`` and ``cm = cores per node mod g``, ``(free + c) mod g - free mod g``
        equals ``cm - g * (r + cm >= g)`` (floor modulo), one term per NUMA node the VM uses."""
        g = self.g
        r = self.free_c.ravel() % g
        if vms is None:
            slot, cm, dbl, vpm = self.slot, self.cm, self.dbl, self.vm_pm
        else:
            slot, cm, dbl, vpm = self.slot[vms], self.cm[vms], self.dbl[vms], None  # vpm only if needed
        d = cm - g * ((r[slot] + cm) >= g)
        if self.has_dbl and dbl.any():
            d += (cm - g * ((r[slot | 1] + cm) >= g)) * dbl  # slot | 1: NUMA 1 of the PM
        if not all_active:
            d *= self.active[self.vm_pm[vms] if vpm is None else vpm]
        return d

    def class_dest_delta(self) -> np.ndarray:
        """(K, P, 2) change of fragment cores when a VM of class k lands on (PM, NUMA); +inf where
        the class does not fit (2-NUMA classes: ``numa = 0`` entry only)."""
        g = self.g
        fit = self.class_fit()
        f = self.free_c[None]
        c = self.k_c[:, None, None]
        d = (f - c) % g - f % g
        dbl = self.k_span == 2
        if dbl.any():
            tot = d[dbl].sum(axis=2)
            d[dbl, :, 0] = tot
        d = np.where(self.active[None, :, None], d, 0)
        return np.where(fit, d.astype(np.float64), np.inf)

    def best_moves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The best target of every VM by fragment-rate change.

        Returns:
            target: (V,) int64 flat target ``pm * 2 + numa`` (-1 where none),
            dfr: (V,) float64 change of the fragment rate of that move (+inf where none),
            mask: (V,) bool VMs that may be moved next (:meth:`vm_mask`).
        """
        V = self.V
        dFs, dSs = self.source_delta()
        dest = self.class_dest_delta().reshape(self.K, 2 * self.P)  # (K, targets); K = 0 without VMs
        order = np.argsort(dest, axis=1, kind="stable")[:, :2]  # best two targets per class
        first = order[self.cls, 0]
        second = order[self.cls, 1] if dest.shape[1] > 1 else first
        own = self.vm_pm * 2 + np.where(self.span == 2, 0, self.vm_numa)
        target = np.where(first == own, second, first)
        dF_dest = dest[self.cls, target]
        for v in self.group_vms:  # exact best target under anti-affinity
            tm = self.target_mask(int(v)).ravel()
            if tm.any():
                dv = np.where(tm, dest[self.cls[v]], np.inf)
                t = int(np.argmin(dv))
                target[v], dF_dest[v] = t, dv[t]
            else:
                dF_dest[v] = np.inf
        mask = self.vm_mask()
        ok = mask & np.isfinite(dF_dest)
        dS_dest = np.where(self.active[target // 2], -self.c * self.span, 0)
        newS = self.free_sum + dSs + dS_dest
        newF = self.frag_sum + dFs + np.where(ok, dF_dest, 0)
        fr = self.fragment_rate()
        with np.errstate(invalid="ignore", divide="ignore"):
            dfr = np.where(newS > 0, newF / np.maximum(newS, 1), 0.0) - fr
        dfr = np.where(ok, dfr, np.inf)
        target = np.where(ok, target, -1)
        return target.astype(np.int64), dfr, mask[:V]

    # ------------------------------------------------------------------------------------------
    def solution(self, **kwargs) -> VMSolution:
        """The migration plan so far."""
        return VMSolution(moves=np.asarray(self.moves, dtype=np.int64).reshape(-1, 3), mnl=self.mnl, **kwargs)
