"""Reference figures of a local Vidur run (``envs/data/llmserve/vidur_reference.json``) and the same
figures computed from one of our solutions, for the fidelity test and ``scripts/bench_llmserve.py``.

The file holds, per setting, the workload name that rebuilds Vidur's inputs here, the command Vidur
was run with, its commit, and its figures (seconds; TPOT as Vidur defines it, see the file).
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np

from schedgym.envs.core.errors import InstanceFormatError
from schedgym.envs.llmserve.configs import DATA_DIR
from schedgym.envs.llmserve.types import LLMServeInstance, LLMServeSolution

VIDUR_REFERENCE = DATA_DIR / "vidur_reference.json"
#: the metrics the reference file gives for every setting
FIDELITY_METRICS = ("ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s",
                    "throughput_rps")


@cache
def vidur_reference() -> dict:
    """The parsed reference file; raises :class:`InstanceFormatError` naming the file and key when a
    setting lacks its workload, command or one of :data:`FIDELITY_METRICS`."""
    src = str(VIDUR_REFERENCE)
    try:
        data = json.loads(VIDUR_REFERENCE.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InstanceFormatError(src, f"not a readable JSON file: {exc}") from exc
    for key in ("vidur_commit", "settings"):
        if key not in data:
            raise InstanceFormatError(src, f"missing key {key!r}")
    for name, s in data["settings"].items():
        missing = [k for k in ("workload", "command", "metrics") if k not in s]
        missing += [f"metrics.{m}" for m in FIDELITY_METRICS if m not in s.get("metrics", {})]
        if missing:
            raise InstanceFormatError(src, f"setting {name!r} lacks {missing}")
    return data


def vidur_citation() -> str:
    """How to cite the figures: a local run of Vidur, never the paper."""
    return (f"local run of Vidur (microsoft/vidur) at commit {vidur_reference()['vidur_commit']} with the same "
            f"inputs (envs/data/llmserve/vidur_reference.json)")


def fidelity_figures(instance: LLMServeInstance, solution: LLMServeSolution) -> dict[str, float]:
    """Our figures under Vidur's definitions (:data:`FIDELITY_METRICS`): TTFT percentiles, TPOT as
    (completion - first token) / output tokens, throughput as requests / last completion (seconds)."""
    served = ~solution.rejected
    ttft = (solution.first_token - instance.arrival)[served]
    tpot = ((solution.completion - solution.first_token) / instance.output)[served]
    out = {f"ttft_p{q}_s": float(np.percentile(ttft, q)) for q in (50, 90, 99)}
    out.update({f"tpot_p{q}_s": float(np.percentile(tpot, q)) for q in (50, 90, 99)})
    out["throughput_rps"] = float(instance.n_requests / np.max(solution.completion[served]))
    return out
