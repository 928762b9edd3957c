"""Cluster-level pieces: KV capacity of a replica and the global routers.

Routers see the cluster through :class:`RouterView` (per-replica queued and running counts, KV
blocks in use) and return a replica index. They are used by the simulator directly and by the
routing baselines in ``baselines/llm_routing.py``.
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.core.errors import InstanceFormatError
from schedgym.envs.llmserve.configs import DATA_DIR, load_device, load_model
from schedgym.envs.llmserve.types import ROUTERS, ReplicaSpec

GIB = 1024 ** 3
__all__ = ["ROUTERS", "Router", "RouterView", "kv_capacity_blocks"]


def kv_capacity_blocks(spec: ReplicaSpec, max_request_tokens: int | None = None) -> int:
    """KV-cache blocks of one replica (per device: every device of the replica holds its shard).

    ``memory``: (memory x utilisation - weights - activation reserve) / KV bytes per token / block size.
    ``vidur``: Vidur's planner: whole request slots of ``max_request_tokens`` tokens in
    (memory x utilisation - weights - activation reserve), times ``max_request_tokens / block_size``
    blocks per slot.
    Raises :class:`InstanceFormatError` naming the config files when the model does not fit.
    """
    if spec.num_blocks is not None:
        return int(spec.num_blocks)
    model, dev = load_model(spec.model), load_device(spec.device)
    usable = dev.memory_gb * GIB * spec.memory_utilization
    weights = model.dtype_bytes * model.params_per_device(spec.tp, spec.pp)
    if spec.kv_capacity == "vidur":
        max_len = int(max_request_tokens or model.max_model_len)
        per_req = model.kv_bytes_per_token(spec.tp, 1) * max_len
        slots = int((usable - weights - spec.activation_reserve_gb * GIB) // per_req)
        blocks = slots * spec.pp * (max_len // spec.block_size)
    else:
        free = usable - weights - spec.activation_reserve_gb * GIB
        blocks = int(free // model.kv_bytes_per_token(spec.tp, spec.pp)) // spec.block_size
    if blocks <= 0:
        raise InstanceFormatError(
            f"{DATA_DIR / 'models' / (spec.model + '.yaml')} on {DATA_DIR / 'devices' / (spec.device + '.yaml')}",
            f"model {spec.model} ({weights / GIB:.1f} GiB of weights per device at tp={spec.tp}, pp={spec.pp}) "
            f"leaves no room for a KV cache in {dev.memory_gb} GiB x {spec.memory_utilization}",
            fix="raise tp or pp, use a larger device, or lower activation_reserve_gb")
    return blocks


class RouterView:
    """What a router may read: per-replica load, updated by the simulator.

    Attributes:
        queued: (R,) requests waiting (not yet admitted, including preempted ones).
        running: (R,) requests admitted (holding KV or swapped out).
        kv_used: (R,) KV blocks in use.
        kv_total: (R,) KV blocks of each replica.
    """

    def __init__(self, n: int, kv_total: np.ndarray):
        self.n = n
        self.queued = [0] * n
        self.running = [0] * n
        self.kv_used = [0] * n
        self.kv_total = [int(x) for x in kv_total]


class Router:
    """A global routing rule (see :data:`ROUTERS`).

    * ``round_robin``: replicas in turn.
    * ``random``: uniform.
    * ``least_outstanding``: fewest queued + running requests (Vidur's LOR counts only queued ones,
      which piles work onto one replica).
    * ``least_kv``: lowest fraction of KV blocks in use (queued prompts' blocks included).
    * ``power_of_two``: two random replicas, the one with fewer outstanding requests.
    * ``prefix_affinity``: the replica whose prefix cache holds the longest prefix of the request
      (``cached`` tokens per replica), among those whose outstanding requests are at most
      ``min + max(2, min / 4)`` (bounded by load); without cache information, least outstanding.
    Ties go to the lowest index.
    """

    def __init__(self, kind: str = "round_robin", seed: int = 0):
        if kind not in ROUTERS:
            raise ValueError(f"router must be one of {ROUTERS}, got {kind!r}")
        self.kind = kind
        self.rng = np.random.default_rng(seed)
        self._next = 0

    def __call__(self, view: RouterView, prompt: int, pending_blocks: list[int] | None = None,
                 cached: list[int] | None = None) -> int:
        n = view.n
        k = self.kind
        if k == "prefix_affinity":
            loads = [view.queued[i] + view.running[i] for i in range(n)]
            lo = min(loads)
            if not cached:
                return loads.index(lo)
            bound = lo + max(2, lo // 4)
            return min((i for i in range(n) if loads[i] <= bound), key=lambda i: (-cached[i], loads[i], i))
        if k == "round_robin":
            r = self._next % n
            self._next += 1
            return r
        if k == "random":
            return int(self.rng.integers(n))
        if k == "least_outstanding":
            loads = [view.queued[i] + view.running[i] for i in range(n)]
            return loads.index(min(loads))
        if k == "least_kv":
            pend = pending_blocks or [0] * n
            loads = [(view.kv_used[i] + pend[i]) / max(view.kv_total[i], 1) for i in range(n)]
            return loads.index(min(loads))
        a, b = (int(x) for x in self.rng.choice(n, 2, replace=False)) if n > 1 else (0, 0)
        la, lb = view.queued[a] + view.running[a], view.queued[b] + view.running[b]
        return a if (la, a) <= (lb, b) else b
