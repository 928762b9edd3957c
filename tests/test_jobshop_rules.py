"""Dispatching rules: reference makespans, published non-delay figures, and property tests."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schedgym.baselines.dispatching import RULE_NAMES, solve_with_rule
from schedgym.envs.jobshop.generator import add_due_dates
from schedgym.envs.jobshop.instances import instance_sets, load_instance
from schedgym.envs.jobshop.metrics import metrics
from schedgym.envs.jobshop.state import JobShopState
from schedgym.envs.jobshop.types import JobShopInstance
from schedgym.envs.jobshop.validate import validate


def test_reference_makespans_ta01():
    ta01 = load_instance("ta01")
    assert solve_with_rule(ta01, "spt").makespan(ta01) == 1462
    assert solve_with_rule(ta01, "mwkr").makespan(ta01) == 1491


def _mean_gap(set_name, rule):
    gaps = []
    for n in instance_sets()[set_name]:
        inst = load_instance(n)
        s = solve_with_rule(inst, rule)
        validate(inst, s)
        gaps.append(metrics(inst, s)["gap_to_bks_pct"])
    return float(np.mean(gaps))


# Published non-delay figures (Corsini et al. 2024, self-labeling JSP), mean gap % to the best known.
# MOPNR on 20x20 (published 22.9) is left out: our non-delay MOPNR gives 21.7 and Corsini's own
# pdrs.py gives 19.8 with the current bounds, so that figure does not follow from the rule itself.
@pytest.mark.parametrize(
    "set_name, rule, published",
    [
        ("taillard_15x15", "spt", 26.1),
        ("taillard_20x20", "spt", 28.3),
        ("taillard_15x15", "mwkr", 19.1),
        ("taillard_20x20", "mwkr", 21.8),
        ("taillard_15x15", "mopnr", 20.4),
    ],
)
def test_published_non_delay_figures(set_name, rule, published):
    assert abs(_mean_gap(set_name, rule) - published) <= 1.0


@st.composite
def instances(draw):
    n_jobs = draw(st.integers(1, 5))
    n_machines = draw(st.integers(1, 4))
    flexible = draw(st.booleans())
    ops = [draw(st.integers(1, 4)) for _ in range(n_jobs)]
    job_ptr = np.concatenate([[0], np.cumsum(ops)]).astype(np.int64)
    O = int(job_ptr[-1])
    eligible = np.zeros((O, n_machines), dtype=bool)
    proc = np.zeros((O, n_machines), dtype=np.int64)
    for o in range(O):
        ms = draw(st.lists(st.integers(0, n_machines - 1), min_size=1, max_size=n_machines if flexible else 1,
                           unique=True))
        for m in ms:
            eligible[o, m] = True
            proc[o, m] = draw(st.integers(0, 20))
    release = np.array([draw(st.integers(0, 10)) for _ in range(n_jobs)], dtype=np.int64)
    inst = JobShopInstance(name="h", job_ptr=job_ptr, proc=proc, eligible=eligible, release=release)
    if draw(st.booleans()):
        inst = add_due_dates(inst, np.random.default_rng(0), 1.2)
    return inst


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inst=instances(), scheme=st.sampled_from(["active", "non_delay"]))
def test_every_rule_schedule_is_valid(inst, scheme):
    for rule in RULE_NAMES:
        sol = solve_with_rule(inst, rule, scheme=scheme, seed=0)
        validate(inst, sol)
        assert sol.makespan(inst) >= JobShopState(inst).max_lb()


@settings(max_examples=40, deadline=None)
@given(inst=instances())
def test_non_delay_schedules_have_no_avoidable_idle_time(inst):
    """In a non-delay schedule no machine idles while an operation could start on it."""
    sol = solve_with_rule(inst, "spt", scheme="non_delay")
    end = sol.end(inst)
    for o in range(inst.n_ops):
        j = inst.op_job[o]
        ready = inst.release[j] if o == inst.job_ptr[j] else end[o - 1]
        m = sol.machine[o]
        # the op starts at its ready time, or its machine is busy at every instant in [ready, start)
        if sol.start[o] > ready:
            busy = [(sol.start[p], end[p]) for p in range(inst.n_ops) if sol.machine[p] == m and p != o]
            t = ready
            for s, e in sorted(busy):
                if s <= t < e:
                    t = e
            assert t >= sol.start[o], (o, ready, t)


def test_active_scheme_left_shifts_into_gaps():
    # job0: m0 10; job1: m1 5 then m0 2. Active: job1's m0 op fits the gap before job0's op? No:
    # schedule job0 first at [0,10) on m0, then job1 op0 on m1 [0,5), job1 op1 ready at 5 -> m0 busy
    # until 10 -> appended at 10. With job0 scheduled at [5, 15) instead (release 5) the gap [0, 5)
    # on m0 takes job1's op1 at [5, 7)? (needs start >= 5): no gap; use release to create one.
    inst = JobShopInstance.from_matrices("g", [[0], [1]], [[10], [5]], n_machines=2, release=[8, 0])
    st_ = JobShopState(inst, "active")
    st_.schedule(0)  # job0 at [8, 18) on m0
    assert st_.start[0] == 8
    two = JobShopInstance(name="g2", job_ptr=np.array([0, 1, 3]),
                          proc=np.array([[10, 0], [0, 2], [3, 0]]),
                          eligible=np.array([[True, False], [False, True], [True, False]]),
                          release=np.array([8, 0]))
    s = JobShopState(two, "active")
    s.schedule(0)      # job0: m0 [8, 18)
    s.schedule(1)      # job1 op0: m1 [0, 2)
    o, t = s.schedule(1)  # job1 op1 (m0, 3): ready at 2, fits the idle gap [0, 8) -> starts at 2
    assert (o, t) == (2, 2)
    nd = JobShopState(two, "non_delay")
    assert nd.job_mask().tolist() == [False, True]  # only job1 can start at t* = 0
