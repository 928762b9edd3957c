"""LLM-serving instance and solution types, shared by the simulator, the envs, the validator and the metrics.

Time is in seconds throughout, lengths in tokens, memory in bytes or KV blocks (of ``block_size``
tokens). Requests are numbered 0..N-1 in arrival order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from schedgym.envs.core.errors import InstanceFormatError

SCHEDULERS = ("vllm_v0", "sarathi", "orca", "vllm_v1")
#: routing rules of :class:`schedgym.envs.llmserve.cluster.Router` (arrivals, and decode replicas under PD)
ROUTERS = ("round_robin", "random", "least_outstanding", "least_kv", "power_of_two", "prefix_affinity")
PREEMPTION = ("recompute", "swap")
#: which running request a replica preempts when KV runs out: ``lifo`` (the latest arrival, vLLM) or
#: ``priority`` (the lowest-priority class first, i.e. the highest class index; latest arrival within it)
PREEMPT_ORDER = ("lifo", "priority")
KV_CAPACITY = ("memory", "vidur")


@dataclass(frozen=True)
class ReplicaSpec:
    """One model replica (a group of devices serving one copy of the model).

    ``batch_cap``, ``chunk_size`` and ``watermark_fraction`` left at None take the scheduler's
    default (below) when the spec is made; ``dataclasses.replace(spec, scheduler=...)`` copies the
    values already resolved, so pass those three as None too to get the new scheduler's defaults.

    Attributes:
        model: model config name (``envs/data/llmserve/models``) or a YAML path, e.g. ``llama2-7b``.
        device: device config name (``envs/data/llmserve/devices``) or a YAML path, e.g. ``a100``.
        tp: tensor-parallel degree (devices per pipeline stage).
        pp: pipeline stages (layers split evenly; one micro-batch in flight per replica).
        scheduler: ``vllm_v1`` (the default: vLLM >= 0.8's one token budget per step,
            ``chunk_size`` = max_num_batched_tokens, ``batch_cap`` = max_num_seqs: running requests
            in order (decodes 1 token, partial prefills chunked), then waiting requests chunked; KV
            blocks allocated per chunk, no watermark; when a running request finds no free block the
            newest running request is preempted (recompute) and no waiting request is admitted that
            step), ``vllm_v0`` (prefill-prioritised, prefill-only or decode-only batches; the engine
            Vidur simulates, kept for the Vidur comparison), ``sarathi`` (Sarathi-Serve: chunked
            prefill mixed with decodes within ``chunk_size`` tokens) or ``orca`` (iteration-level,
            whole prompts, KV reserved for the model length).
        batch_cap: most requests resident (and in one batch). Default under ``vllm_v1``: vLLM's
            max_num_seqs default for its OpenAI server (:func:`vllm_v1_batch_defaults`: 256, or 1,024 on
            GPUs of at least 70 GiB other than A100); 128 under the other schedulers (Vidur's).
        max_tokens_in_batch: vLLM v0 token budget (batch size x longest prompt in the batch).
        chunk_size: token budget per iteration of ``vllm_v1`` (max_num_batched_tokens) and ``sarathi``.
            Default under ``vllm_v1``: vLLM's max_num_batched_tokens default for its OpenAI server
            (:func:`vllm_v1_batch_defaults`: 2,048 on GPUs under 70 GiB and on A100s, 8,192 on larger
            GPUs such as H100 and RTX PRO 6000; the three real-vLLM runs of
            :mod:`schedgym.envs.llmserve.vllm_bench` set 2,048 explicitly); 512 under ``sarathi``.
        block_size: tokens per KV block.
        watermark_fraction: fraction of blocks kept free when admitting a new request. Default: 0.01
            (vLLM v0's), 0 under ``vllm_v1`` (which has no watermark; a positive value is an error).
        memory_utilization: fraction of device memory usable (weights + KV + activations).
        activation_reserve_gb: memory kept for activations, GiB per device.
        kv_capacity: ``memory`` ((memory x utilisation - weights - reserve) / KV bytes per token) or
            ``vidur`` (Vidur's rule: whole max-length request slots, 10 % margin).
        num_blocks: explicit KV blocks (overrides ``kv_capacity``).
        preemption: ``recompute`` (free the KV, prefill again later; the default, and the only mode
            of ``vllm_v1``) or ``swap`` (copy it to host memory over ``pcie_gbps`` and back; needs
            ``scheduler`` ``vllm_v0``, ``sarathi`` or ``orca``).
        preempt_order: ``lifo`` (preempt the latest-arrived running request, vLLM's rule) or
            ``priority`` (running requests are served in order of class, then arrival, and the
            lowest-priority class is preempted first; class 0 is the highest priority).
        cpu_overhead_ms: a constant per-iteration CPU overhead, milliseconds.
        profile: a profile name or ``.npz`` path (default: ``<device>__<model>__tp<tp>``).
        prefix_caching: vLLM v1's automatic prefix caching (``scheduler=vllm_v1`` only): full KV
            blocks are cached by content (:attr:`LLMServeInstance.prefix_stream`); a new or restarted
            request reuses the longest cached prefix of its context (never its last token) and
            prefills only the rest; blocks no request holds stay cached until evicted, least recently
            freed first, when a block is needed.
        cpu_overhead_per_seq_ms: per-iteration CPU overhead per request in the batch, milliseconds.
        cpu_overhead_per_token_ms: per-iteration overhead per token in the batch, milliseconds (what
            a profile misses that scales with tokens, e.g. expert-parallel all-to-all over PCIe).
        ep: expert-parallel degree (MoE models: each rank holds ``num_experts / ep`` experts).
        moe_skew: MoE routing skew (expert popularity ~ rank^-moe_skew; 0: uniform).
        skew_alpha: decode attention of uneven KV lengths, ``t(mean) + skew_alpha (t(max) - t(mean))``.
    """

    model: str = "llama2-7b"
    device: str = "a100"
    tp: int = 1
    pp: int = 1
    scheduler: str = "vllm_v1"
    batch_cap: int | None = None
    max_tokens_in_batch: int = 4096
    chunk_size: int | None = None
    block_size: int = 16
    watermark_fraction: float | None = None
    memory_utilization: float = 0.9
    activation_reserve_gb: float = 0.0
    kv_capacity: str = "memory"
    num_blocks: int | None = None
    preemption: str = "recompute"
    cpu_overhead_ms: float = 0.0
    profile: str | None = None
    preempt_order: str = "lifo"
    prefix_caching: bool = False
    cpu_overhead_per_seq_ms: float = 0.0
    cpu_overhead_per_token_ms: float = 0.0
    ep: int = 1
    moe_skew: float = 0.0
    skew_alpha: float = 0.0

    def __post_init__(self):
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.preemption not in PREEMPTION:
            raise ValueError(f"preemption must be one of {PREEMPTION}, got {self.preemption!r}")
        if self.prefix_caching and self.scheduler != "vllm_v1":
            raise ValueError(f"prefix_caching needs scheduler='vllm_v1' (the default), got {self.scheduler!r}")
        v1 = self.scheduler == "vllm_v1"
        if v1 and self.preemption != "recompute":
            raise ValueError("scheduler vllm_v1 (the default) preempts by recompute only: set preemption='recompute', "
                             "or scheduler='vllm_v0' (or sarathi, orca) for swap preemption")
        if v1 and self.watermark_fraction:
            raise ValueError(f"scheduler vllm_v1 (the default) has no admission watermark, got watermark_fraction="
                             f"{self.watermark_fraction!r}: drop it, or set scheduler='vllm_v0'")
        # defaults that follow the scheduler (a value given explicitly is kept)
        v1_seqs, v1_tokens = vllm_v1_batch_defaults(self.device) if v1 else (256, 2048)
        for key, v1_default, other in (("batch_cap", v1_seqs, 128), ("chunk_size", v1_tokens, 512),
                                       ("watermark_fraction", 0.0, 0.01)):
            if getattr(self, key) is None:
                object.__setattr__(self, key, v1_default if v1 else other)
        if self.preempt_order not in PREEMPT_ORDER:
            raise ValueError(f"preempt_order must be one of {PREEMPT_ORDER}, got {self.preempt_order!r}")
        if self.kv_capacity not in KV_CAPACITY:
            raise ValueError(f"kv_capacity must be one of {KV_CAPACITY}, got {self.kv_capacity!r}")
        for key, (ok, valid) in _REPLICA_RANGES.items():
            value = getattr(self, key)
            if value is None and key == "num_blocks":
                continue
            if not _is_number(value) or not ok(value):
                raise InstanceFormatError("ReplicaSpec", f"{key}={value!r} is out of range (valid: {valid})")


def vllm_v1_batch_defaults(device: str) -> tuple[int, int]:
    """vLLM v1's OpenAI-server defaults ``(max_num_seqs, max_num_batched_tokens)`` for ``device``.

    As ``vllm.engine.arg_utils.EngineArgs.get_batch_defaults`` (vLLM >= 0.9): GPUs with at least
    70 GiB of memory that are not A100s (H100, H200, RTX PRO 6000, MI300X) get 1,024 sequences and
    8,192 tokens per step; every other device 256 sequences and 2,048 tokens. An unknown device gets
    the second pair, as vLLM does when it cannot query the device (the cluster then reports the
    unknown name).
    """
    from schedgym.envs.llmserve.configs import load_device

    try:
        memory_gb = load_device(device).memory_gb
    except Exception:  # noqa: BLE001 - unknown device: the cluster build names it with the fix
        return 256, 2048
    if memory_gb >= 70 and "a100" not in str(device).lower():
        return 1024, 8192
    return 256, 2048


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


#: valid ranges of the numeric ReplicaSpec fields: key -> (test, description)
_REPLICA_RANGES = {
    "tp": (lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "ep": (lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "cpu_overhead_per_seq_ms": (lambda v: v >= 0, "a number >= 0 (ms per request per iteration)"),
    "cpu_overhead_per_token_ms": (lambda v: v >= 0, "a number >= 0 (ms per token per iteration)"),
    "moe_skew": (lambda v: 0 <= v <= 4, "0 <= moe_skew <= 4 (0: uniform routing)"),
    "skew_alpha": (lambda v: 0 <= v <= 1, "0 <= skew_alpha <= 1"),
    "pp": (lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "batch_cap": (lambda v: v >= 1 and v == int(v), "an integer >= 1 (requests per batch)"),
    "max_tokens_in_batch": (lambda v: v >= 1 and v == int(v), "an integer >= 1 (tokens)"),
    "chunk_size": (lambda v: v >= 1 and v == int(v), "an integer >= 1 (tokens)"),
    "block_size": (lambda v: v >= 1 and v == int(v), "an integer >= 1 (tokens)"),
    "watermark_fraction": (lambda v: 0 <= v < 1, "0 <= watermark_fraction < 1"),
    "memory_utilization": (lambda v: 0 < v <= 1, "0 < memory_utilization <= 1"),
    "activation_reserve_gb": (lambda v: v >= 0, ">= 0 (GiB)"),
    "num_blocks": (lambda v: v >= 1 and v == int(v), "an integer >= 1 (KV blocks), or None"),
    "cpu_overhead_ms": (lambda v: v >= 0, ">= 0 (milliseconds)"),
}


@dataclass(frozen=True)
class PDSpec:
    """Prefill/decode disaggregation (as in DistServe, OSDI 2024, and Splitwise, ISCA 2024).

    Replicas ``0 .. n_prefill-1`` are prefill replicas: arrivals are routed among them, they run the
    prompt and emit the first output token. The request's KV cache (``prompt`` tokens x the model's
    KV bytes per token, all layers and KV heads) then moves over the prefill replica's link to one of
    the decode replicas ``n_prefill .. n_prefill+n_decode-1``, which generates the remaining tokens.
    The decode replica reserves the blocks for the incoming cache before the transfer starts; the
    prefill replica frees its blocks when the transfer completes. Each prefill replica has one
    outgoing link: its transfers use it one after another (FIFO), each taking ``bytes / bandwidth``
    of link time, plus ``link_latency_s`` before the data is usable on the decode side.

    Attributes:
        n_prefill: prefill replicas (the first ones of ``LLMServeInstance.replicas``).
        n_decode: decode replicas (the rest).
        link_gbps: bandwidth of each prefill replica's link, GB/s (1e9 bytes per second; the unit of
            ``DeviceConfig.pcie_gbps``). 25 GB/s is a 200 Gbit/s InfiniBand NIC.
        link_latency_s: fixed latency added to every transfer, seconds.
        decode_router: rule choosing the decode replica when a prefill completes (one of
            :data:`ROUTERS`; ``least_kv``: lowest fraction of KV blocks in use or awaited).
    """

    n_prefill: int
    n_decode: int
    link_gbps: float = 25.0
    link_latency_s: float = 1e-5
    decode_router: str = "least_kv"

    def __post_init__(self):
        if self.n_prefill < 1 or self.n_decode < 1:
            raise ValueError(f"disaggregation needs at least one prefill and one decode replica, got "
                             f"{self.n_prefill}+{self.n_decode}")
        if not self.link_gbps > 0:
            raise ValueError(f"link_gbps must be positive, got {self.link_gbps}")
        if not self.link_latency_s >= 0:
            raise ValueError(f"link latency must be >= 0, got {self.link_latency_s}")
        if self.decode_router not in ROUTERS:
            raise ValueError(f"decode_router must be one of {ROUTERS}, got {self.decode_router!r}")

    @property
    def n_replicas(self) -> int:
        return self.n_prefill + self.n_decode


@dataclass(frozen=True, eq=False)
class LLMServeInstance:
    """A serving problem: a request stream and the cluster that serves it.

    Attributes:
        name: workload name (encodes trace, rate, number of requests, seed and cluster options).
        arrival: (N,) float64 arrival times, seconds, non-decreasing.
        prompt: (N,) int64 prompt (prefill) tokens, >= 1.
        output: (N,) int64 output (decode) tokens to generate, >= 1 (hidden from policies unless revealed).
        klass: (N,) int64 SLO class of each request.
        tenant: (N,) int64 tenant of each request (for fairness).
        slo_ttft: (C,) float64 time-to-first-token SLO of each class, seconds.
        slo_tpot: (C,) float64 time-per-output-token SLO of each class, seconds.
        class_names: (C,) names of the classes.
        replicas: the cluster's replicas.
        rate: nominal arrival rate, requests per second.
        source: trace / generator description.
        meta: free-form details.
        pd: prefill/decode disaggregation of the replicas (None: every replica serves whole requests).
        prefix_stream: (N,) int64 content stream of each request's leading tokens (-1: its own), or
            None: with prefix caching, block ``b`` of request ``r`` (tokens ``b*bs .. (b+1)*bs-1``) holds
            the same content as block ``b`` of every request of the same stream while ``(b+1)*bs <=
            prefix_shared[r]`` (:func:`block_key`), e.g. a conversation's turns or a tenant's system prompt.
        prefix_shared: (N,) int64 tokens of the request's context shared with its stream (the rest
            is its own), or None.
    """

    name: str
    arrival: np.ndarray  # (N,) float64
    prompt: np.ndarray  # (N,) int64
    output: np.ndarray  # (N,) int64
    klass: np.ndarray  # (N,) int64
    tenant: np.ndarray  # (N,) int64
    slo_ttft: np.ndarray  # (C,) float64
    slo_tpot: np.ndarray  # (C,) float64
    class_names: tuple[str, ...] = ("default",)
    replicas: tuple[ReplicaSpec, ...] = (ReplicaSpec(),)
    rate: float = 0.0
    source: str = ""
    meta: dict = field(default_factory=dict)
    pd: PDSpec | None = None
    prefix_stream: np.ndarray | None = None
    prefix_shared: np.ndarray | None = None

    def __post_init__(self):
        if (self.prefix_stream is None) != (self.prefix_shared is None):
            raise ValueError("prefix_stream and prefix_shared go together (both arrays or both None)")
        if self.prefix_stream is not None and (len(self.prefix_stream) != len(self.arrival)
                                               or len(self.prefix_shared) != len(self.arrival)):
            raise ValueError("prefix_stream / prefix_shared need one entry per request")
        if self.pd is not None and self.pd.n_replicas != len(self.replicas):
            raise ValueError(f"pd={self.pd.n_prefill}+{self.pd.n_decode} needs {self.pd.n_replicas} replicas, "
                             f"the instance has {len(self.replicas)}")

    @property
    def n_requests(self) -> int:
        return int(self.arrival.shape[0])

    @property
    def n_replicas(self) -> int:
        return len(self.replicas)

    @property
    def n_tenants(self) -> int:
        return int(self.tenant.max(initial=-1)) + 1

    def with_replicas(self, replicas: tuple[ReplicaSpec, ...]) -> LLMServeInstance:
        return replace(self, replicas=tuple(replicas))

    def window(self, start: int, count: int) -> LLMServeInstance:
        """Requests ``start .. start+count-1`` with arrival times shifted to start at 0."""
        s = slice(start, start + count)
        a = self.arrival[s]
        a = a - (a[0] if len(a) else 0.0)
        pfx = {} if self.prefix_stream is None else {"prefix_stream": self.prefix_stream[s],
                                                      "prefix_shared": self.prefix_shared[s]}
        return replace(self, name=f"{self.name}[{start}:{start + count}]", arrival=a, prompt=self.prompt[s],
                       output=self.output[s], klass=self.klass[s], tenant=self.tenant[s], **pfx)


@dataclass
class LLMServeSolution:
    """The complete trace of one simulation: per-request outcomes and the iteration log.

    Attributes:
        replica: (N,) int64 replica each request was routed to (-1: rejected by admission control).
        rejected: (N,) bool request not served: longer than the replica's KV capacity or model
            length, or rejected by admission control (``shed``).
        first_token: (N,) float64 time the first output token was produced, seconds (nan if rejected).
        completion: (N,) float64 time the last output token was produced, seconds (nan if rejected).
        first_scheduled: (N,) float64 start of the first iteration that processed the request.
        preemptions: (N,) int64 times the request was preempted.
        it_replica: (I,) int64 replica of each iteration.
        it_start, it_end: (I,) float64 iteration start and end times, seconds.
        it_ptr: (I+1,) int64 CSR pointers into it_req/it_tokens.
        it_req: (T,) int64 requests processed in each iteration.
        it_tokens: (T,) int64 tokens processed for that request (prefill chunk, or 1 for a decode).
        it_swap_blocks: (I,) int64 KV blocks copied over the host link (swap out and in) when the
            iteration's batch was formed; their copy time (blocks x block bytes / ``pcie_gbps``) is
            part of the iteration's duration. None: no swap recorded (taken as 0).
        hit_req, hit_time, hit_tokens: (H,) prefix-cache hits: request, time (its admission), tokens
            of its context found cached (whole blocks) and not prefilled.
        ev_req, ev_time, ev_kind: (E,) preemption events: kind 0 = restart (KV dropped, recompute),
            1 = swap out (KV to host), 2 = swap in (KV back).
        num_blocks: (R,) int64 KV blocks of each replica.
        block_size: tokens per block.
        kv_peak_blocks: (R,) int64 most blocks the simulator held at once (its own accounting).
        status: ``feasible``.
        decode_replica: (N,) int64 decode replica of each request under disaggregation (-1: none:
            colocated cluster, rejected, or a one-token output finished on its prefill replica);
            ``replica`` is then the prefill replica.
        tx_req, tx_src, tx_dst: (X,) int64 KV transfers: request, prefill (source) and decode
            (destination) replica.
        tx_tokens: (X,) int64 tokens of KV cache moved.
        tx_bytes: (X,) float64 bytes moved.
        tx_ready: (X,) float64 time the prefill finished (first token), seconds.
        tx_start: (X,) float64 time the transfer started on the link (decode blocks reserved), seconds.
        tx_end: (X,) float64 time the KV cache is usable on the decode replica, seconds.
        shed: (N,) bool rejected by an admission decision (a subset of ``rejected``); None: the run
            had no admission control (every arrival admitted).
        adm_req, adm_time, adm_kind: (D,) admission decisions in the order taken: request, time
            (seconds), kind 0 = admit, 1 = defer, 2 = reject, 3 = expire (rejected at its deferral
            deadline). Empty without admission control.
        adm_deadline: (D,) float64 deadline of each defer decision, seconds (nan for the other kinds).
    """

    replica: np.ndarray
    rejected: np.ndarray
    first_token: np.ndarray
    completion: np.ndarray
    first_scheduled: np.ndarray
    preemptions: np.ndarray
    it_replica: np.ndarray
    it_start: np.ndarray
    it_end: np.ndarray
    it_ptr: np.ndarray
    it_req: np.ndarray
    it_tokens: np.ndarray
    ev_req: np.ndarray
    ev_time: np.ndarray
    ev_kind: np.ndarray
    num_blocks: np.ndarray
    block_size: int = 16
    kv_peak_blocks: np.ndarray | None = None
    status: str = "feasible"
    bound: float | None = None
    it_swap_blocks: np.ndarray | None = None
    decode_replica: np.ndarray | None = None
    tx_req: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tx_src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tx_dst: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tx_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tx_bytes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tx_ready: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tx_start: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tx_end: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shed: np.ndarray | None = None
    hit_req: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    hit_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hit_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    adm_req: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    adm_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    adm_kind: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    adm_deadline: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_transfers(self) -> int:
        return int(self.tx_req.shape[0])

    @property
    def n_iterations(self) -> int:
        return int(self.it_start.shape[0])


def block_key(rid: int, b: int, stream: int, shared_tokens: int, block_size: int) -> tuple[int, int]:
    """Content identity of KV block ``b`` of request ``rid`` (see :attr:`LLMServeInstance.prefix_stream`):
    ``(stream, b)`` for a block within the shared tokens of a stream, else ``(-1 - rid, b)``."""
    if stream >= 0 and (b + 1) * block_size <= shared_tokens:
        return (stream, b)
    return (-1 - rid, b)
