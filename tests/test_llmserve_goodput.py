"""Goodput divides by the arrival span: shedding requests cannot raise it by ending the run earlier
(issue 13: a learned policy that rejected every batch request scored a higher goodput, computed over
first arrival to last completion, while serving fewer requests within their SLOs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from schedgym.envs.llmserve.env import slo_metrics
from schedgym.envs.llmserve.metrics import completion_span_s, goodput_span_s, metrics
from schedgym.envs.llmserve.sim import ADMIT, REJECT, Simulator
from schedgym.envs.llmserve.validate import validate
from schedgym.envs.llmserve.workload import build_workload

#: light load (well under the 22.1 req/s knee): every request admitted meets its SLO
SINGLE = "azure_conv:rate=12:n=40:replicas=4:ttft=0.5:tpot=0.05:scheduler=vllm_v1:seed=3"
MIXED = "azure_conv:rate=6:n=60:replicas=4:ttft=0.5:tpot=0.05:batch_share=0.2:scheduler=vllm_v1:seed=3"


def _run(inst, admission):
    sol = Simulator(inst, router="least_outstanding", admission=admission).run()
    validate(inst, sol)
    return sol


def test_shedding_long_requests_does_not_raise_goodput():
    """A policy that rejects the requests that would still be decoding well after the last arrival
    (about 30 ms per output token) ends the run much earlier: over the completion span it scored the
    higher goodput while meeting fewer SLOs; over the arrival span it cannot."""
    inst = build_workload(SINGLE)
    last = float(inst.arrival.max())
    serve_all = _run(inst, lambda sim, rid, k: ADMIT)
    shed_long = _run(inst, lambda sim, rid, k: REJECT if inst.arrival[rid] + 0.03 * inst.output[rid] > last + 1.0
                     else ADMIT)
    a, b = metrics(inst, serve_all, tbt=False), metrics(inst, shed_long, tbt=False)
    assert a["slo_attainment"] == 1.0 and b["slo_attainment"] < 0.6 and b["rejected_rate"] > 0.4
    old_a = a["slo_attainment"] * inst.n_requests / completion_span_s(inst, serve_all)
    old_b = b["slo_attainment"] * inst.n_requests / completion_span_s(inst, shed_long)
    assert old_b > old_a  # the flaw: the old definition preferred shedding
    assert a["goodput_rps"] > 2 * b["goodput_rps"]
    span = float(inst.arrival.max() - inst.arrival.min())
    for m in (a, b):
        assert goodput_span_s(inst, serve_all) == pytest.approx(span)
        assert m["goodput_rps"] == pytest.approx(m["slo_attainment"] * inst.n_requests / span)
    # throughput stays a processing rate over the completion span
    assert a["throughput_rps"] == pytest.approx(inst.n_requests / completion_span_s(inst, serve_all))
    assert a["token_throughput_tps"] == pytest.approx(inst.output.sum() / completion_span_s(inst, serve_all))


@pytest.fixture(scope="module")
def served_and_shed():
    inst = build_workload(MIXED)
    batch = inst.class_names.index("batch")
    serve_all = _run(inst, lambda sim, rid, k: ADMIT)
    shed_batch = _run(inst, lambda sim, rid, k: REJECT if inst.klass[rid] == batch else ADMIT)
    return inst, serve_all, shed_batch


def test_class_goodputs_add_up_over_the_arrival_span(served_and_shed):
    inst, serve_all, shed_batch = served_and_shed
    span = float(inst.arrival.max() - inst.arrival.min())
    for sol in (serve_all, shed_batch):
        m = metrics(inst, sol, tbt=False)
        assert m["goodput_rps"] == pytest.approx(m["goodput_rps_interactive"] + m["goodput_rps_batch"])
        k = inst.klass == inst.class_names.index("batch")
        assert m["goodput_rps_batch"] == pytest.approx(m["slo_attainment_batch"] * k.sum() / span)


def test_slo_metrics_agree_with_metrics(served_and_shed):
    inst, serve_all, shed_batch = served_and_shed
    for sol in (serve_all, shed_batch):
        full, fast = metrics(inst, sol, tbt=False), slo_metrics(inst, sol)
        assert fast.keys() <= full.keys()
        for key, v in fast.items():
            assert v == pytest.approx(full[key]), key


def test_goodput_span_falls_back_for_simultaneous_arrivals(served_and_shed):
    """Every request arriving at once (an offline batch: no offered rate): the completion span."""
    inst, serve_all, _ = served_and_shed
    batch = dataclasses.replace(inst, arrival=np.full_like(inst.arrival, inst.arrival[0]))
    assert completion_span_s(batch, serve_all) > 0
    assert goodput_span_s(batch, serve_all) == pytest.approx(completion_span_s(batch, serve_all))
    none = dataclasses.replace(serve_all, rejected=np.ones_like(serve_all.rejected))
    assert goodput_span_s(batch, none) == 0.0 and completion_span_s(batch, none) == 0.0
