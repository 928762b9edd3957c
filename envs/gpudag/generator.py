"""Seeded GPU-DAG workload generators (the three families of issue 5) and the online combiner.

* :func:`topcuoglu_example`: the 10-task, 3-processor example of Topcuoglu, Hariri and Wu (IEEE TPDS
  13(3), 2002), data as in DESIGN.md section 8 (HEFT makespan 80, CPOP 86, rank_u(entry) 108).
* :class:`TopcuogluGenerator`: the paper's random DAG generator (tasks v, CCR, shape alpha, out-degree,
  heterogeneity beta), abstract time units, one device per processor type, a transfer of an edge
  between two different processors takes its data size (bandwidth 1, latency 0).
* :class:`TransformerGenerator`: model-operator DAGs of transformer layers (inference prefill of
  micro-batches, or a training step with backward and weight-gradient tasks) whose operator times per
  device type come from Vidur's measured kernel profiles (``envs/data/gpudag/operator_times.csv``,
  milliseconds) and whose links come from Vidur's measured send/recv profiles (``links.csv``).
* :class:`TileDagGenerator`: tile Cholesky, LU and QR factorisation DAGs as in READYS (Grinsztajn et
  al., IEEE Cluster 2021) on CPU cores + GPUs, with READYS's kernel durations.
* :func:`online_workload`: several jobs from one generator with Poisson arrivals (online mode).

Every generator is a callable ``generator(rng) -> GPUDagInstance``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from schedgym.envs.core.errors import UnknownNameError
from schedgym.envs.gpudag.types import GPUDagInstance


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def uniform_links(n_devices: int, latency: float = 0.0, bandwidth: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(latency, bandwidth) matrices with the same link between every pair of devices."""
    return (np.full((n_devices, n_devices), float(latency)), np.full((n_devices, n_devices), float(bandwidth)))


def build_instance(
    name: str,
    exec_time: np.ndarray,
    edges: list[tuple[int, int, float]] | np.ndarray,
    device_type: np.ndarray,
    device_node: np.ndarray | None = None,
    link_latency: np.ndarray | None = None,
    link_bandwidth: np.ndarray | None = None,
    eligible: np.ndarray | None = None,
    **kwargs,
) -> GPUDagInstance:
    """A single-job instance from a time matrix and a list of ``(src, dst, data)`` edges."""
    w = np.asarray(exec_time, dtype=np.float64)
    T = w.shape[0]
    e = np.asarray(edges, dtype=np.float64).reshape(-1, 3)
    dt = np.asarray(device_type, dtype=np.int64)
    D = dt.shape[0]
    if link_latency is None or link_bandwidth is None:
        lat, bw = uniform_links(D)
        link_latency = lat if link_latency is None else link_latency
        link_bandwidth = bw if link_bandwidth is None else link_bandwidth
    return GPUDagInstance(
        name=name, exec_time=w, eligible=np.ones_like(w, dtype=bool) if eligible is None else np.asarray(eligible, bool),
        edge_src=e[:, 0].astype(np.int64), edge_dst=e[:, 1].astype(np.int64), edge_data=e[:, 2].copy(),
        device_type=dt, device_node=np.zeros(D, np.int64) if device_node is None else np.asarray(device_node, np.int64),
        link_latency=np.asarray(link_latency, np.float64), link_bandwidth=np.asarray(link_bandwidth, np.float64),
        task_job=kwargs.pop("task_job", np.zeros(T, np.int64)),
        job_arrival=kwargs.pop("job_arrival", np.zeros(1)), **kwargs)


# ----------------------------------------------------------------------------------------------
# Topcuoglu et al. (2002)
# ----------------------------------------------------------------------------------------------
TOPCUOGLU_W = [[14, 16, 9], [13, 19, 18], [11, 13, 19], [13, 8, 17], [12, 13, 10], [13, 16, 9], [7, 15, 11],
               [5, 11, 14], [18, 12, 20], [21, 7, 16]]
TOPCUOGLU_EDGES = [(0, 1, 18), (0, 2, 12), (0, 3, 9), (0, 4, 11), (0, 5, 14), (1, 7, 19), (1, 8, 16), (2, 6, 23),
                   (3, 7, 27), (3, 8, 23), (4, 8, 13), (5, 7, 15), (6, 9, 17), (7, 9, 11), (8, 9, 13)]


