"""VM rescheduling instances: VMR2L's JSON snapshot format (read and write), generated names, named sets.

VMR2L snapshot format (``cluster_list`` / ``vm_type_list`` / ``general_requirement``)
--------------------------------------------------------------------------------------
::

    {"cluster_list": [{"cluster_name": "c0",
        "host_info": [{"node_id": "pm_1", "status": "ACTIVE" | "DISABLED" | "OUTAGE",
                       "node_cpu": 88, "node_mem_mb": 368776, "rack_id": "rack_0",
                       "numa": [{"node": 0, "total_cpu": 44, "free_cpu": 6,
                                 "memory_huge_total_mb": 184388, "memory_huge_free_mb": 28740}, {"node": 1, ...}]}],
        "vm_instance": [{"instance_id": "vm_1", "instance_type": "ecs.g1.large", "host_id": "pm_1",
                         "numa": [{"node": 0, "cpu": 2, "mem_mb": 8192}],   # 2 entries: split over both
                         "allow_migration": true}],
        "vm_type_info": [...],
        "other_requirement": {"deployment_set": [{"granularity": "host" | "rack", "data": ["vm_1", ...]}]}}],
     "vm_type_list": [{"vm_type": "ecs.g1.large", "request_cpu": 2, "request_mem_mb": 8192, "numa": 1}],
     "general_requirement": {"maximum_migration": 50}}

Extensions (ignored by VMR2L, written only for GPU clusters): ``total_gpu`` / ``free_gpu`` per host
NUMA entry and ``gpu`` per VM NUMA entry. The VM list is the truth for the usage of each NUMA node
(as in VMR2L's parser); ``free_cpu`` / ``memory_huge_free_mb`` are informational and a mismatch is
counted in ``instance.meta["free_mismatches"]``. Unlike VMR2L's parser, non-migratable VMs
(``allow_migration: false``), DISABLED/OUTAGE hosts (their VMs must be evacuated) and host-level
deployment sets are supported. Deployment-set members that are not in the snapshot are skipped
(counted in ``meta["unknown_set_members"]``).

Values as VMR2L's published snapshots write them: counts and sizes are whole numbers, as JSON ints
or floats (``"memory_huge_total_mb": 184388.0``); ids may be strings or ints (``"rack_id": 2``);
``allow_migration`` is ``true``/``false`` or ``1``/``0``; ``general_requirement.maximum_migration``
(a whole number >= 0; 50 when absent) is the instance's migration limit, fields VMR2L adds there
(``maximum_migration_each_batch``, ``maximum_time``, ...) are ignored. Anything else (a flag of
``2`` or ``"yes"``, a limit of ``"5"`` or ``-3``, ``NaN`` / ``Infinity``, which Python's json
module accepts) is an :class:`InstanceFormatError` naming the file and the JSON path.

Generated names: ``gen_<s|m|l>_<low|medium|high>[_gpu][_evac]_s<seed>`` draw a snapshot with
:class:`~schedgym.envs.vmsched.generator.VMClusterGenerator` (same name, same snapshot).
Bundled names: the JSON files shipped in ``envs/data/vmsched/``.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from schedgym.envs.core.errors import InstanceFormatError, UnknownNameError
from schedgym.envs.core.sources import expand_names
from schedgym.envs.vmsched.generator import SIZES, VMClusterGenerator
from schedgym.envs.vmsched.types import ACTIVE, DEFAULT_MNL, STATUS_NAMES, VMInstance, check_mnl

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "vmsched"
GEN_RE = re.compile(r"^gen_(s|m|l)_(low|medium|high)(_gpu)?(_evac)?_s(\d+)$")
#: the largest magnitude a numeric field may have (cores, MB, GPUs, limits): 2**40 MB is an exabyte,
#: and sums of such values stay exact in the float64 arithmetic of the fragment-rate code
MAX_VALUE = 2**40


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
class _Reader:
    """Field access with JSON paths in every error message."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, problem: str, fix: str | None = None):
        raise InstanceFormatError(self.source, f"at {path}: {problem}", fix=fix)

    def get(self, obj: Any, key: str, path: str, kind: type | tuple = object, default: Any = ...):
        if not isinstance(obj, dict):
            self.fail(path, f"expected an object, found {type(obj).__name__}")
        if key not in obj:
            if default is not ...:
                return default
            self.fail(f"{path}.{key}", "missing field", f"add \"{key}\" to {path}")
        val = obj[key]
        if kind is not object and not isinstance(val, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.fail(f"{path}.{key}", f"expected {names}, found {type(val).__name__} {val!r}")
        return val

    def real(self, val: Any, path: str) -> float:
        """``val`` as a finite number (JSON int or float; not a bool, string, NaN or Infinity)."""
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            self.fail(path, f"expected a number, found {type(val).__name__} {val!r}")
        if not math.isfinite(val):
            self.fail(path, f"expected a finite number, found {val!r}", "NaN and Infinity are not valid values")
        if abs(val) > MAX_VALUE:
            self.fail(path, f"value {val!r} is out of range", f"values must be at most {MAX_VALUE} in magnitude")
        return float(val)

    def num(self, obj: Any, key: str, path: str, default: Any = ..., minimum: int = 0) -> int:
        """A whole number >= ``minimum`` (``42`` or ``42.0``; VMR2L's files write MB as floats)."""
        val = self.get(obj, key, path, default=default)
        self.real(val, f"{path}.{key}")
        if float(val) != int(val):
            self.fail(f"{path}.{key}", f"expected a whole number, found {val!r}")
        if int(val) < minimum:
            self.fail(f"{path}.{key}", f"value {val!r} is below {minimum}", f"use a whole number >= {minimum}")
        return int(val)

    def opt_real(self, obj: dict, key: str, path: str) -> float | None:
        """An optional finite number (informational fields such as ``free_cpu``), None if absent."""
        val = obj.get(key)
        return None if val is None else self.real(val, f"{path}.{key}")

    def flag(self, obj: Any, key: str, path: str, default: bool) -> bool:
        """A yes/no field: ``true``/``false`` or, as VMR2L's published snapshots write them, ``1``/``0``."""
        val = self.get(obj, key, path, default=default)
        if isinstance(val, bool):
            return val
        if isinstance(val, int) and val in (0, 1):
            return bool(val)
        self.fail(f"{path}.{key}", f"expected true/false or 1/0, found {type(val).__name__} {val!r}",
                  "write true or 1 for yes, false or 0 for no")


def parse_snapshot(data: Any, name: str = "snapshot", source: str = "<object>", mnl: int | None = None) -> VMInstance:
    """Build a :class:`VMInstance` from a parsed VMR2L snapshot (see the module docstring).

    Args:
        mnl: migration number limit (a whole number >= 0); None takes
            ``general_requirement.maximum_migration`` when present, else 50 (VMR2L's default).

    Raises:
        InstanceFormatError: naming the source, the JSON path and the problem.
    """
    r = _Reader(source)
    clusters = r.get(data, "cluster_list", "$", list)
    if not clusters:
        r.fail("$.cluster_list", "is empty", "a snapshot needs at least one cluster")
    pm_index: dict[str, int] = {}
    pm_cpu, pm_mem, pm_gpu, pm_status, pm_rack = [], [], [], [], []
    rack_index: dict[str, int] = {}
    pm_paths: list[str] = []
    free_given: list[tuple[int, int, int | None, int | None]] = []
    vm_index: dict[str, int] = {}
    vm_rows: list[tuple] = []
    type_index: dict[str, int] = {}
    host_sets: list[tuple[str, list]] = []
    rack_sets: list[tuple[str, list]] = []
    for ci, cl in enumerate(clusters):
        cpath = f"$.cluster_list[{ci}]"
        cname = str(r.get(cl, "cluster_name", cpath, default=f"cluster_{ci}"))
        hosts = r.get(cl, "host_info", cpath, list)
        for hi, h in enumerate(hosts):
            hpath = f"{cpath}.host_info[{hi}]"
            pid = str(r.get(h, "node_id", hpath, (str, int)))
            if pid in pm_index:
                r.fail(f"{hpath}.node_id", f"duplicate host id {pid!r}", "host ids must be unique across clusters")
            status = r.get(h, "status", hpath, str, default="ACTIVE")
            if status not in STATUS_NAMES:
                r.fail(f"{hpath}.status", f"unknown status {status!r}", f"use one of {', '.join(STATUS_NAMES)}")
            numas = r.get(h, "numa", hpath, list)
            if len(numas) != 2:
                r.fail(f"{hpath}.numa", f"{len(numas)} NUMA entries", "every host needs exactly 2 NUMA nodes (0 and 1)")
            cpu, mem, gpu = [0, 0], [0, 0], [0, 0]
            seen = set()
            for ni, nu in enumerate(numas):
                npath = f"{hpath}.numa[{ni}]"
                node = r.num(nu, "node", npath)
                if node not in (0, 1) or node in seen:
                    r.fail(f"{npath}.node", f"unknown or repeated NUMA index {node}", "NUMA nodes are 0 and 1")
                seen.add(node)
                cpu[node] = r.num(nu, "total_cpu", npath, minimum=0)
                mem[node] = r.num(nu, "memory_huge_total_mb", npath, minimum=0)
                gpu[node] = r.num(nu, "total_gpu", npath, default=0)
                free_given.append((len(pm_cpu), node, r.opt_real(nu, "free_cpu", npath),
                                   r.opt_real(nu, "memory_huge_free_mb", npath)))
            rid = str(r.get(h, "rack_id", hpath, (str, int), default=f"{cname}/{pid}"))
            pm_index[pid] = len(pm_cpu)
            pm_paths.append(hpath)
            pm_cpu.append(cpu)
            pm_mem.append(mem)
            pm_gpu.append(gpu)
            pm_status.append(STATUS_NAMES.index(status))
            pm_rack.append(rack_index.setdefault(rid, len(rack_index)))
        for vi, vm in enumerate(r.get(cl, "vm_instance", cpath, list, default=[])):
            vpath = f"{cpath}.vm_instance[{vi}]"
            vid = str(r.get(vm, "instance_id", vpath, (str, int)))
            if vid in vm_index:
                r.fail(f"{vpath}.instance_id", f"duplicate VM id {vid!r}", "VM ids must be unique")
            host = str(r.get(vm, "host_id", vpath, (str, int)))
            if host not in pm_index:
                r.fail(f"{vpath}.host_id", f"host {host!r} is not in any cluster's host_info",
                       "list the host first or fix the id")
            vtype = str(r.get(vm, "instance_type", vpath, (str, int), default="unknown"))
            allow = r.flag(vm, "allow_migration", vpath, default=True)
            numas = r.get(vm, "numa", vpath, list)
            if len(numas) not in (1, 2):
                r.fail(f"{vpath}.numa", f"{len(numas)} NUMA entries", "a VM uses 1 NUMA node or both (2 entries)")
            parts = []
            for ni, nu in enumerate(numas):
                npath = f"{vpath}.numa[{ni}]"
                node = r.num(nu, "node", npath)
                if node not in (0, 1):
                    r.fail(f"{npath}.node", f"unknown NUMA index {node}", "NUMA nodes are 0 and 1")
                parts.append((node, r.num(nu, "cpu", npath), r.num(nu, "mem_mb", npath), r.num(nu, "gpu", npath, default=0)))
            if len(parts) == 2:
                if parts[0][0] == parts[1][0]:
                    r.fail(f"{vpath}.numa", f"both entries use NUMA node {parts[0][0]}",
                           "a 2-NUMA VM has one entry for node 0 and one for node 1")
                if parts[0][1:] != parts[1][1:]:
                    r.fail(f"{vpath}.numa", f"unequal halves {parts[0][1:]} and {parts[1][1:]}",
                           "a 2-NUMA VM takes the same cpu/mem_mb/gpu on both nodes")
            c = sum(p[1] for p in parts)
            if c <= 0:
                r.fail(f"{vpath}.numa", "the VM has no CPU", "cpu must be positive")
            vm_index[vid] = len(vm_rows)
            t = type_index.setdefault(vtype, len(type_index))
            vm_rows.append((vid, pm_index[host], parts[0][0] if len(parts) == 1 else 0, len(parts), c,
                            sum(p[2] for p in parts), sum(p[3] for p in parts), bool(allow), t, vpath))
        other = r.get(cl, "other_requirement", cpath, dict, default={})
        for si, ds in enumerate(r.get(other, "deployment_set", f"{cpath}.other_requirement", list, default=[])):
            spath = f"{cpath}.other_requirement.deployment_set[{si}]"
            gran = r.get(ds, "granularity", spath, str)
            if gran not in ("host", "rack"):
                r.fail(f"{spath}.granularity", f"unknown granularity {gran!r}", "use \"host\" or \"rack\"")
            members = r.get(ds, "data", spath, list)
            (host_sets if gran == "host" else rack_sets).append((spath, [str(m) for m in members]))
    P, V = len(pm_cpu), len(vm_rows)
    if P == 0:
        r.fail("$.cluster_list", "no hosts", "add host_info entries")
    pm_cpu_a = np.asarray(pm_cpu, dtype=np.int64).reshape(P, 2)
    pm_mem_a = np.asarray(pm_mem, dtype=np.int64).reshape(P, 2)
    pm_gpu_a = np.asarray(pm_gpu, dtype=np.int64).reshape(P, 2)
    col = list(zip(*vm_rows)) if V else [[] for _ in range(10)]
    init_pm = np.asarray(col[1], dtype=np.int64)
    init_numa = np.asarray(col[2], dtype=np.int64)
    span = np.asarray(col[3], dtype=np.int64)
    vcpu, vmem, vgpu = (np.asarray(col[k], dtype=np.int64) for k in (4, 5, 6))
    # a VM larger than any PM
    for per, cap, what in ((vcpu, pm_cpu_a, "cores"), (vmem, pm_mem_a, "MB"), (vgpu, pm_gpu_a, "GPUs")):
        need = per // np.maximum(span, 1)
        best_single = cap.max(initial=0)
        best_double = cap.min(axis=1).max(initial=0)
        too_big = np.where(span == 1, need > best_single, need > best_double)
        if too_big.any():
            v = int(np.flatnonzero(too_big)[0])
            r.fail(col[9][v], f"VM {col[0][v]!r} needs {int(need[v])} {what} per NUMA node "
                   f"(span {int(span[v])}), more than any host offers",
                   "fix the VM's numa entries or the hosts' capacities")
    # overcommitted hosts in the snapshot
    used = np.zeros((3, P, 2), dtype=np.int64)
    for k, per in enumerate((vcpu, vmem, vgpu)):
        half = per // np.maximum(span, 1)
        single = span == 1
        np.add.at(used[k], (init_pm[single], init_numa[single]), half[single])
        for node in (0, 1):
            np.add.at(used[k], (init_pm[~single], np.full(int((~single).sum()), node)), half[~single])
    for k, (cap, what) in enumerate(((pm_cpu_a, "cores"), (pm_mem_a, "MB"), (pm_gpu_a, "GPUs"))):
        over = used[k] > cap
        if over.any():
            p, n = (int(x) for x in np.argwhere(over)[0])
            on = [col[0][v] for v in range(V) if init_pm[v] == p and (span[v] == 2 or init_numa[v] == n)]
            r.fail(f"{pm_paths[p]}.numa[node={n}]", f"host {list(pm_index)[p]!r} is overcommitted: its VMs use "
                   f"{int(used[k][p, n])} {what} of {int(cap[p, n])} ({len(on)} VMs: {', '.join(on[:8])}"
                   f"{', ...' if len(on) > 8 else ''})", "a snapshot must be a feasible placement")
    mismatches = 0
    for p, n, fc, fm in free_given:
        if fc is not None and fc != pm_cpu_a[p, n] - used[0][p, n]:
            mismatches += 1
        elif fm is not None and fm != pm_mem_a[p, n] - used[1][p, n]:
            mismatches += 1
    # deployment sets
    unknown = 0
    groups: dict[str, list[np.ndarray]] = {"host": [], "rack": []}
    rack_of = np.asarray(pm_rack, dtype=np.int64)
    for gran, sets in (("host", host_sets), ("rack", rack_sets)):
        for spath, members in sets:
            idx = sorted({vm_index[m] for m in members if m in vm_index})
            unknown += sum(1 for m in members if m not in vm_index)
            if len(idx) < 2:
                continue
            arr = np.asarray(idx, dtype=np.int64)
            key = init_pm[arr] if gran == "host" else rack_of[init_pm[arr]]
            if len(np.unique(key)) < len(key):
                vals, counts = np.unique(key, return_counts=True)
                clash = [col[0][v] for v in arr if key[list(arr).index(v)] == vals[counts > 1][0]]
                r.fail(spath, f"the snapshot violates this {gran}-level deployment set: VMs {', '.join(clash)} "
                       f"share a {gran}", "a snapshot must satisfy its anti-affinity sets")
            groups[gran].append(arr)
    mnl = _snapshot_mnl(r, data) if mnl is None else check_mnl(mnl, "mnl")
    return VMInstance(
        name=name, pm_cpu=pm_cpu_a, pm_mem=pm_mem_a, pm_gpu=pm_gpu_a,
        pm_status=np.asarray(pm_status, dtype=np.int8), pm_rack=rack_of,
        vm_cpu=vcpu, vm_mem=vmem, vm_gpu=vgpu, vm_span=span,
        vm_movable=np.asarray(col[7], dtype=bool), vm_type=np.asarray(col[8], dtype=np.int64),
        init_pm=init_pm, init_numa=init_numa, host_groups=groups["host"], rack_groups=groups["rack"],
        mnl=int(mnl), type_names=tuple(type_index), pm_ids=tuple(pm_index), vm_ids=tuple(vm_index),
        rack_ids=tuple(rack_index), source=source,
        meta={"free_mismatches": mismatches, "unknown_set_members": unknown,
              "clusters": [str(c.get("cluster_name", i)) if isinstance(c, dict) else str(i)
                           for i, c in enumerate(clusters)]},
    )


def _snapshot_mnl(r: _Reader, data: dict) -> int:
    """``general_requirement.maximum_migration`` (a whole number >= 0), 50 (VMR2L's default) when
    the snapshot has no ``general_requirement`` or no ``maximum_migration`` in it."""
    req = r.get(data, "general_requirement", "$", dict, default={})
    return r.num(req, "maximum_migration", "$.general_requirement", default=DEFAULT_MNL, minimum=0)


def read_snapshot(path: str | Path, name: str | None = None, mnl: int | None = None) -> VMInstance:
    """Read a VMR2L JSON snapshot file (see :func:`parse_snapshot`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such snapshot file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InstanceFormatError(str(path), "not a UTF-8 text file",
                                  fix="a snapshot is one JSON object (VMR2L format)") from None
    except json.JSONDecodeError as exc:
        raise InstanceFormatError(str(path), f"not valid JSON ({exc.msg})", line=exc.lineno,
                                  fix="the snapshot must be one JSON object") from None
    return parse_snapshot(data, name=name or path.stem, source=str(path), mnl=mnl)


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def snapshot_dict(instance: VMInstance, pm: np.ndarray | None = None, numa: np.ndarray | None = None) -> dict:
    """The VMR2L JSON object of ``instance`` (or of another placement ``pm``/``numa`` of its VMs)."""
    inst = instance
    pm = inst.init_pm if pm is None else np.asarray(pm)
    numa = inst.init_numa if numa is None else np.asarray(numa)
    used, used_mem, used_gpu = inst.usage(pm, numa)
    gpus = inst.has_gpus
    pm_ids = inst.pm_ids or tuple(f"pm_{i}" for i in range(inst.n_pms))
    vm_ids = inst.vm_ids or tuple(f"vm_{i}" for i in range(inst.n_vms))
    rack_ids = inst.rack_ids or tuple(f"rack_{i}" for i in range(inst.n_racks))
    types = inst.type_names or ()
    hosts = []
    for p in range(inst.n_pms):
        nodes = []
        for n in (0, 1):
            d = {"node": n, "total_cpu": int(inst.pm_cpu[p, n]), "free_cpu": int(inst.pm_cpu[p, n] - used[p, n]),
                 "memory_huge_total_mb": int(inst.pm_mem[p, n]),
                 "memory_huge_free_mb": int(inst.pm_mem[p, n] - used_mem[p, n])}
            if gpus:
                d["total_gpu"] = int(inst.pm_gpu[p, n])
                d["free_gpu"] = int(inst.pm_gpu[p, n] - used_gpu[p, n])
            nodes.append(d)
        hosts.append({"node_id": pm_ids[p], "status": STATUS_NAMES[int(inst.pm_status[p])],
                      "node_cpu": int(inst.pm_cpu[p].sum()), "node_mem_mb": int(inst.pm_mem[p].sum()),
                      "numa": nodes, "rack_id": rack_ids[int(inst.pm_rack[p])]})
    vms = []
    for v in range(inst.n_vms):
        s = int(inst.vm_span[v])
        nodes = [int(numa[v])] if s == 1 else [0, 1]
        entries = []
        for n in nodes:
            e = {"node": n, "cpu": int(inst.vm_cpu[v] // s), "mem_mb": int(inst.vm_mem[v] // s)}
            if gpus:
                e["gpu"] = int(inst.vm_gpu[v] // s)
            entries.append(e)
        vms.append({"instance_id": vm_ids[v],
                    "instance_type": types[int(inst.vm_type[v])] if types else f"type_{int(inst.vm_type[v])}",
                    "host_id": pm_ids[int(pm[v])], "numa": entries, "allow_migration": bool(inst.vm_movable[v])})
    sets = [{"granularity": "host", "data": [vm_ids[v] for v in g]} for g in inst.host_groups]
    sets += [{"granularity": "rack", "data": [vm_ids[v] for v in g]} for g in inst.rack_groups]
    type_list = []
    for t, tname in enumerate(types):
        sel = np.flatnonzero(inst.vm_type == t)
        if len(sel):
            v = int(sel[0])
            type_list.append({"vm_type": tname, "request_cpu": int(inst.vm_cpu[v]),
                              "request_mem_mb": int(inst.vm_mem[v]), "numa": int(inst.vm_span[v]),
                              **({"request_gpu": int(inst.vm_gpu[v])} if gpus else {})})
    counts = {types[t] if types else f"type_{t}": int((inst.vm_type == t).sum()) for t in np.unique(inst.vm_type)}
    return {
        "cluster_list": [{"cluster_name": inst.name, "host_info": hosts, "vm_instance": vms,
                          "vm_type_info": [{"vm_type": k, "flavor_limit": 2 * c} for k, c in counts.items()],
                          "other_requirement": {"deployment_set": sets}}],
        "vm_type_list": type_list,
        "general_requirement": {"optimization_objective": 1, "maximum_migration": int(inst.mnl)},
    }


def write_snapshot(instance: VMInstance, path: str | Path) -> Path:
    """Write ``instance`` as a VMR2L JSON snapshot file; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(snapshot_dict(instance), separators=(",", ":")))
    return path


