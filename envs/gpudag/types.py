"""GPU-DAG instance and solution types, shared by the env, the baselines, the solvers and the validator.

Units: every time (execution time, latency, arrival, start, makespan) is in the instance's
``time_unit`` (``"ms"`` for the model-operator and tile workloads, abstract ``"unit"`` for
Topcuoglu's random DAGs); data sizes are in MB; link bandwidths in MB per time unit (MB/ms = GB/s).

Tasks are numbered globally ``0..T-1``; a task belongs to one job (one DAG); an instance with one
job arriving at time 0 is the static problem, several jobs with arrival times the online one.
Communication of edge ``e`` from device ``a`` to device ``b`` takes
``0`` when ``a == b``, else ``link_latency[a, b] + edge_data[e] / link_bandwidth[a, b]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from schedgym.envs.core.errors import InstanceFormatError


@dataclass(frozen=True, eq=False)
class GPUDagInstance:
    """DAG jobs on a heterogeneous cluster of devices.

    Attributes:
        name: instance name; generated instances encode their generator and seed in it.
        exec_time: (T, K) float64, time of task t on a device of type k (time units); 0 where not eligible.
        eligible: (T, K) bool, a device of type k can run task t.
        edge_src: (E,) int64, producer task of each data edge.
        edge_dst: (E,) int64, consumer task of each data edge.
        edge_data: (E,) float64, data size of each edge (MB).
        device_type: (D,) int64, type index (into ``type_names``) of each device.
        device_node: (D,) int64, node (server) of each device.
        link_latency: (D, D) float64, latency of a transfer from device a to device b (time units).
        link_bandwidth: (D, D) float64, bandwidth from a to b (MB per time unit); ``inf``: free.
        task_job: (T,) int64, job of each task.
        job_arrival: (J,) float64, arrival (release) time of each job (time units).
        type_names: name of each device type (``"H100"``, ``"CPU"``, ``"P1"``).
        task_kind: (T,) int64 or None, operator/kernel kind of each task (index into ``kind_names``).
        kind_names: names of the task kinds (``"mlp_up_proj"``, ``"POTRF"``).
        time_unit: ``"ms"`` or ``"unit"``.
        lower_bound: a proven lower bound on the optimal makespan, or None.
        upper_bound: best known makespan, or None.
        source: where the instance came from (``generator:topcuoglu(...)``, a file path).
    """

    name: str
    exec_time: np.ndarray  # (T, K) float64
    eligible: np.ndarray  # (T, K) bool
    edge_src: np.ndarray  # (E,) int64
    edge_dst: np.ndarray  # (E,) int64
    edge_data: np.ndarray  # (E,) float64
    device_type: np.ndarray  # (D,) int64
    device_node: np.ndarray  # (D,) int64
    link_latency: np.ndarray  # (D, D) float64
    link_bandwidth: np.ndarray  # (D, D) float64
    task_job: np.ndarray  # (T,) int64
    job_arrival: np.ndarray  # (J,) float64
    type_names: tuple[str, ...] = ()
    task_kind: np.ndarray | None = None  # (T,) int64
    kind_names: tuple[str, ...] = ()
    time_unit: str = "unit"
    lower_bound: float | None = None
    upper_bound: float | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_instance(self)

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def n_tasks(self) -> int:
        return int(self.exec_time.shape[0])

    @property
    def n_types(self) -> int:
        return int(self.exec_time.shape[1])

    @property
    def n_devices(self) -> int:
        return int(self.device_type.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.shape[0])

    @property
    def n_jobs(self) -> int:
        return int(self.job_arrival.shape[0])

    @property
    def is_online(self) -> bool:
        """True when there are several jobs or a job arrives after time 0."""
        return self.n_jobs > 1 or bool(self.job_arrival.max(initial=0.0) > 0)

    # ---- derived tables ----------------------------------------------------------------------
    @cached_property
    def dev_time(self) -> np.ndarray:
        """(T, D) float64 time of task t on device d; ``inf`` where the device cannot run it."""
        w = self.exec_time[:, self.device_type]
        return np.where(self.eligible[:, self.device_type], w, np.inf)

    @cached_property
    def dev_eligible(self) -> np.ndarray:
        """(T, D) bool, device d can run task t."""
        return self.eligible[:, self.device_type]

    @cached_property
    def mean_time(self) -> np.ndarray:
        """(T,) float64 mean execution time over the devices that can run the task (HEFT's w_i)."""
        el = self.dev_eligible
        return np.where(el, self.exec_time[:, self.device_type], 0.0).sum(axis=1) / el.sum(axis=1)

    @cached_property
    def min_time(self) -> np.ndarray:
        """(T,) float64 shortest execution time over the devices."""
        return self.dev_time.min(axis=1)

    @cached_property
    def max_time(self) -> np.ndarray:
        """(T,) float64 longest execution time over the devices that can run the task."""
        return np.where(self.dev_eligible, self.dev_time, -np.inf).max(axis=1)

    @cached_property
    def inv_bandwidth(self) -> np.ndarray:
        """(D, D) float64 time units per MB (0 on the diagonal and for free links)."""
        with np.errstate(divide="ignore"):
            inv = 1.0 / self.link_bandwidth
        np.fill_diagonal(inv, 0.0)
        return inv

    @cached_property
    def latency(self) -> np.ndarray:
        """(D, D) float64 latency with a zero diagonal."""
        lat = self.link_latency.astype(np.float64).copy()
        np.fill_diagonal(lat, 0.0)
        return lat

    def comm_time(self, edge: int, src_device: int, dst_device: int) -> float:
        """Transfer time of ``edge`` from ``src_device`` to ``dst_device`` (0 on the same device)."""
        if src_device == dst_device:
            return 0.0
        return float(self.latency[src_device, dst_device]
                     + self.edge_data[edge] * self.inv_bandwidth[src_device, dst_device])

    @cached_property
    def mean_comm(self) -> np.ndarray:
        """(E,) float64 mean transfer time of each edge over ordered pairs of distinct devices (HEFT's c̄)."""
        D = self.n_devices
        if D < 2:
            return np.zeros(self.n_edges)
        off = ~np.eye(D, dtype=bool)
        return self.latency[off].mean() + self.edge_data * self.inv_bandwidth[off].mean()

    @cached_property
    def pred_ptr(self) -> np.ndarray:
        """(T+1,) int64 CSR pointers: the incoming edges of task t are ``pred_edge[pred_ptr[t]:pred_ptr[t+1]]``."""
        return np.concatenate([[0], np.cumsum(np.bincount(self.edge_dst, minlength=self.n_tasks))]).astype(np.int64)

    @cached_property
    def pred_edge(self) -> np.ndarray:
        """(E,) int64 edge ids sorted by consumer task."""
        return np.argsort(self.edge_dst, kind="stable").astype(np.int64)

    @cached_property
    def succ_ptr(self) -> np.ndarray:
        """(T+1,) int64 CSR pointers of the outgoing edges (``succ_edge``)."""
        return np.concatenate([[0], np.cumsum(np.bincount(self.edge_src, minlength=self.n_tasks))]).astype(np.int64)

    @cached_property
    def succ_edge(self) -> np.ndarray:
        """(E,) int64 edge ids sorted by producer task."""
        return np.argsort(self.edge_src, kind="stable").astype(np.int64)

    @cached_property
    def topo_order(self) -> np.ndarray:
        """(T,) int64 a topological order of the tasks (Kahn, smallest index first)."""
        order = _topological_order(self.n_tasks, self.edge_src, self.edge_dst)
        assert order is not None  # checked in __post_init__
        return order

    def preds(self, t: int) -> np.ndarray:
        """Predecessor tasks of ``t``."""
        return self.edge_src[self.pred_edge[self.pred_ptr[t]:self.pred_ptr[t + 1]]]

    def succs(self, t: int) -> np.ndarray:
        """Successor tasks of ``t``."""
        return self.edge_dst[self.succ_edge[self.succ_ptr[t]:self.succ_ptr[t + 1]]]

    def job_tasks(self, j: int) -> np.ndarray:
        return np.flatnonzero(self.task_job == j)

    def task_label(self, t: int) -> str:
        if self.task_kind is not None and self.kind_names:
            return f"{self.kind_names[int(self.task_kind[t])]}#{t}"
        return f"n{t}"

    def __repr__(self) -> str:
        mode = "online" if self.is_online else "static"
        return (f"GPUDagInstance({self.name!r}, {mode}, tasks={self.n_tasks}, edges={self.n_edges}, "
                f"devices={self.n_devices}, types={list(self.type_names)}, jobs={self.n_jobs})")


def _topological_order(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Kahn's algorithm; None when the graph has a cycle."""
    indeg = np.bincount(dst, minlength=n).astype(np.int64)
    order_idx = np.argsort(src, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
    succ = dst[order_idx]
    import heapq

    heap = [int(t) for t in np.flatnonzero(indeg == 0)]
    heapq.heapify(heap)
    out = []
    while heap:
        t = heapq.heappop(heap)
        out.append(t)
        for s in succ[ptr[t]:ptr[t + 1]]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(heap, int(s))
    if len(out) < n:
        return None
    return np.asarray(out, dtype=np.int64)


def _find_cycle(n: int, src: np.ndarray, dst: np.ndarray) -> list[int]:
    """One directed cycle (list of tasks) of a cyclic graph."""
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(src.tolist(), dst.tolist(), strict=False):
        adj[a].append(b)
    color = [0] * n
    parent = [-1] * n
    for root in range(n):
        if color[root]:
            continue
        stack = [(root, 0)]
        color[root] = 1
        while stack:
            v, i = stack[-1]
            if i < len(adj[v]):
                stack[-1] = (v, i + 1)
                w = adj[v][i]
                if color[w] == 0:
                    color[w] = 1
                    parent[w] = v
                    stack.append((w, 0))
                elif color[w] == 1:
                    cyc = [v]
                    while cyc[-1] != w:
                        cyc.append(parent[cyc[-1]])
                    return cyc[::-1]
            else:
                color[v] = 2
                stack.pop()
    return []


def check_instance(inst: GPUDagInstance) -> None:
    """Raise :class:`InstanceFormatError` naming the task, edge or field that is wrong."""
    src = inst.name or "<instance>"

    def fail(problem: str, fix: str | None = None) -> None:
        raise InstanceFormatError(src, problem, fix=fix)

    w = np.asarray(inst.exec_time)
    if w.ndim != 2:
        fail(f"exec_time must be a (tasks, device types) matrix, got shape {w.shape}")
    T, K = w.shape
    if inst.eligible.shape != (T, K):
        fail(f"eligible has shape {inst.eligible.shape}, expected {(T, K)}")
    E = inst.edge_src.shape[0]
    for fname in ("edge_dst", "edge_data"):
        if getattr(inst, fname).shape != (E,):
            fail(f"{fname} has shape {getattr(inst, fname).shape}, expected ({E},) like edge_src")
    D = inst.device_type.shape[0]
    if D == 0:
        fail("the cluster has no devices", "give at least one device")
    if inst.device_node.shape != (D,):
        fail(f"device_node has shape {inst.device_node.shape}, expected ({D},)")
    for fname in ("link_latency", "link_bandwidth"):
        if getattr(inst, fname).shape != (D, D):
            fail(f"{fname} has shape {getattr(inst, fname).shape}, expected ({D}, {D})")
    if inst.task_job.shape != (T,):
        fail(f"task_job has shape {inst.task_job.shape}, expected ({T},)")
    if inst.type_names and len(inst.type_names) != K:
        fail(f"{len(inst.type_names)} type_names for {K} device types")
    if ((inst.device_type < 0) | (inst.device_type >= K)).any():
        d = int(np.flatnonzero((inst.device_type < 0) | (inst.device_type >= K))[0])
        fail(f"device {d} has type {int(inst.device_type[d])}, valid types are 0..{K - 1}")
    bad = ~np.isfinite(w) | (w < 0)
    bad &= inst.eligible
    if bad.any():
        t, k = (int(x) for x in np.argwhere(bad)[0])
        fail(f"task {t} has execution time {w[t, k]} on device type {k}", "times must be finite and >= 0")
    present = np.zeros(K, dtype=bool)
    present[inst.device_type] = True
    runnable = (inst.eligible & present[None, :]).any(axis=1)
    if not runnable.all():
        t = int(np.flatnonzero(~runnable)[0])
        fail(f"task {t} cannot run on any device of the cluster (eligible types "
             f"{[int(k) for k in np.flatnonzero(inst.eligible[t])]}, cluster types "
             f"{[int(k) for k in np.flatnonzero(present)]})", "make it eligible on a device type the cluster has")
    for e in range(E):
        a, b = int(inst.edge_src[e]), int(inst.edge_dst[e])
        if not (0 <= a < T and 0 <= b < T):
            fail(f"edge {e} ({a} -> {b}) names a task outside 0..{T - 1}")
        if a == b:
            fail(f"edge {e} is a self-loop on task {a}")
        if inst.task_job[a] != inst.task_job[b]:
            fail(f"edge {e} ({a} -> {b}) joins tasks of different jobs")
    if E and (not np.isfinite(inst.edge_data).all() or (inst.edge_data < 0).any()):
        e = int(np.flatnonzero(~np.isfinite(inst.edge_data) | (inst.edge_data < 0))[0])
        fail(f"edge {e} ({int(inst.edge_src[e])} -> {int(inst.edge_dst[e])}) has data size {inst.edge_data[e]}",
             "data sizes must be finite and >= 0")
    if (inst.link_latency < 0).any() or np.isnan(inst.link_latency).any():
        fail("link_latency has negative or NaN entries")
    if (inst.link_bandwidth <= 0).any() or np.isnan(inst.link_bandwidth).any():
        fail("link_bandwidth must be > 0 (inf for free links)")
    J = inst.job_arrival.shape[0]
    if T and ((inst.task_job < 0) | (inst.task_job >= J)).any():
        fail(f"task_job refers to jobs outside 0..{J - 1}")
    if (~np.isfinite(inst.job_arrival) | (inst.job_arrival < 0)).any():
        fail("job_arrival must be finite and >= 0")
    if inst.task_kind is not None and inst.task_kind.shape != (T,):
        fail(f"task_kind has shape {inst.task_kind.shape}, expected ({T},)")
    if E and _topological_order(T, inst.edge_src, inst.edge_dst) is None:
        cyc = _find_cycle(T, inst.edge_src, inst.edge_dst)
        fail("the task graph has a cycle: " + " -> ".join(str(t) for t in cyc + cyc[:1]),
             "remove one of these edges")


@dataclass
class GPUDagSolution:
    """A complete schedule: the start time and the device of every task.

    Attributes:
        start: (T,) float64 start time of each task (time units).
        device: (T,) int64 device that runs each task.
        status: ``"feasible"``, ``"optimal"`` (proved by a solver), ``"fallback_heft"`` (a valid
            schedule: CP-SAT's fallback to HEFT's) or ``"none"``.
        bound: a lower bound on the optimal makespan known to the producer, else None.
        meta: free-form details (policy, solver wall time).
    """

    start: np.ndarray  # (T,) float64
    device: np.ndarray  # (T,) int64
    status: str = "feasible"
    bound: float | None = None
    meta: dict = field(default_factory=dict)

    def end(self, instance: GPUDagInstance) -> np.ndarray:
        """(T,) float64 completion time of each task."""
        return self.start + instance.exec_time[np.arange(instance.n_tasks), instance.device_type[self.device]]

    def makespan(self, instance: GPUDagInstance) -> float:
        return float(self.end(instance).max()) if instance.n_tasks else 0.0