def topcuoglu_example() -> GPUDagInstance:
    """The paper's 10-task, 3-processor example (tasks n1..n10 as 0..9, processors P1..P3)."""
    return build_instance("topcuoglu-example", np.array(TOPCUOGLU_W, float), TOPCUOGLU_EDGES,
                          device_type=np.arange(3), type_names=("P1", "P2", "P3"),
                          source="Topcuoglu, Hariri and Wu, IEEE TPDS 13(3), 2002, Fig. 2")


@dataclass
class TopcuogluGenerator:
    """Topcuoglu et al.'s random DAG generator.

    Parameters (paper ranges in brackets): ``n_tasks`` v [20..100]; ``ccr`` communication to
    computation ratio [0.1, 0.5, 1, 5, 10]; ``alpha`` shape [0.5, 1, 2]: about ``sqrt(v)/alpha``
    levels of mean width ``alpha*sqrt(v)``; ``max_out_degree`` [1..5]; ``beta`` heterogeneity
    [0.1..1]; ``n_procs`` processors (one device of each type); ``w_dag`` mean computation cost.

    Construction: the number of levels is ``round(sqrt(v)/alpha)`` (at least 1); the v tasks are spread
    over the levels (each level at least one task, the rest uniformly at random). Each task of a
    non-final level draws an out-degree uniformly in ``1..max_out_degree`` (capped by the next level's
    width) and takes that many distinct successors in the next level; a task of a later level left
    without a predecessor gets one from the previous level, preferring a task with out-degree still
    below the cap. Costs: ``w_i ~ U[0, 2 w_dag]``, ``w(i, j) ~ U[w_i (1-beta/2), w_i (1+beta/2)]``,
    edge cost ``c ~ U[0, 2 ccr w_dag]`` (so that mean communication / mean computation = CCR). Edge
    costs are the data sizes with bandwidth 1 and latency 0, so a transfer between two different
    processors costs exactly c (0 on the same processor).
    """

    n_tasks: int = 50
    ccr: float = 1.0
    alpha: float = 1.0
    beta: float = 0.5
    max_out_degree: int = 3
    n_procs: int = 4
    w_dag: float = 50.0

    def size_bounds(self) -> tuple[int, int, int]:
        """(max tasks, max devices, max edges)."""
        return self.n_tasks, self.n_procs, self.n_tasks * max(self.max_out_degree, 1) + self.n_tasks

    def name(self, seed: int | str) -> str:
        return (f"topcuoglu-v{self.n_tasks}-ccr{_num(self.ccr)}-a{_num(self.alpha)}-b{_num(self.beta)}"
                f"-o{self.max_out_degree}-p{self.n_procs}-s{seed}")

    def __call__(self, rng: np.random.Generator, name: str | None = None) -> GPUDagInstance:
        v = int(self.n_tasks)
        if v < 1:
            raise ValueError(f"n_tasks must be >= 1, got {v}")
        n_lev = max(1, min(v, int(round(math.sqrt(v) / self.alpha))))
        sizes = np.ones(n_lev, dtype=np.int64)
        sizes += np.bincount(rng.integers(0, n_lev, size=v - n_lev), minlength=n_lev)
        level_start = np.concatenate([[0], np.cumsum(sizes)])
        edges: set[tuple[int, int]] = set()
        outdeg = np.zeros(v, dtype=np.int64)
        cap = max(1, int(self.max_out_degree))
        for lv in range(n_lev - 1):
            nxt = np.arange(level_start[lv + 1], level_start[lv + 2])
            for t in range(level_start[lv], level_start[lv + 1]):
                k = int(rng.integers(1, cap + 1))
                for s in rng.choice(nxt, size=min(k, len(nxt)), replace=False):
                    edges.add((t, int(s)))
                    outdeg[t] += 1
        has_pred = np.zeros(v, dtype=bool)
        for _, b in edges:
            has_pred[b] = True
        for lv in range(1, n_lev):
            prev = np.arange(level_start[lv - 1], level_start[lv])
            for t in range(level_start[lv], level_start[lv + 1]):
                if not has_pred[t]:
                    spare = prev[outdeg[prev] < cap]
                    p = int(rng.choice(spare if len(spare) else prev))
                    edges.add((p, t))
                    outdeg[p] += 1
        wi = rng.uniform(0.0, 2.0 * self.w_dag, size=v)
        w = rng.uniform(wi[:, None] * (1 - self.beta / 2), wi[:, None] * (1 + self.beta / 2), size=(v, self.n_procs))
        el = sorted(edges)
        cost = rng.uniform(0.0, 2.0 * self.ccr * self.w_dag, size=len(el))
        e = [(a, b, float(c)) for (a, b), c in zip(el, cost, strict=False)]
        return build_instance(name or f"topcuoglu-v{v}", w, e, device_type=np.arange(self.n_procs),
                              type_names=tuple(f"P{k + 1}" for k in range(self.n_procs)),
                              source=f"generator:{self.name('?')}")