# ------------------------------------------------------------------------------------------------
# names and sets
# ------------------------------------------------------------------------------------------------
def generator_for(name: str) -> VMClusterGenerator | None:
    """The generator of a generated name (``gen_m_medium_s0``), or None for other names."""
    m = GEN_RE.match(name)
    if not m:
        return None
    size, util, gpu, evac, _ = m.groups()
    n = SIZES[size.upper()][0]
    return VMClusterGenerator(size=size.upper(), utilisation=util, gpu=bool(gpu),
                              n_disabled=1 if evac else 0, n_outage=n // 200 if evac else 0)


def generate(name: str) -> VMInstance:
    """The snapshot of a generated name (deterministic: seed from the name's ``_s<seed>``)."""
    gen = generator_for(name)
    if gen is None:
        raise UnknownNameError("generated VM instance", name, list(instance_sets()))
    seed = int(GEN_RE.match(name).group(5))
    inst = gen(np.random.default_rng(seed), name=name)
    return inst


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, Path]:
    if not DATA_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(DATA_DIR.glob("*.json"))}


def bundled_names() -> list[str]:
    """Names of the snapshot files shipped in ``envs/data/vmsched/``."""
    return list(_catalogue())


@lru_cache(maxsize=64)
def _load_named(name: str) -> VMInstance:
    if name in _catalogue():
        return read_snapshot(_catalogue()[name], name=name)
    return generate(name)


