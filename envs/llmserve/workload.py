"""Request workloads: shipped traces (token lengths and arrival times), arrival processes, and
workload names that encode everything needed to rebuild an instance.

A workload name is ``<trace>:key=value:...``, for example
``azure_conv:rate=3.5:n=500:seed=0`` or ``sharegpt:rate=12:n=1000:seed=1:arrival=gamma:cv=2:replicas=4``.

Keys (defaults in brackets): ``rate`` requests/s [the trace's own rate], ``n`` requests [500],
``seed`` [0], ``arrival`` = ``poisson`` | ``gamma`` | ``trace`` | ``vidur`` (Vidur's Poisson: Python's
``random`` seeded, intervals capped at 3/rate, lengths shuffled by pandas) [poisson], ``cv`` gamma
coefficient of variation [2], ``start`` first trace row for ``arrival=trace`` [0], ``max_tokens``
cap on prompt+output [the model's length], ``ttft``/``tpot`` SLOs in seconds [per trace],
``tenants`` [1], ``replicas`` [1], ``model`` [llama2-7b], ``device`` [a100], ``tp`` [1],
``scheduler`` [vllm_v1], ``batch_cap`` [vllm_v1: 256, or 1024 on GPUs of >= 70 GiB other than A100; else 128], ``max_tokens_in_batch`` (vllm_v0)
[4096], ``chunk_size`` (the token budget of vllm_v1 and sarathi) [vllm_v1: 2048, or 8192 on GPUs of >= 70 GiB other than A100; 512 under sarathi],
``preemption`` [recompute; ``swap`` needs scheduler=vllm_v0, sarathi or orca], ``kv_capacity`` [memory].
``scheduler=vllm_v1`` (vLLM >= 0.8, with vLLM's default max_num_batched_tokens and max_num_seqs) is the
default for new workloads; ``scheduler=vllm_v0`` is the engine Vidur simulates, pinned by the Vidur
comparison (``conf/workload/vidur_fidelity_*.yaml``).

SLO classes (off unless ``batch_share`` is given): a mix of interactive requests (class 0,
``interactive``: the trace's lengths, SLOs ``ttft``/``tpot``) and batch requests (class 1, ``batch``:
lengths from ``batch_trace`` [arxiv_sum], SLOs ``batch_ttft``/``batch_tpot`` [that trace's defaults,
15 s / 0.15 s]). ``batch_share`` is the fraction of batch requests (each request is batch with that
probability, drawn from a generator of its own so the interactive requests keep their lengths and
arrival times). Example: ``azure_conv:rate=12:n=1000:replicas=4:ttft=0.5:tpot=0.05:batch_share=0.3``.
``preempt_order=priority`` makes replicas preempt the lowest-priority class first (class 0 is the
highest; the default ``lifo`` preempts the latest arrival, as vLLM).

Prefill/decode disaggregation (off unless ``pd`` is given; see :mod:`schedgym.envs.llmserve.disagg`):
``pd=<P>+<D>`` P prefill and D decode replicas (replaces ``replicas``), ``link_gbps`` bandwidth of
each prefill replica's link in GB/s (1e9 bytes/s, like ``pcie_gbps``) [25], ``link_latency_us``
per-transfer latency in microseconds [10], ``pd_router`` decode-replica rule [least_kv]. Example:
``azure_conv:rate=18:n=1000:pd=2+2:link_gbps=25:ttft=0.5:tpot=0.05``.

Shared prefixes (off unless ``prefix`` is given; turn caching on with ``prefix_caching=1``, which
needs the default ``scheduler=vllm_v1``): ``prefix=multiturn`` makes conversations of ``turns`` turns on average
(geometric) [4]: a conversation starts at each arrival of the process, its next turn ``think_s``
seconds later on average (exponential) [5], and turn ``t``'s prompt is the whole history (earlier
prompts and answers) plus the trace's prompt as the new message (a conversation restarts when the
history would pass ``max_tokens``); ``prefix=system`` prepends a system prompt of ``system_tokens``
[1024] tokens shared by all requests of a tenant (``tenants`` [4]). Example:
``sharegpt:rate=8:n=600:prefix=multiturn:replicas=4:scheduler=vllm_v1:chunk_size=2048:prefix_caching=1``.

Traces (see ``envs/data/ATTRIBUTION.md``): ``azure_conv`` (19,366 requests), ``azure_code`` (8,819),
``arxiv_sum`` (28,257, no arrival times), ``sharegpt`` (30,731, no arrival times), and
``synthetic`` (seeded lognormal lengths; keys ``prompt_mean``, ``output_mean``).
"""