class TopcuogluMixture:
    """Topcuoglu DAGs whose parameters are drawn per instance (training on several sizes and CCRs).

    Each keyword of :class:`TopcuogluGenerator` takes one value or a list of values; every instance
    draws each listed parameter uniformly from its list (``n_procs`` must be one value, the device
    count of every instance). Example: ``TopcuogluMixture(n_tasks=[30, 50], ccr=[0.1, 1, 5])``.
    With ``n_jobs``, each instance is an online workload (:class:`OnlineGenerator`): ``n_jobs`` such
    DAGs, each drawn from the mixture, arriving as a Poisson process at offered ``load``; a list of
    ``n_jobs`` or ``load`` values is drawn from per workload (uniformly, before its DAGs).
    """

    def __init__(self, n_tasks: int | list[int] = 50, ccr: float | list[float] = 1.0,
                 alpha: float | list[float] = 1.0, beta: float | list[float] = 0.5,
                 max_out_degree: int | list[int] = 3, n_procs: int = 4, w_dag: float | list[float] = 50.0,
                 n_jobs: int | list[int] | None = None, load: float | list[float] = 0.7):
        jobs_list = [int(v) for v in n_jobs] if isinstance(n_jobs, (list, tuple)) else None
        load_list = [float(v) for v in load] if isinstance(load, (list, tuple)) else [float(load)]
        if jobs_list is not None and (not jobs_list or min(jobs_list) < 1):
            raise ValueError(f"TopcuogluMixture: n_jobs must be >= 1 (or null for one DAG), got {n_jobs}")
        if not load_list or min(load_list) <= 0:
            raise ValueError(f"TopcuogluMixture: load must be > 0 (one value or a list), got {load}")
        self.n_jobs_choices = jobs_list or ([] if n_jobs is None else [int(n_jobs)])
        self.load_choices = load_list
        self.n_jobs = max(self.n_jobs_choices) if self.n_jobs_choices else None
        self.load = load_list[0]
        if self.n_jobs is not None and self.n_jobs < 1:
            raise ValueError(f"TopcuogluMixture: n_jobs must be >= 1 (or null for one DAG), got {n_jobs}")
        def as_list(name: str, v) -> list:
            vals = list(v) if isinstance(v, (list, tuple)) else [v]
            if not vals:
                raise ValueError(f"TopcuogluMixture: {name} lists no value")
            return vals

        self.choices = {"n_tasks": as_list("n_tasks", n_tasks), "ccr": as_list("ccr", ccr),
                        "alpha": as_list("alpha", alpha), "beta": as_list("beta", beta),
                        "max_out_degree": as_list("max_out_degree", max_out_degree),
                        "w_dag": as_list("w_dag", w_dag)}
        if isinstance(n_procs, (list, tuple)):
            raise ValueError("TopcuogluMixture: n_procs must be one number (the padded device count)")
        self.n_procs = int(n_procs)

    def size_bounds(self) -> tuple[int, int, int]:
        """(max tasks, max devices, max edges) over the mixture (times ``n_jobs`` for online workloads)."""
        v, o = max(self.choices["n_tasks"]), max(self.choices["max_out_degree"])
        t, d, e = TopcuogluGenerator(n_tasks=v, max_out_degree=o, n_procs=self.n_procs).size_bounds()
        k = self.n_jobs or 1
        return t * k, d, e * k

    def __call__(self, rng: np.random.Generator, name: str | None = None) -> GPUDagInstance:
        if self.n_jobs is not None:
            single = TopcuogluMixture(n_procs=self.n_procs, **self.choices)
            # one value: no draw (the workloads of a fixed n_jobs and load are unchanged)
            n_jobs = self.n_jobs_choices[int(rng.integers(len(self.n_jobs_choices)))] \
                if len(self.n_jobs_choices) > 1 else self.n_jobs
            load = self.load_choices[int(rng.integers(len(self.load_choices)))] \
                if len(self.load_choices) > 1 else self.load
            return OnlineGenerator(single, n_jobs, load)(rng, name)
        return self._one_dag(rng, name)

    def name(self, seed: int | str) -> str:
        return f"topcuoglu-mixture-p{self.n_procs}-s{seed}"

    def _one_dag(self, rng: np.random.Generator, name: str | None = None) -> GPUDagInstance:
        params = {k: vals[int(rng.integers(len(vals)))] if len(vals) > 1 else vals[0]
                  for k, vals in self.choices.items()}
        return TopcuogluGenerator(n_procs=self.n_procs, **params)(rng, name)