def load_instance(name_or_path: str | Path | VMInstance, mnl: int | None = None) -> VMInstance:
    """A bundled snapshot by name, a generated name (``gen_m_medium_s0``) or a JSON file path.

    Raises:
        UnknownNameError: not a bundled or generated name nor an existing file; lists close matches.
        InstanceFormatError: a malformed file (names the file, the JSON path and the problem).
    """
    if isinstance(name_or_path, VMInstance):
        inst = name_or_path
    else:
        key = str(name_or_path)
        if key in _catalogue() or GEN_RE.match(key):
            inst = _load_named(key)
        else:
            p = Path(key)
            if p.suffix or "/" in key or p.exists():
                if not p.is_file():
                    raise FileNotFoundError(f"{key}: no such snapshot file (and not a bundled or generated name)")
                inst = read_snapshot(p)
            else:
                raise UnknownNameError("VM instance", key, list(_catalogue()) + _example_generated())
    return inst if mnl is None or mnl == inst.mnl else inst.with_mnl(mnl)


def _example_generated() -> list[str]:
    return [f"gen_{s}_{u}_s0" for s in "sml" for u in ("low", "medium", "high")] + ["gen_s_medium_gpu_s0",
                                                                                 "gen_s_medium_evac_s0"]


@lru_cache(maxsize=1)
def instance_sets() -> dict[str, list[str]]:
    """Named sets: ``generated_<s|m|l>`` (medium utilisation, seeds 0-4; L: 0-2),
    ``generated_<s|m>_<low|high|gpu|evac>``, ``vm_bundled`` (the shipped files) and ``smoke``."""
    sets: dict[str, list[str]] = {}
    for size, n in (("s", 5), ("m", 5), ("l", 3)):
        sets[f"generated_{size}"] = [f"gen_{size}_medium_s{i}" for i in range(n)]
        if size != "l":
            for util in ("low", "high"):
                sets[f"generated_{size}_{util}"] = [f"gen_{size}_{util}_s{i}" for i in range(n)]
            sets[f"generated_{size}_gpu"] = [f"gen_{size}_medium_gpu_s{i}" for i in range(n)]
            sets[f"generated_{size}_evac"] = [f"gen_{size}_medium_evac_s{i}" for i in range(n)]
    sets["vm_bundled"] = bundled_names()
    sets["vm_smoke"] = ["gen_s_medium_s0", "gen_s_medium_evac_s0"]
    return sets


def resolve_instances(spec: str | list[str]) -> list[str]:
    """Expand set names, instance names and file paths into instance names."""
    cat = _catalogue()
    return expand_names(spec, instance_sets(), lambda n: n in cat or bool(GEN_RE.match(n)) or Path(n).is_file(),
                        "VM instance or set", list(cat))


__all__ = ["ACTIVE", "parse_snapshot", "read_snapshot", "write_snapshot", "snapshot_dict", "load_instance",
           "generate", "generator_for", "instance_sets", "resolve_instances", "bundled_names"]
