"""Overload scenarios: the admission baselines hold goodput past the capacity knee (issue 13's bars),
the overload workload set parses, and the goodput-against-load plot draws one figure per set."""

from __future__ import annotations

import numpy as np
import pytest

from schedgym.baselines.llm_admission import make_rule
from schedgym.envs.llmserve.metrics import metrics
from schedgym.envs.llmserve.sim import simulate
from schedgym.envs.llmserve.validate import validate
from schedgym.envs.llmserve.workload import build_workload

KNEE = 22.1  # req/s on 4 replicas, vllm_v1 (scripts/bench_llmserve.py --only-overload; conf/workload/azure_conv_overload.yaml)
SETUP = "azure_conv:rate={rate}:n={n}:replicas=4:ttft=0.5:tpot=0.05:seed={seed}"


def _goodput(rate: float, rule: str | None, n: int = 1000, seed: int = 0, router: str = "least_outstanding") -> float:
    inst = build_workload(SETUP.format(rate=rate, n=n, seed=seed))
    sol = simulate(inst, router=router, admission=make_rule(rule) if rule else None)
    validate(inst, sol)
    return metrics(inst, sol, tbt=False)["goodput_rps"]


def test_slo_admission_holds_goodput_at_twice_the_knee():
    fcfs = _goodput(2 * KNEE, None, router="round_robin")
    slo = _goodput(2 * KNEE, "slo")
    assert slo > 3 * fcfs


def test_overload_workload_set_spans_one_to_two_knees():
    from pathlib import Path

    from omegaconf import OmegaConf

    from schedgym.conf import __file__ as conf_init

    cfg = OmegaConf.load(Path(conf_init).parent / "workload" / "azure_conv_overload.yaml")
    rates = [build_workload(s).rate for s in cfg.spec]
    np.testing.assert_allclose(np.array(rates) / KNEE, [1.0, 1.25, 1.5, 1.75, 2.0])


@pytest.mark.slow
def test_goodput_bars_under_overload():
    """At 1.5x the knee the best admission rule keeps >= 80 % of the peak goodput, at 2x >= 70 %
    (peak: the best goodput of any policy at 0.5x .. 2x the knee; seed 0, 1,000 requests)."""
    mults = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    table = {rule: [_goodput(KNEE * m, rule) for m in mults] for rule in (None, "slo", "kv", "queue_len")}
    table["fcfs"] = [_goodput(KNEE * m, None, router="round_robin") for m in mults]
    peak = max(max(v) for v in table.values())
    best = {m: max(table[r][mults.index(m)] for r in ("slo", "kv", "queue_len")) for m in (1.5, 2.0)}
    assert best[1.5] >= 0.8 * peak and best[2.0] >= 0.7 * peak
    assert table["fcfs"][mults.index(1.5)] < 0.8 * peak  # the bars are not met without admission


def test_goodput_plot_one_figure_per_workload_set(tmp_path):
    from schedgym.evaluation.plots import llmserve_goodput_vs_load

    rows = []
    for iset, rates in (("azure_conv_load", (10, 14)), ("azure_conv_overload", (22.1, 33.15, 44.2))):
        for rate in rates:
            for policy, g in (("llm_fcfs", 10.0 / rate), ("adm_slo", rate / 2)):
                rows.append({"domain": "llmserve", "instance_set": iset, "policy": policy,
                             "instance": SETUP.format(rate=rate, n=10, seed=0), "metrics": {"goodput_rps": g}})
    paths = llmserve_goodput_vs_load(rows, [], tmp_path)
    assert sorted(p.name for p in paths) == ["llmserve_goodput_vs_load.png",
                                             "llmserve_goodput_vs_load_azure_conv_overload.png"]
    assert all(p.stat().st_size > 0 for p in paths)