def _num(x: float) -> str:
    """Compact number for names: 1.0 -> '1', 0.5 -> '0.5'."""
    return f"{float(x):g}"


# ----------------------------------------------------------------------------------------------
# measured operator profiles (Vidur) and clusters of GPUs
# ----------------------------------------------------------------------------------------------
def _data_file(name: str):
    return resources.files("schedgym.envs").joinpath("data", "gpudag", name)


@cache
def operator_table() -> dict[tuple[str, str, str, int], float]:
    """(model, device, op, num_tokens) -> time in ms, from ``envs/data/gpudag/operator_times.csv``."""
    out = {}
    with _data_file("operator_times.csv").open() as fh:
        for r in csv.DictReader(fh):
            out[(r["model"], r["device"], r["op"], int(r["num_tokens"]))] = float(r["time_ms"])
    return out


@cache
def model_table() -> dict[str, dict[str, int]]:
    """Model shapes (n_embd, n_head, n_kv_head, n_expanded_embd) from ``models.csv``."""
    out = {}
    with _data_file("models.csv").open() as fh:
        for r in csv.DictReader(fh):
            out[r["model"]] = {k: int(r[k]) for k in ("n_embd", "n_head", "n_kv_head", "n_expanded_embd")}
    return out


@cache
def link_table() -> dict[tuple[str, str], tuple[float, float]]:
    """(device type, 'intra'|'inter') -> (latency ms, bandwidth MB/ms) measured by Vidur."""
    out = {}
    with _data_file("links.csv").open() as fh:
        for r in csv.DictReader(fh):
            out[(r["link"], r["scope"])] = (float(r["latency_ms"]), float(r["bandwidth_gb_s"]))
    return out


GPU_TYPES = ("h100", "a100", "a40")
TOKEN_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def parse_cluster(spec: str) -> list[tuple[str, int]]:
    """``"h100x4_a100x2_a40x2"`` -> [("h100", 4), ("a100", 2), ("a40", 2)]: one node per part."""
    nodes = []
    for part in spec.split("_"):
        typ, _, cnt = part.partition("x")
        if typ not in GPU_TYPES or not cnt.isdigit() or int(cnt) < 1:
            raise UnknownNameError("GPU cluster part (TYPExCOUNT, types h100/a100/a40)", part,
                                   [f"{t}x4" for t in GPU_TYPES])
        nodes.append((typ, int(cnt)))
    return nodes


def gpu_cluster(spec: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """(device_type, device_node, latency ms, bandwidth MB/ms, type names) of a GPU cluster.

    Within a node the link is Vidur's measured intra-node send/recv of that GPU type; across nodes the
    slower of the two types' measured inter-node links (higher latency, lower bandwidth).
    """
    nodes = parse_cluster(spec)
    types = tuple(t for t in GPU_TYPES if any(n[0] == t for n in nodes))
    dtype, dnode = [], []
    for i, (t, c) in enumerate(nodes):
        dtype += [types.index(t)] * c
        dnode += [i] * c
    dtype_a, dnode_a = np.array(dtype, np.int64), np.array(dnode, np.int64)
    D = len(dtype)
    links = link_table()
    lat, bw = np.zeros((D, D)), np.full((D, D), np.inf)
    for a in range(D):
        ta = nodes[dnode[a]][0]
        for b in range(D):
            if a == b:
                continue
            tb = nodes[dnode[b]][0]
            if dnode[a] == dnode[b]:
                lat[a, b], bw[a, b] = links[(ta, "intra")]
            else:
                la, ba = links[(ta, "inter")]
                lb, bb = links[(tb, "inter")]
                lat[a, b], bw[a, b] = max(la, lb), min(ba, bb)
    return dtype_a, dnode_a, lat, bw, tuple(t.upper() for t in types)


LAYER_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn", "attn_post_proj", "add",
             "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")