from __future__ import annotations

import math
import random
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from schedgym.envs.core.errors import InstanceFormatError, UnknownNameError
from schedgym.envs.llmserve.configs import DATA_DIR, load_model
from schedgym.envs.llmserve.types import ROUTERS, LLMServeInstance, PDSpec, ReplicaSpec

TRACE_DIR = DATA_DIR / "traces"
TRACES = ("azure_conv", "azure_code", "arxiv_sum", "sharegpt")
ARRIVALS = ("poisson", "gamma", "trace", "vidur")

#: Default SLOs per trace (seconds): interactive traces use a chat SLO, summarisation DistServe's.
DEFAULT_SLO = {
    "azure_conv": (1.0, 0.1), "azure_code": (1.0, 0.1), "sharegpt": (1.0, 0.1),
    "arxiv_sum": (15.0, 0.15), "synthetic": (1.0, 0.1),
}
_INT_KEYS = {"n", "seed", "start", "max_tokens", "tenants", "replicas", "tp", "pp", "batch_cap",
             "max_tokens_in_batch", "chunk_size", "num_blocks", "prefix_caching", "system_tokens"}
_FLOAT_KEYS = {"rate", "cv", "ttft", "tpot", "prompt_mean", "output_mean", "cpu_overhead_ms", "link_gbps",
               "link_latency_us", "batch_share", "batch_ttft", "batch_tpot", "turns", "think_s"}
_STR_KEYS = {"arrival", "model", "device", "scheduler", "preemption", "kv_capacity", "pd", "pd_router", "batch_trace",
             "preempt_order", "prefix"}
PREFIX_KINDS = ("multiturn", "system")
CLASS_KEYS = ("batch_trace", "batch_ttft", "batch_tpot")
PD_KEYS = ("link_gbps", "link_latency_us", "pd_router")
REPLICA_KEYS = {"model", "device", "tp", "pp", "scheduler", "batch_cap", "max_tokens_in_batch", "chunk_size",
                "preemption", "kv_capacity", "num_blocks", "cpu_overhead_ms", "preempt_order", "prefix_caching"}


def read_trace_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrived_at seconds or empty, prompt tokens, output tokens) from a CSV with Vidur's columns
    ``arrived_at`` (optional), ``num_prefill_tokens``, ``num_decode_tokens``."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InstanceFormatError(str(path), "trace file not found", fix="check the path")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise InstanceFormatError(str(path), "the file is empty",
                                  fix="write a header arrived_at,num_prefill_tokens,num_decode_tokens and one "
                                      "row per request") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InstanceFormatError(str(path), f"not a readable CSV file: {exc}") from exc
    if len(df) == 0:
        raise InstanceFormatError(str(path), "the file has a header but no requests",
                                  fix="add one row per request (valid: at least 1 row)")
    for c in ("num_prefill_tokens", "num_decode_tokens"):
        if c not in df.columns:
            raise InstanceFormatError(str(path), f"missing column {c!r}",
                                      fix="a trace needs num_prefill_tokens and num_decode_tokens (arrived_at optional)")
    cols = ["num_prefill_tokens", "num_decode_tokens"] + (["arrived_at"] if "arrived_at" in df.columns else [])
    for c in cols:
        v = pd.to_numeric(df[c], errors="coerce")
        bad = v.isna() | (v < (0 if c == "arrived_at" else 1))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InstanceFormatError(str(path), f"column {c!r} has a negative, zero or non-numeric value "
                                                 f"({df[c].iloc[i]!r})", line=i + 2,
                                      fix="token counts must be integers >= 1 and times >= 0")
    arr = df["arrived_at"].to_numpy(np.float64) if "arrived_at" in df.columns else np.zeros(0)
    return arr, df.num_prefill_tokens.to_numpy(np.int64), df.num_decode_tokens.to_numpy(np.int64)


