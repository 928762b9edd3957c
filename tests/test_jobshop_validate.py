"""The independent validator rejects planted violations and accepts correct schedules."""

import numpy as np
import pytest

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.jobshop.instances import load_instance, parse_fjs, parse_standard
from schedgym.envs.jobshop.types import JobShopSolution
from schedgym.envs.jobshop.validate import validate

# 2 jobs x 2 machines: job 0 = (m0, 3), (m1, 2); job 1 = (m1, 4), (m0, 1)
INST = parse_standard("2 2\n0 3 1 2\n1 4 0 1\n", name="tiny")


def sol(start, machine=None):
    machine = machine if machine is not None else INST.op_machine
    return JobShopSolution(np.array(start), np.array(machine))


def test_accepts_feasible():
    validate(INST, sol([0, 4, 0, 4]))


def test_rejects_precedence_violation():
    with pytest.raises(InfeasibleSolution, match="before its predecessor"):
        validate(INST, sol([0, 2, 0, 4]))


def test_rejects_machine_overlap():
    # job0 op1 on m1 [3,5) overlaps job1 op0 on m1 [0,4)
    with pytest.raises(InfeasibleSolution, match="at the same time"):
        validate(INST, sol([0, 3, 0, 4]))


def test_rejects_wrong_machine():
    with pytest.raises(InfeasibleSolution, match="allowed machines"):
        validate(INST, sol([0, 4, 0, 4], machine=[1, 1, 1, 0]))


def test_rejects_unscheduled_and_release():
    with pytest.raises(InfeasibleSolution, match="not scheduled"):
        validate(INST, sol([0, 4, -1, 4]))
    late = INST.__class__(name="r", job_ptr=INST.job_ptr, proc=INST.proc, eligible=INST.eligible,
                          release=np.array([1, 0]))
    with pytest.raises(InfeasibleSolution, match="release"):
        validate(late, sol([0, 4, 0, 4]))


def test_flexible_machine_choice():
    f = parse_fjs("1 2 1.5\n2 2 1 3 2 4 1 2 6\n")
    validate(f, JobShopSolution(np.array([0, 4]), np.array([1, 1])))
    with pytest.raises(InfeasibleSolution):
        validate(f, JobShopSolution(np.array([0, 3]), np.array([1, 1])))  # op1 starts before op0 (4) ends


def test_shape_mismatch():
    with pytest.raises(InfeasibleSolution, match="expected"):
        validate(load_instance("ft06"), sol([0, 1, 2, 3]))


def test_overlap_hidden_behind_zero_length_operation():
    inst = parse_standard("3 1\n0 10\n0 0\n0 3\n", name="z")
    with pytest.raises(InfeasibleSolution, match="at the same time"):
        validate(inst, JobShopSolution(np.array([0, 2, 5]), np.array([0, 0, 0])))
    validate(inst, JobShopSolution(np.array([0, 2, 10]), np.array([0, 0, 0])))


# ---- float start times are compared exactly, never truncated (issue 11) -------------------------
def test_half_unit_machine_overlap_with_float_starts_is_rejected():
    # job1 op0 on m1 runs [0.5, 4.5), job0 op1 on m1 starts at 4: truncating 0.5 to 0 hid the overlap
    with pytest.raises(InfeasibleSolution, match=r"machine 1 runs operations 2 \[0.5, 4.5\) and 1 \[4.0, 6.0\)"):
        validate(INST, sol([0, 4, 0.5, 5]))
    validate(INST, sol([0, 4.5, 0.5, 5]))  # the same schedule shifted by the half unit is feasible


def test_half_unit_precedence_violation_with_float_starts_is_rejected():
    # job0 op0 on m0 runs [0.5, 3.5); its successor starting at 3 starts before it ends
    with pytest.raises(InfeasibleSolution, match="operation 1 starts at 3.0 before its predecessor 0 ends at 3.5"):
        validate(INST, sol([0.5, 3, 0, 4]))


def test_flexible_half_unit_overlap_is_rejected():
    f = parse_fjs("2 2\n1 2 1 3 2 4\n1 1 2 6\n")  # job0: m1 (3) or m2 (4); job1: m2 (6)
    with pytest.raises(InfeasibleSolution, match="at the same time"):
        validate(f, JobShopSolution(np.array([0.5, 4]), np.array([1, 1])))
    validate(f, JobShopSolution(np.array([0.5, 4.5]), np.array([1, 1])))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_start_is_rejected_naming_the_operation(bad):
    with pytest.raises(InfeasibleSolution, match=f"operation 2 has start time {bad}; .*finite"):
        validate(INST, sol([0, 4, bad, 5]))


def test_non_numeric_start_is_rejected_naming_the_operation():
    start = np.array([0, 4, "soon", 5], dtype=object)
    with pytest.raises(InfeasibleSolution, match="operation 2 has start time 'soon' .*real numbers"):
        validate(INST, JobShopSolution(start, INST.op_machine))
    with pytest.raises(InfeasibleSolution, match="operation 1 has start time None"):
        validate(INST, JobShopSolution(np.array([0, None, 0, 4], dtype=object), INST.op_machine))


def test_fractional_machine_index_is_rejected():
    f = parse_fjs("1 2 1.5\n2 2 1 3 2 4 1 2 6\n")
    with pytest.raises(InfeasibleSolution, match=r"operation 0 has machine 1.5; machines are integer indices 0..1"):
        validate(f, JobShopSolution(np.array([0, 4]), np.array([1.5, 1.0])))
    validate(f, JobShopSolution(np.array([0, 4]), np.array([1.0, 1.0])))  # integral floats are fine