@dataclass
class TransformerGenerator:
    """Model-operator DAG of transformer layers on a GPU cluster, operator times from measured profiles.

    Each of ``n_microbatches`` micro-batches (a sequence of ``tokens`` tokens, or a random token count
    of the profile grid between 16 and ``tokens`` when ``random_tokens``) runs the embedding and then
    ``n_layers`` decoder layers of ``model`` (``llama2_7b`` or ``llama2_70b``); each layer is the DAG
    ``ln1 -> qkv (attn_pre_proj) -> rope -> attn -> o_proj (attn_post_proj) -> add(+x) -> ln2 -> up ->
    act -> down -> add(+residual)``. Task times per device type are Vidur's measured medians at tensor
    parallelism 1 (``attn``: derived, see ``envs/data/gpudag/operator_times.csv``); edge data = the
    activation tensor (fp16) between the two operators (MB). ``mode="training"`` adds the backward pass:
    one gradient task per forward task (edges reversed, plus the stashed activation from its forward
    task) and one weight-gradient task per GEMM; backward task times are taken equal to the measured
    forward time of the same operator (same FLOPs; not measured separately). Times in ms.
    """

    model: str = "llama2_7b"
    n_layers: int = 2
    n_microbatches: int = 4
    tokens: int = 512
    mode: str = "inference"
    cluster: str = "h100x2_a100x2_a40x2"
    random_tokens: bool = False

    def size_bounds(self) -> tuple[int, int, int]:
        per_mb = 1 + len(LAYER_OPS) * self.n_layers
        t = per_mb * self.n_microbatches
        e = (12 * self.n_layers + 1) * self.n_microbatches
        if self.mode == "training":
            t, e = 2 * t + 4 * self.n_layers * self.n_microbatches, 4 * e + t
        return t, sum(c for _, c in parse_cluster(self.cluster)), e

    def name(self, seed: int | str) -> str:
        return (f"transformer-{self.model}-L{self.n_layers}-mb{self.n_microbatches}-t{self.tokens}"
                f"{'r' if self.random_tokens else ''}-{self.mode}-c{self.cluster}-s{seed}")

    def __call__(self, rng: np.random.Generator, name: str | None = None) -> GPUDagInstance:
        if self.model not in model_table():
            raise UnknownNameError("transformer model", self.model, model_table())
        if self.mode not in ("inference", "training"):
            raise ValueError(f"mode must be 'inference' or 'training', got {self.mode!r}")
        if self.tokens not in TOKEN_GRID:
            raise ValueError(f"tokens must be one of the profiled counts {TOKEN_GRID}, got {self.tokens}")
        dtype, dnode, lat, bw, tnames = gpu_cluster(self.cluster)
        devs = [t.lower() for t in tnames]
        prof = operator_table()
        shape = model_table()[self.model]
        d, ffn = shape["n_embd"], shape["n_expanded_embd"]
        kv = d // shape["n_head"] * shape["n_kv_head"]
        kinds: list[str] = []
        times: list[list[float]] = []
        edges: list[tuple[int, int, float]] = []

        tok_of: dict[int, int] = {}

        def task(kind: str, op: str, s: int) -> int:
            tok_of[len(kinds)] = s
            kinds.append(kind)
            times.append([prof[(self.model, dv, op, s)] for dv in devs])
            return len(kinds) - 1

        fwd_edges: list[tuple[int, int, float]] = []
        fwd_op: dict[int, str] = {}
        grid = [t for t in TOKEN_GRID if 16 <= t <= self.tokens] or [self.tokens]
        for _ in range(self.n_microbatches):
            s = int(rng.choice(grid)) if self.random_tokens else self.tokens
            mb = 2.0 * s / 1e6  # MB per fp16 element per token
            x = task("emb", "emb", s)
            fwd_op[x] = "emb"
            for _layer in range(self.n_layers):
                ids = {}
                for i, op in enumerate(LAYER_OPS):
                    ids[i] = task(op, op, s)
                    fwd_op[ids[i]] = op
                ln1, qkv, rope, attn, oproj, add1, ln2, up, act, down, add2 = (ids[i] for i in range(11))
                fwd_edges += [(x, ln1, mb * d), (ln1, qkv, mb * d), (qkv, rope, mb * (d + 2 * kv)),
                              (rope, attn, mb * (d + 2 * kv)), (attn, oproj, mb * d), (oproj, add1, mb * d),
                              (x, add1, mb * d), (add1, ln2, mb * d), (ln2, up, mb * d), (up, act, mb * 2 * ffn),
                              (act, down, mb * ffn), (down, add2, mb * d), (add1, add2, mb * d)]
                x = add2
        edges += fwd_edges
        if self.mode == "training":
            n_fwd = len(kinds)
            grad = {}
            for t in range(n_fwd - 1, -1, -1):
                op = fwd_op[t]
                grad[t] = task(f"bwd:{op}", op, tok_of[t])
            for a, b, data in fwd_edges:
                edges.append((grad[b], grad[a], data))
            out_data: dict[int, float] = {}
            for a, _b, data in fwd_edges:
                out_data[a] = max(out_data.get(a, 0.0), data)
            for t in range(n_fwd):
                edges.append((t, grad[t], out_data.get(t, 0.0)))
                op = fwd_op[t]
                if op in GEMM_OPS:
                    wg = task(f"wgrad:{op}", op, tok_of[t])
                    edges.append((t, wg, out_data.get(t, 0.0)))
                    for a, b, data in fwd_edges:
                        if a == t:
                            edges.append((grad[b], wg, data))
        kind_names = tuple(dict.fromkeys(kinds))
        kind_idx = np.array([kind_names.index(k) for k in kinds], np.int64)
        return build_instance(name or self.name("?"), np.array(times), edges, device_type=dtype, device_node=dnode,
                              link_latency=lat, link_bandwidth=bw, type_names=tnames, task_kind=kind_idx,
                              kind_names=kind_names, time_unit="ms",
                              source=f"generator:{self.name('?')} (Vidur profiles)")