@lru_cache(maxsize=8)
def load_trace(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shipped trace by name, or a CSV path: (arrived_at, prompt, output)."""
    if name in TRACES:
        z = np.load(TRACE_DIR / f"{name}.npz")
        return z["arrived_at"], z["prompt"].astype(np.int64), z["output"].astype(np.int64)
    if Path(name).suffix == ".csv":
        return read_trace_csv(name)
    raise UnknownNameError("trace", name, list(TRACES) + ["synthetic"])


def cap_lengths(prompt: np.ndarray, output: np.ndarray, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Vidur's cap: if prompt + output exceeds ``max_tokens``, remove the excess from both in
    proportion (rounded up), keeping at least one token of each."""
    prompt = prompt.astype(np.int64)
    output = output.astype(np.int64)
    total = prompt + output
    diff = np.clip(total - max_tokens, 0, None)
    p = prompt - np.ceil(diff * (prompt / total)).astype(np.int64)
    o = output - np.ceil(diff * (output / total)).astype(np.int64)
    return np.clip(p, 1, None), np.clip(o, 1, None)


def poisson_arrivals(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times of a Poisson process (exponential gaps of mean 1/rate), starting after one gap."""
    return np.cumsum(rng.exponential(1.0 / rate, n))


def gamma_arrivals(n: int, rate: float, cv: float, rng: np.random.Generator) -> np.ndarray:
    """Bursty arrivals: gamma gaps with mean 1/rate and coefficient of variation ``cv``."""
    shape = 1.0 / (cv * cv)
    return np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), n))


def vidur_poisson_arrivals(n: int, rate: float, seed: int) -> np.ndarray:
    """Vidur's Poisson generator: Python ``random`` seeded with ``seed``, gaps
    ``-log(1 - U) / rate`` capped at ``3 / rate``."""
    r = random.Random(seed)
    cap = 3.0 / rate
    t, out = 0.0, np.empty(n)
    for i in range(n):
        t += min(-math.log(1.0 - r.random()) / rate, cap)
        out[i] = t
    return out


def parse_name(name: str) -> tuple[str, dict]:
    """(trace, options) of a workload name; errors name the bad key."""
    parts = str(name).split(":")
    trace, opts = parts[0], {}
    for p in parts[1:]:
        if "=" not in p:
            raise InstanceFormatError(str(name), f"option {p!r} is not key=value",
                                      fix="write e.g. azure_conv:rate=3.5:n=500:seed=0")
        k, v = p.split("=", 1)
        try:
            if k in _INT_KEYS:
                opts[k] = int(v)
            elif k in _FLOAT_KEYS:
                opts[k] = float(v)
            elif k in _STR_KEYS:
                opts[k] = v
            else:
                raise UnknownNameError("workload option", k, sorted(_INT_KEYS | _FLOAT_KEYS | _STR_KEYS))
        except ValueError as exc:
            raise InstanceFormatError(str(name), f"option {k}={v!r} is not a number", fix=str(exc)) from exc
    if opts.get("arrival", "poisson") not in ARRIVALS:
        raise UnknownNameError("arrival process", opts["arrival"], ARRIVALS)
    _check_ranges(str(name), opts)
    return trace, opts


#: valid ranges of the numeric workload options that are not ReplicaSpec fields: key -> (test, description)
_OPTION_RANGES = {
    "n": (lambda v: v >= 1, "n >= 1 (requests)"),
    "seed": (lambda v: v >= 0, "seed >= 0"),
    "start": (lambda v: v >= 0, "start >= 0 (trace row)"),
    "max_tokens": (lambda v: v >= 2, "max_tokens >= 2 (one prompt and one output token)"),
    "tenants": (lambda v: v >= 1, "tenants >= 1"),
    "replicas": (lambda v: v >= 1, "replicas >= 1"),
    "rate": (lambda v: v > 0, "a finite rate > 0 (requests per second)"),
    "cv": (lambda v: v > 0, "a finite cv > 0 (coefficient of variation of the gamma gaps)"),
    "ttft": (lambda v: v > 0, "a finite ttft > 0 (seconds)"),
    "tpot": (lambda v: v > 0, "a finite tpot > 0 (seconds)"),
    "prompt_mean": (lambda v: v >= 1, "a finite prompt_mean >= 1 (tokens)"),
    "output_mean": (lambda v: v >= 1, "a finite output_mean >= 1 (tokens)"),
    "batch_share": (lambda v: 0 <= v <= 1, "0 <= batch_share <= 1 (fraction of batch requests)"),
    "batch_ttft": (lambda v: v > 0, "a finite batch_ttft > 0 (seconds)"),
    "batch_tpot": (lambda v: v > 0, "a finite batch_tpot > 0 (seconds)"),
    "turns": (lambda v: v >= 1, "turns >= 1 (mean turns per conversation)"),
    "think_s": (lambda v: v >= 0, "think_s >= 0 (seconds between turns)"),
    "system_tokens": (lambda v: v >= 1, "system_tokens >= 1"),
    "prefix_caching": (lambda v: v in (0, 1), "prefix_caching=0 or 1"),
}


def _check_ranges(name: str, opts: dict) -> None:
    """Reject NaN/inf and out-of-range numbers, naming the option and its valid range."""
    for k, v in opts.items():
        if isinstance(v, float) and not math.isfinite(v):
            valid = _OPTION_RANGES[k][1] if k in _OPTION_RANGES else "a finite number"
            raise InstanceFormatError(name, f"option {k}={v} is not a finite number", fix=f"valid: {valid}")
        if k in _OPTION_RANGES and not _OPTION_RANGES[k][0](v):
            raise InstanceFormatError(name, f"option {k}={v} is out of range", fix=f"valid: {_OPTION_RANGES[k][1]}")


def _replica_spec(name: str, o: dict) -> ReplicaSpec:
    """The replica of a workload's options; a bad value is reported with the workload name and key."""
    try:
        kw = {k: o[k] for k in REPLICA_KEYS if k in o}
        if "prefix_caching" in kw:
            kw["prefix_caching"] = bool(kw["prefix_caching"])
        return ReplicaSpec(**kw)
    except InstanceFormatError as exc:
        raise InstanceFormatError(name, f"option {exc.problem}") from exc
    except ValueError as exc:
        raise InstanceFormatError(name, str(exc)) from exc


def parse_pd(name: str, o: dict) -> PDSpec | None:
    """The disaggregation of a workload's options (None without ``pd``); errors name the option."""
    if "pd" not in o:
        extra = [k for k in PD_KEYS if k in o]
        if extra:
            raise InstanceFormatError(str(name), f"option {extra[0]} only applies to a disaggregated cluster",
                                      fix="add pd=<prefill>+<decode>, e.g. pd=2+2")
        return None
    m = re.fullmatch(r"(\d+)\+(\d+)", o["pd"])
    if m is None or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise InstanceFormatError(str(name), f"option pd={o['pd']!r} is not <prefill replicas>+<decode replicas>",
                                  fix="e.g. pd=2+2 (two prefill and two decode replicas, each at least 1)")
    n_p, n_d = int(m.group(1)), int(m.group(2))
    if "replicas" in o and int(o["replicas"]) != n_p + n_d:
        raise InstanceFormatError(str(name), f"replicas={o['replicas']} contradicts pd={o['pd']} ({n_p + n_d} replicas)",
                                  fix="drop replicas (pd sets it)")
    gbps, lat = float(o.get("link_gbps", 25.0)), float(o.get("link_latency_us", 10.0))
    if not gbps > 0 or not lat >= 0:
        raise InstanceFormatError(str(name), f"link_gbps={gbps} must be > 0 and link_latency_us={lat} >= 0",
                                  fix="e.g. link_gbps=25:link_latency_us=10")
    router = o.get("pd_router", "least_kv")
    if router not in ROUTERS:
        raise UnknownNameError("decode router (pd_router)", router, ROUTERS)
    return PDSpec(n_p, n_d, link_gbps=gbps, link_latency_s=lat / 1e6, decode_router=router)


def build_workload(name: str) -> LLMServeInstance:
    """Build the instance a workload name describes (deterministic per name)."""
    trace, o = parse_name(name)
    n = int(o.get("n", 500))
    seed = int(o.get("seed", 0))
    arrival_kind = o.get("arrival", "poisson")
    spec = _replica_spec(name, o)
    disagg = parse_pd(name, o)
    model = load_model(spec.model)
    max_tokens = int(o.get("max_tokens", model.max_model_len))
    rng = np.random.default_rng(seed)
    if n <= 0:
        raise InstanceFormatError(name, "n must be at least 1", fix="n=500")
    if trace == "synthetic":
        pm, om = o.get("prompt_mean", 512.0), o.get("output_mean", 128.0)
        prompt = np.maximum(1, rng.lognormal(math.log(pm) - 0.5, 1.0, n)).astype(np.int64)
        output = np.maximum(1, rng.lognormal(math.log(om) - 0.5, 1.0, n)).astype(np.int64)
        t_arr = np.zeros(0)
        src = "synthetic lognormal lengths"
    else:
        t_arr, p_all, o_all = load_trace(trace)
        p_all, o_all = cap_lengths(p_all, o_all, max_tokens)
        src = f"trace {trace}"
        if arrival_kind == "trace":
            start = int(o.get("start", 0))
            if len(t_arr) == 0:
                raise InstanceFormatError(name, f"trace {trace} has no arrival times",
                                          fix="use arrival=poisson or gamma")
            idx = np.arange(start, start + n) % len(p_all)
            _check_sorted_arrivals(trace, t_arr, idx)
            prompt, output = p_all[idx], o_all[idx]
        elif arrival_kind == "vidur":
            import pandas as pd

            order = pd.DataFrame({"i": np.arange(len(p_all))}).sample(frac=1, random_state=seed)["i"].to_numpy()
            idx = order[np.arange(n) % len(order)]
            prompt, output = p_all[idx], o_all[idx]
        else:
            idx = rng.permutation(len(p_all))[np.arange(n) % len(p_all)]
            prompt, output = p_all[idx], o_all[idx]
    prompt, output = cap_lengths(prompt, output, max_tokens)
    rate = o.get("rate")
    if arrival_kind == "trace":
        a = t_arr[idx].astype(np.float64)
        a = np.maximum.accumulate(a - a[0])
        native = (n - 1) / max(a[-1], 1e-9) if n > 1 else 1.0
        if rate is not None and n > 1:
            a = a * (native / rate)
        rate = rate or native
    else:
        if rate is None:
            rate = 1.0
        if rate <= 0:
            raise InstanceFormatError(name, f"rate must be positive, got {rate}", fix="rate=3.5")
        if arrival_kind == "poisson":
            a = poisson_arrivals(n, rate, rng)
        elif arrival_kind == "gamma":
            a = gamma_arrivals(n, rate, float(o.get("cv", 2.0)), rng)
        else:
            a = vidur_poisson_arrivals(n, rate, seed)
    ttft, tpot = DEFAULT_SLO.get(trace, (1.0, 0.1))
    ttft, tpot = float(o.get("ttft", ttft)), float(o.get("tpot", tpot))
    n_ten = int(o.get("tenants", 4 if o.get("prefix") == "system" else 1))
    tenant = rng.integers(0, n_ten, n) if n_ten > 1 else np.zeros(n, np.int64)
    pfx = {}
    if "prefix" in o:
        a, prompt, output, tenant, pfx = _shared_prefixes(str(name), o, seed, a, prompt, output, tenant, max_tokens)
    else:
        extra = [k for k in ("turns", "think_s", "system_tokens") if k in o]
        if extra:
            raise InstanceFormatError(str(name), f"option {extra[0]} only applies with prefix=multiturn|system",
                                      fix="add prefix=multiturn or prefix=system")
    replicas = tuple([spec] * (disagg.n_replicas if disagg is not None else int(o.get("replicas", 1))))
    klass, slo_t, slo_p, names = np.zeros(n, np.int64), np.array([ttft]), np.array([tpot]), (trace,)
    if "batch_share" in o:
        klass, prompt, output, slo_t, slo_p, names, src = _mix_classes(name, o, seed, prompt, output, max_tokens,
                                                                       (ttft, tpot), src)
    else:
        extra = [k for k in CLASS_KEYS if k in o]
        if extra:
            raise InstanceFormatError(str(name), f"option {extra[0]} only applies to a mixed workload",
                                      fix="add batch_share=<fraction of batch requests>, e.g. batch_share=0.3")
    inst = LLMServeInstance(
        name=str(name), arrival=a.astype(np.float64), prompt=prompt.astype(np.int64), output=output.astype(np.int64),
        klass=klass, tenant=tenant.astype(np.int64), slo_ttft=slo_t,
        slo_tpot=slo_p, class_names=names, replicas=replicas, rate=float(rate), source=src,
        meta={"options": o}, pd=disagg, **pfx)
    from schedgym.envs.llmserve.sim import Simulator

    Simulator(inst)  # rejects a cluster that can serve no request of the workload, naming the option
    return inst


def _shared_prefixes(name: str, o: dict, seed: int, a: np.ndarray, prompt: np.ndarray, output: np.ndarray,
                     tenant: np.ndarray, max_tokens: int) -> tuple:
    """Multi-turn conversations or per-tenant system prompts (see the module docstring). Returns
    arrivals, prompts, outputs, tenants (sorted by arrival) and the prefix arrays."""
    kind = o["prefix"]
    if kind not in PREFIX_KINDS:
        raise UnknownNameError("prefix workload (prefix)", kind, PREFIX_KINDS)
    n = len(a)
    if kind == "system":
        sys_tok = int(o.get("system_tokens", 1024))
        if sys_tok >= max_tokens - 1:
            raise InstanceFormatError(name, f"system_tokens={sys_tok} leaves no room under max_tokens={max_tokens}",
                                      fix="lower system_tokens")
        p2, o2 = cap_lengths(prompt + sys_tok, output, max_tokens)
        return a, p2, o2, tenant, {"prefix_stream": tenant.astype(np.int64),
                                   "prefix_shared": np.full(n, sys_tok, np.int64)}
    rng = np.random.default_rng([seed, 7])
    turns, think = float(o.get("turns", 4.0)), float(o.get("think_s", 5.0))
    arr, pr, out, conv = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    i = c = 0
    while i < n:  # conversation c starts at the process's i-th arrival
        k = int(rng.geometric(1.0 / turns))
        t, hist = float(a[i]), 0
        for _ in range(k):
            if i >= n:
                break
            msg, ans = int(prompt[i]), int(output[i])
            if hist + msg + ans > max_tokens:
                break
            arr[i], pr[i], out[i], conv[i] = t, hist + msg, ans, c
            hist += msg + ans
            t += float(rng.exponential(think)) if think > 0 else 0.0
            i += 1
        else:
            c += 1
            continue
        if hist == 0 and i < n:  # a single message too long for max_tokens (cap_lengths already capped it)
            arr[i], pr[i], out[i], conv[i] = t, int(prompt[i]), int(output[i]), c
            i += 1
        c += 1
    order = np.argsort(arr, kind="stable")
    conv = conv[order]
    return (arr[order], pr[order], out[order], conv.astype(np.int64) % max(int(o.get("tenants", 1)), 1),
            {"prefix_stream": conv, "prefix_shared": (pr + out)[order]})


def _mix_classes(name: str, o: dict, seed: int, prompt: np.ndarray, output: np.ndarray, max_tokens: int,
                 slo: tuple[float, float], src: str):
    """Interactive (class 0) and batch (class 1) requests of a mixed workload (see the module
    docstring): (klass, prompt, output, slo_ttft, slo_tpot, class_names, source)."""
    bt = o.get("batch_trace", "arxiv_sum")
    if bt not in TRACES and Path(bt).suffix != ".csv":
        raise UnknownNameError("batch trace (batch_trace)", bt, list(TRACES))
    d_ttft, d_tpot = DEFAULT_SLO.get(bt, (15.0, 0.15))
    b_ttft, b_tpot = float(o.get("batch_ttft", d_ttft)), float(o.get("batch_tpot", d_tpot))
    n = len(prompt)
    rng = np.random.default_rng([seed, 0xC1A55])  # its own stream: the interactive requests are unchanged
    is_batch = rng.random(n) < float(o["batch_share"])
    _, bp, bo = load_trace(bt)
    bp, bo = cap_lengths(bp, bo, max_tokens)
    pick = rng.integers(0, len(bp), int(is_batch.sum()))
    prompt, output = prompt.copy(), output.copy()
    prompt[is_batch], output[is_batch] = bp[pick], bo[pick]
    return (is_batch.astype(np.int64), prompt, output, np.array([slo[0], b_ttft]), np.array([slo[1], b_tpot]),
            ("interactive", "batch"), f"{src} + batch requests from {bt} ({o['batch_share']:.0%})")


def _check_sorted_arrivals(trace: str, t_arr: np.ndarray, idx: np.ndarray) -> None:
    """``arrival=trace`` replays the ``arrived_at`` column: it must not decrease over the rows used."""
    bad = np.flatnonzero((np.diff(t_arr[idx]) < 0) & (np.diff(idx) == 1))  # not at a wrap to row 0
    if len(bad):
        i = int(idx[bad[0] + 1])
        csv = Path(trace).suffix == ".csv"
        source = trace if csv else str(TRACE_DIR / f"{trace}.npz")
        raise InstanceFormatError(source, f"column 'arrived_at' decreases at row {i} ({t_arr[i]!r} after "
                                          f"{t_arr[i - 1]!r}); arrival=trace needs arrival times in order",
                                  line=i + 2 if csv else None,
                                  fix="sort the rows by arrived_at (valid: non-decreasing)")


def make_instance(arrival, prompt, output, replicas=(ReplicaSpec(),), slo_ttft: float = 1.0, slo_tpot: float = 0.1,
                  tenant=None, name: str = "custom", pd: PDSpec | None = None) -> LLMServeInstance:
    """An instance from explicit arrays (tests, hand-made examples); ``pd`` disaggregates ``replicas``."""
    arrival = np.asarray(arrival, np.float64)
    n = len(arrival)
    prompt = np.asarray(prompt, np.int64)
    output = np.asarray(output, np.int64)
    if (prompt < 1).any() or (output < 1).any():
        raise InstanceFormatError(name, "prompt and output lengths must be >= 1", fix="drop empty requests")
    if not np.all(np.isfinite(arrival)) or np.any(arrival < 0):
        raise InstanceFormatError(name, "arrival times must be finite and >= 0 (seconds)", fix="drop or fix them")
    if np.any(np.diff(arrival) < 0):
        raise InstanceFormatError(name, "arrival times must be non-decreasing", fix="sort the requests")
    return LLMServeInstance(name=name, arrival=arrival, prompt=prompt, output=output, klass=np.zeros(n, np.int64),
                            tenant=np.zeros(n, np.int64) if tenant is None else np.asarray(tenant, np.int64),
                            slo_ttft=np.array([slo_ttft]), slo_tpot=np.array([slo_tpot]),
                            replicas=tuple(replicas), rate=float(n / max(arrival[-1], 1e-9)) if n else 0.0, pd=pd)
