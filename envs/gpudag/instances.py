"""Loading GPU-DAG instances by name or file, and expanding workload specs.

Generated workloads have names that encode the generator, its parameters and the seed, so that
:func:`load_instance` regenerates them deterministically (``numpy.random.default_rng(seed)``):

==========================================================================  ====================================
name                                                                        workload
==========================================================================  ====================================
``topcuoglu-example``                                                       the paper's 10-task example
``topcuoglu-v50-ccr1-a1-b0.5[-o3][-p4][-w50]-s3``                           :class:`TopcuogluGenerator`
``transformer-llama2_7b-L2-mb4-t512[r]-inference-ch100x2_a100x2_a40x2-s0``  :class:`TransformerGenerator`
``cholesky-T5-c4g2[-n0.1]-s0`` (also ``lu-``, ``qr-``)                      :class:`TileDagGenerator`
``online-<any of the above without -sN>-j10-load0.7-s0``                    :class:`OnlineGenerator`
==========================================================================  ====================================

In a workload spec a seed range ``-s0..9`` expands to ten names. A path ending in ``.json`` loads a
file in the format of :func:`read_json` (write one with :func:`write_json`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from schedgym.envs.core.errors import InstanceFormatError, UnknownNameError
from schedgym.envs.gpudag.generator import (
    OnlineGenerator,
    TileDagGenerator,
    TopcuogluGenerator,
    TransformerGenerator,
    topcuoglu_example,
)
from schedgym.envs.gpudag.types import GPUDagInstance

FAMILIES = ("topcuoglu", "transformer", "cholesky", "lu", "qr", "online")
EXAMPLES = {"topcuoglu-example": topcuoglu_example}
_TOKEN = re.compile(r"^([A-Za-z]+)([0-9.]+)$")
_NAME_HELP = ("use e.g. 'topcuoglu-v50-ccr1-a1-b0.5-s0', 'transformer-llama2_7b-L2-mb4-t512-inference-"
              "ch100x2_a100x2_a40x2-s0', 'cholesky-T5-c4g2-s0' or 'online-topcuoglu-v20-ccr1-a1-b0.5-j10-load0.7-s0'")


def _kv(tokens: list[str], name: str) -> dict[str, str]:
    out = {}
    for tok in tokens:
        m = _TOKEN.match(tok)
        if not m:
            raise InstanceFormatError(name, f"cannot read the part {tok!r} of the workload name", fix=_NAME_HELP)
        out[m.group(1)] = m.group(2)
    return out


def generator_of(name: str) -> tuple[Any, int]:
    """(generator, seed) that a generated instance name encodes."""
    tokens = name.split("-")
    fam = tokens[0]
    if fam not in FAMILIES or len(tokens) < 2 or not tokens[-1].startswith("s") or not tokens[-1][1:].isdigit():
        raise UnknownNameError("GPU-DAG workload", name, list(EXAMPLES) + [
            "topcuoglu-v50-ccr1-a1-b0.5-s0", "cholesky-T5-c4g2-s0", "transformer-llama2_7b-L2-mb4-t512-inference-"
            "ch100x2_a100x2_a40x2-s0", "online-topcuoglu-v20-ccr1-a1-b0.5-j10-load0.7-s0"])
    seed = int(tokens[-1][1:])
    body = tokens[1:-1]
    try:
        if fam == "online":
            kv = _kv(body[-2:], name)
            base, _ = generator_of("-".join(body[:-2]) + f"-s{seed}")
            return OnlineGenerator(base, n_jobs=int(kv["j"]), load=float(kv["load"])), seed
        if fam == "topcuoglu":
            kv = _kv(body, name)
            return TopcuogluGenerator(n_tasks=int(kv["v"]), ccr=float(kv["ccr"]), alpha=float(kv["a"]),
                                      beta=float(kv["b"]), max_out_degree=int(kv.get("o", 3)),
                                      n_procs=int(kv.get("p", 4)), w_dag=float(kv.get("w", 50))), seed
        if fam == "transformer":
            model, rest = body[0], body[1:]
            mode = next((t for t in rest if t in ("inference", "training")), "inference")
            cluster = next((t[1:] for t in rest if t.startswith("c") and "x" in t), "h100x2_a100x2_a40x2")
            kv = _kv([t for t in rest if t not in (mode, "c" + cluster) and not t.endswith("r")], name)
            rnd = [t for t in rest if t.startswith("t") and t.endswith("r")]
            tokens_ = int(rnd[0][1:-1]) if rnd else int(kv.get("t", 512))
            return TransformerGenerator(model=model, n_layers=int(kv.get("L", kv.get("l", 2))),
                                        n_microbatches=int(kv.get("mb", 4)), tokens=tokens_, mode=mode,
                                        cluster=cluster, random_tokens=bool(rnd)), seed
        # tile factorisations
        plat = next((t for t in body if re.match(r"^c\d+g\d+$", t)), "c4g2")
        cpus, gpus = (int(x) for x in re.findall(r"\d+", plat))
        kv = _kv([t for t in body if t != plat], name)
        return TileDagGenerator(kind=fam, n_tiles=int(kv.get("T", 5)), n_cpus=cpus, n_gpus=gpus,
                                noise=float(kv.get("n", 0.0))), seed
    except KeyError as exc:
        raise InstanceFormatError(name, f"the workload name lacks the parameter {exc.args[0]!r}", fix=_NAME_HELP) from exc
    except ValueError as exc:
        if isinstance(exc, InstanceFormatError):
            raise
        raise InstanceFormatError(name, str(exc), fix=_NAME_HELP) from exc


def generate(name: str) -> GPUDagInstance:
    """Regenerate the instance a generated name encodes (deterministic)."""
    gen, seed = generator_of(name)
    return gen(np.random.default_rng(seed), name=name)


def load_instance(spec: str | Path | GPUDagInstance) -> GPUDagInstance:
    """An instance from an object, a bundled example, a generated name or a ``.json`` file path."""
    if isinstance(spec, GPUDagInstance):
        return spec
    s = str(spec)
    if s in EXAMPLES:
        return EXAMPLES[s]()
    if s.endswith(".json") or Path(s).is_file():
        return read_json(s)
    return generate(s)


def resolve_workload(spec: str | list[str]) -> list[str]:
    """Expand names with seed ranges (``-s0..9``) into instance names; check that each one loads."""
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        item = str(item)
        m = re.match(r"^(.*)-s(\d+)\.\.(\d+)$", item)
        names = [f"{m.group(1)}-s{k}" for k in range(int(m.group(2)), int(m.group(3)) + 1)] if m else [item]
        for n in names:
            if n not in EXAMPLES and not Path(n).is_file():
                generator_of(n)  # raises on a malformed name
            out.append(n)
    return out


# ----------------------------------------------------------------------------------------------
# JSON files
# ----------------------------------------------------------------------------------------------
def write_json(instance: GPUDagInstance, path: str | Path) -> None:
    """Write ``instance`` in the JSON format :func:`read_json` reads."""
    names = list(instance.type_names or [f"type{k}" for k in range(instance.n_types)])
    doc = {
        "name": instance.name, "time_unit": instance.time_unit, "device_types": names,
        "devices": [{"type": names[int(k)], "node": int(n)} for k, n in zip(instance.device_type, instance.device_node, strict=False)],
        "links": {"latency": instance.link_latency.tolist(),
                  "bandwidth": [[None if not np.isfinite(x) else float(x) for x in row] for row in instance.link_bandwidth]},
        "jobs": [{"arrival": float(a)} for a in instance.job_arrival],
        "tasks": [{"times": {names[k]: float(instance.exec_time[t, k]) for k in range(instance.n_types)
                             if instance.eligible[t, k]}, "job": int(instance.task_job[t])}
                  for t in range(instance.n_tasks)],
        "edges": [[int(a), int(b), float(x)] for a, b, x in zip(instance.edge_src, instance.edge_dst, instance.edge_data, strict=False)],
    }
    Path(path).write_text(json.dumps(doc, indent=1))


def read_json(path: str | Path) -> GPUDagInstance:
    """Read an instance file.

    Format: ``{"name", "time_unit", "device_types": [..], "devices": [{"type", "node"}], "links":
    {"latency": DxD, "bandwidth": DxD (null = free)} (optional: latency 0, bandwidth 1), "jobs":
    [{"arrival"}] (optional: one job at 0), "tasks": [{"times": {type: time}, "job"}], "edges": [[src,
    dst, data], ...]}``; a type missing from a task's ``times`` cannot run it.
    """
    p = Path(path)
    src = str(p)
    if not p.is_file():
        raise InstanceFormatError(src, "file not found", fix="give an existing .json file or a workload name")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InstanceFormatError(src, f"invalid JSON: {exc.msg}", line=exc.lineno) from exc

    def need(obj: dict, key: str, where: str):
        if not isinstance(obj, dict) or key not in obj:
            raise InstanceFormatError(src, f"missing field {where}{key}")
        return obj[key]

    types = need(doc, "device_types", "")
    if not isinstance(types, list) or not types:
        raise InstanceFormatError(src, "device_types must be a non-empty list of names")
    tindex = {str(t): k for k, t in enumerate(types)}
    devs = need(doc, "devices", "")
    dtype, dnode = [], []
    for i, d in enumerate(devs):
        t = str(need(d, "type", f"devices[{i}]."))
        if t not in tindex:
            raise InstanceFormatError(src, f"devices[{i}].type {t!r} is not in device_types {types}")
        dtype.append(tindex[t])
        dnode.append(int(d.get("node", 0)))
    D = len(dtype)
    links = doc.get("links", {})
    lat = np.asarray(links.get("latency", np.zeros((D, D))), dtype=np.float64)
    bw_raw = links.get("bandwidth", np.ones((D, D)).tolist())
    try:
        bw = np.array([[np.inf if x is None else float(x) for x in row] for row in bw_raw], dtype=np.float64)
    except TypeError as exc:
        raise InstanceFormatError(src, "links.bandwidth must be a devices x devices matrix") from exc
    tasks = need(doc, "tasks", "")
    T = len(tasks)
    w = np.zeros((T, len(types)))
    el = np.zeros((T, len(types)), dtype=bool)
    job = np.zeros(T, np.int64)
    for t, task in enumerate(tasks):
        times = need(task, "times", f"tasks[{t}].")
        if not isinstance(times, dict):
            raise InstanceFormatError(src, f"tasks[{t}].times must map device type names to times")
        for k, v in times.items():
            if k not in tindex:
                raise InstanceFormatError(src, f"tasks[{t}].times names unknown device type {k!r}", fix=f"use {types}")
            try:
                w[t, tindex[k]] = float(v)
            except (TypeError, ValueError) as exc:
                raise InstanceFormatError(src, f"tasks[{t}].times.{k} is not a number: {v!r}") from exc
            el[t, tindex[k]] = True
        job[t] = int(task.get("job", 0))
    edges = need(doc, "edges", "")
    e = np.zeros((len(edges), 3))
    for i, ed in enumerate(edges):
        if isinstance(ed, dict):
            ed = [need(ed, "src", f"edges[{i}]."), need(ed, "dst", f"edges[{i}]."), ed.get("data", 0.0)]
        if not isinstance(ed, (list, tuple)) or len(ed) != 3:
            raise InstanceFormatError(src, f"edges[{i}] must be [src, dst, data]")
        e[i] = [float(x) for x in ed]
    jobs = doc.get("jobs", [{"arrival": 0.0}])
    arr = np.array([float(need(j, "arrival", f"jobs[{i}].")) for i, j in enumerate(jobs)], np.float64)
    try:
        return GPUDagInstance(
            name=str(doc.get("name", p.stem)), exec_time=w, eligible=el, edge_src=e[:, 0].astype(np.int64),
            edge_dst=e[:, 1].astype(np.int64), edge_data=e[:, 2], device_type=np.array(dtype, np.int64),
            device_node=np.array(dnode, np.int64), link_latency=lat, link_bandwidth=bw, task_job=job,
            job_arrival=arr, type_names=tuple(str(t) for t in types), time_unit=str(doc.get("time_unit", "unit")),
            source=src)
    except InstanceFormatError as exc:
        raise InstanceFormatError(src, exc.problem, fix="fix the field named above") from exc