# ----------------------------------------------------------------------------------------------
# tile factorisation DAGs (READYS)
# ----------------------------------------------------------------------------------------------
#: kernel -> (CPU time, GPU time), as in READYS's code (durations_cpu / durations_gpu, ms; consistent
#: with 960 x 960 double tiles: a tile GEMM is 1.77 GFLOP, 95 ms on one CPU core, 3 ms on a GPU).
TILE_KERNELS = {
    "cholesky": {"POTRF": (18.0, 11.0), "SYRK": (57.0, 2.0), "TRSM": (52.0, 8.0), "GEMM": (95.0, 3.0)},
    "lu": {"GETRF": (18.0, 11.0), "GEMM": (95.0, 3.0), "TRSM_L": (52.0, 8.0), "TRSM_U": (52.0, 8.0)},
    "qr": {"GEQRT": (4.0, 3.0), "TSQRT": (6.0, 3.0), "ORMQR": (6.0, 1.0), "TSMQR": (10.0, 1.0)},
}
#: PCIe 3.0 x16 class link between host memory and a GPU (and between GPUs through the host): nominal
#: 12 GB/s (12 MB/ms) and 0.01 ms latency; CPU cores share host memory (free transfers). An assumption,
#: not a measurement.
PCIE_BANDWIDTH_MB_PER_MS = 12.0
PCIE_LATENCY_MS = 0.01


def _tile_program(kind: str, n: int) -> list[tuple[str, list[tuple[int, int]], list[tuple[int, int]]]]:
    """Sequential task flow: (kernel, tiles read, tiles read-written) in program order."""
    prog = []
    for k in range(n):
        if kind == "cholesky":
            prog.append(("POTRF", [], [(k, k)]))
            for i in range(k + 1, n):
                prog.append(("TRSM", [(k, k)], [(i, k)]))
            for i in range(k + 1, n):
                prog.append(("SYRK", [(i, k)], [(i, i)]))
                for j in range(k + 1, i):
                    prog.append(("GEMM", [(i, k), (j, k)], [(i, j)]))
        elif kind == "lu":
            prog.append(("GETRF", [], [(k, k)]))
            for j in range(k + 1, n):
                prog.append(("TRSM_L", [(k, k)], [(k, j)]))
            for i in range(k + 1, n):
                prog.append(("TRSM_U", [(k, k)], [(i, k)]))
            for i in range(k + 1, n):
                for j in range(k + 1, n):
                    prog.append(("GEMM", [(i, k), (k, j)], [(i, j)]))
        elif kind == "qr":
            prog.append(("GEQRT", [], [(k, k)]))
            for j in range(k + 1, n):
                prog.append(("ORMQR", [(k, k)], [(k, j)]))
            for i in range(k + 1, n):
                prog.append(("TSQRT", [], [(k, k), (i, k)]))
                for j in range(k + 1, n):
                    prog.append(("TSMQR", [(i, k)], [(k, j), (i, j)]))
        else:
            raise UnknownNameError("tile factorisation", kind, TILE_KERNELS)
    return prog


@dataclass
class TileDagGenerator:
    """Tile Cholesky / LU / QR DAG of ``n_tiles`` x ``n_tiles`` tiles on ``n_cpus`` cores + ``n_gpus`` GPUs.

    Edges are the data-flow dependencies of the sequential task flow (a task depends on the last writer
    of every tile it reads or updates); each carries one ``tile_size`` x ``tile_size`` double tile
    (MB). Kernel times (ms) are READYS's CPU/GPU durations (:data:`TILE_KERNELS`); with ``noise`` > 0
    each task's times are multiplied by ``exp(N(0, noise))`` (seeded). One node; CPU-CPU transfers are
    free, any transfer involving a GPU uses a PCIe-class link (:data:`PCIE_BANDWIDTH_MB_PER_MS`).
    """

    kind: str = "cholesky"
    n_tiles: int = 5
    n_cpus: int = 4
    n_gpus: int = 2
    noise: float = 0.0
    tile_size: int = 960

    def size_bounds(self) -> tuple[int, int, int]:
        prog = _tile_program(self.kind, self.n_tiles)
        return len(prog), self.n_cpus + self.n_gpus, 3 * len(prog)

    def name(self, seed: int | str) -> str:
        nz = f"-n{_num(self.noise)}" if self.noise else ""
        return f"{self.kind}-T{self.n_tiles}-c{self.n_cpus}g{self.n_gpus}{nz}-s{seed}"

    def __call__(self, rng: np.random.Generator, name: str | None = None) -> GPUDagInstance:
        if self.n_cpus + self.n_gpus < 1:
            raise ValueError("the platform needs at least one CPU core or GPU")
        kernels = TILE_KERNELS.get(self.kind)
        if kernels is None:
            raise UnknownNameError("tile factorisation", self.kind, TILE_KERNELS)
        prog = _tile_program(self.kind, self.n_tiles)
        tile_mb = self.tile_size * self.tile_size * 8 / 1e6
        last_writer: dict[tuple[int, int], int] = {}
        edges: dict[tuple[int, int], float] = {}
        times, kinds = [], []
        for t, (kern, reads, rws) in enumerate(prog):
            for tile in reads + rws:
                p = last_writer.get(tile)
                if p is not None:
                    edges[(p, t)] = tile_mb
            for tile in rws:
                last_writer[tile] = t
            cpu, gpu = kernels[kern]
            times.append([cpu, gpu])
            kinds.append(list(kernels).index(kern))
        w = np.array(times, dtype=np.float64)
        if self.noise > 0:
            w = w * np.exp(rng.normal(0.0, self.noise, size=w.shape))
        D = self.n_cpus + self.n_gpus
        dtype = np.array([0] * self.n_cpus + [1] * self.n_gpus, np.int64)
        lat = np.full((D, D), PCIE_LATENCY_MS)
        bw = np.full((D, D), PCIE_BANDWIDTH_MB_PER_MS)
        cpu = dtype == 0
        lat[np.ix_(cpu, cpu)] = 0.0
        bw[np.ix_(cpu, cpu)] = np.inf
        el = [(a, b, d) for (a, b), d in sorted(edges.items())]
        present = [self.n_cpus > 0, self.n_gpus > 0]
        keep = [k for k in range(2) if present[k]]
        remap = {k: i for i, k in enumerate(keep)}
        return build_instance(name or self.name("?"), w[:, keep], el, device_type=np.array([remap[k] for k in dtype]),
                              link_latency=lat, link_bandwidth=bw,
                              type_names=tuple(("CPU", "GPU")[k] for k in keep),
                              task_kind=np.array(kinds, np.int64), kind_names=tuple(kernels), time_unit="ms",
                              source=f"generator:{self.name('?')} (READYS kernel durations)")


# ----------------------------------------------------------------------------------------------
# online mode
# ----------------------------------------------------------------------------------------------
def combine_jobs(name: str, jobs: list[GPUDagInstance], arrivals: np.ndarray, source: str = "") -> GPUDagInstance:
    """One multi-job instance from single-job instances on the same cluster (same devices and links)."""
    if not jobs:
        raise ValueError("combine_jobs needs at least one job")
    base = jobs[0]
    for j in jobs[1:]:
        if (j.n_types != base.n_types or not np.array_equal(j.device_type, base.device_type)
                or not np.array_equal(j.link_bandwidth, base.link_bandwidth)):
            raise ValueError(f"job {j.name} runs on a different cluster than {base.name}")
    offs = np.cumsum([0] + [j.n_tasks for j in jobs])
    kinds: tuple[str, ...] = ()
    kind_arr = None
    if all(j.task_kind is not None for j in jobs):
        kinds = tuple(dict.fromkeys(k for j in jobs for k in j.kind_names))
        kind_arr = np.concatenate([np.array([kinds.index(j.kind_names[k]) for k in j.task_kind], np.int64)
                                   for j in jobs])
    return GPUDagInstance(
        name=name, exec_time=np.concatenate([j.exec_time for j in jobs]),
        eligible=np.concatenate([j.eligible for j in jobs]),
        edge_src=np.concatenate([j.edge_src + o for j, o in zip(jobs, offs, strict=False)]),
        edge_dst=np.concatenate([j.edge_dst + o for j, o in zip(jobs, offs, strict=False)]),
        edge_data=np.concatenate([j.edge_data for j in jobs]),
        device_type=base.device_type, device_node=base.device_node, link_latency=base.link_latency,
        link_bandwidth=base.link_bandwidth,
        task_job=np.concatenate([np.full(j.n_tasks, i, np.int64) for i, j in enumerate(jobs)]),
        job_arrival=np.asarray(arrivals, np.float64), type_names=base.type_names, task_kind=kind_arr,
        kind_names=kinds, time_unit=base.time_unit, source=source)


@dataclass
class OnlineGenerator:
    """``n_jobs`` DAGs from ``base`` arriving as a Poisson process (the first at time 0).

    The arrival rate is ``load * n_devices / mean job work``, where a job's work is the sum of its
    tasks' mean execution times, so ``load`` is the offered utilisation of the cluster (ignoring
    communication and precedence).
    """

    base: TopcuogluGenerator | TransformerGenerator | TileDagGenerator
    n_jobs: int = 10
    load: float = 0.7

    def size_bounds(self) -> tuple[int, int, int]:
        t, d, e = self.base.size_bounds()
        return t * self.n_jobs, d, e * self.n_jobs

    def name(self, seed: int | str) -> str:
        b = self.base.name(seed)
        head, _, _ = b.rpartition("-s")
        return f"online-{head}-j{self.n_jobs}-load{_num(self.load)}-s{seed}"

    def __call__(self, rng: np.random.Generator, name: str | None = None) -> GPUDagInstance:
        jobs = [self.base(rng) for _ in range(self.n_jobs)]
        work = float(np.mean([j.mean_time.sum() for j in jobs]))
        rate = self.load * jobs[0].n_devices / max(work, 1e-12)
        gaps = rng.exponential(1.0 / rate, size=self.n_jobs)
        arrivals = np.concatenate([[0.0], np.cumsum(gaps[1:])])
        return combine_jobs(name or self.name("?"), jobs, arrivals, source=f"generator:{self.name('?')}")


def online_workload(base, n_jobs: int, load: float, rng: np.random.Generator) -> GPUDagInstance:
    """Shortcut for ``OnlineGenerator(base, n_jobs, load)(rng)``."""
    return OnlineGenerator(base, n_jobs, load)(rng)
