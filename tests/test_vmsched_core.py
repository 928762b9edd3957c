"""VM rescheduling core: fragment rate by hand, state vs validator, loader round trip and errors."""

import copy
import json

import numpy as np
import pytest
from vmsched_helpers import tiny_instance

from schedgym.envs.core.errors import InfeasibleSolution, InstanceFormatError, UnknownNameError
from schedgym.envs.vmsched.generator import VMClusterGenerator
from schedgym.envs.vmsched.instances import (
    generate,
    instance_sets,
    load_instance,
    parse_snapshot,
    read_snapshot,
    resolve_instances,
    snapshot_dict,
)
from schedgym.envs.vmsched.metrics import metrics
from schedgym.envs.vmsched.state import VMState
from schedgym.envs.vmsched.types import VMSolution, fragment_rate
from schedgym.envs.vmsched.validate import count_violations, validate


def two_pm():
    # PM0: NUMA0 44 cores with a 16 and an 8 (20 free), NUMA1 with a 4 (40 free);
    # PM1: a 2-NUMA 32-core VM (16 per node: 28 free each) and a 2 on NUMA1 (26 free).
    return tiny_instance([[44, 44], [44, 44]], [(16, 1, 0, 0), (8, 1, 0, 0), (4, 1, 0, 1), (32, 2, 1, 0), (2, 1, 1, 1)])


def test_fragment_rate_by_hand():
    inst = two_pm()
    # free: 20, 40, 28, 26 -> mod 16: 4, 8, 12, 10 = 34 fragment cores of 114 free cores
    assert fragment_rate(inst, inst.init_pm, inst.init_numa) == pytest.approx(34 / 114)
    st = VMState(inst)
    assert st.fragment_rate() == pytest.approx(34 / 114)
    # move the 4-core VM to PM0 NUMA0: free 16 and 44 -> 0 + 12; PM1 unchanged: 12 + 10 -> 34 of 114
    assert st.delta_fr(2, 0, 0) == pytest.approx(0.0)
    # move the 2-core VM to PM1 NUMA0: free 26 and 28 -> 28 + 26 ... 10 + 12 -> unchanged; to PM0 NUMA1: 38
    st.move(4, 0, 1)
    # free: 20, 38, 28, 28 -> 4 + 6 + 12 + 12 = 34
    assert st.fragment_rate() == pytest.approx(34 / 114)
    st.move(1, 1, 0)  # 8-core to PM1 NUMA0: free 28, 38, 20, 28 -> 12 + 6 + 4 + 12 = 34
    assert st.frag_sum == 34 and st.free_sum == 114
    sol = st.solution()
    validate(inst, sol)
    assert metrics(inst, sol)["fragment_rate"] == pytest.approx(34 / 114)


def test_inactive_pms_do_not_count_and_must_be_evacuated():
    inst = tiny_instance([[44, 44], [44, 44]], [(16, 1, 0, 0), (8, 1, 1, 0)], status=[0, 2])
    assert fragment_rate(inst, inst.init_pm, inst.init_numa) == pytest.approx((12 + 12) / (28 + 44))
    assert inst.must_move.tolist() == [False, True]
    with pytest.raises(InfeasibleSolution, match="evacuated"):
        validate(inst, VMSolution(moves=np.zeros((0, 3))))
    st = VMState(inst)
    assert not st.stop_allowed()
    assert st.vm_mask().tolist() == [True, True]
    assert VMState(inst, mnl=1).vm_mask().tolist() == [False, True]  # the last migration must evacuate
    assert not st.target_mask(1)[1].any()  # the OUTAGE PM is no target
    st.move(1, 0, 1)
    validate(inst, st.solution())
    assert st.stop_allowed()


def test_validator_rejects_each_violation():
    inst = tiny_instance([[16, 16], [16, 16]], [(16, 1, 0, 0), (8, 1, 1, 0), (8, 1, 1, 1, False), (4, 1, 1, 0)],
                         host_groups=[[0, 3]], mnl=2)
    cases = {
        "more than the limit": [(3, 0, 1), (3, 1, 1), (3, 0, 1)],
        "not movable": [(2, 0, 1)],
        "free": [(1, 0, 0)],  # NUMA 0 of PM 0 is full
        "already there": [(1, 1, 0)],
        "anti-affinity": [(3, 0, 1)],
        "no VM": [(9, 0, 0)],
    }
    for what, moves in cases.items():
        with pytest.raises(InfeasibleSolution):
            validate(inst, VMSolution(moves=np.array(moves)))
        assert count_violations(inst, VMSolution(moves=np.array(moves))) >= 1, what
    validate(inst, VMSolution(moves=np.array([(1, 0, 1)])))


def test_state_matches_independent_code_on_random_walks():
    inst = generate("gen_s_medium_s3")
    rng = np.random.default_rng(0)
    st = VMState(inst)
    while st.migrations_left > 0:
        mask = st.vm_mask()
        n = st.n_targets()
        exact = np.array([st.target_mask(v).sum() for v in range(st.V)])
        assert np.array_equal(n, exact)
        v = int(rng.choice(np.flatnonzero(mask)))
        t = int(rng.choice(np.flatnonzero(st.target_mask(v).ravel())))
        d = st.delta_fr(v, t // 2, t % 2)
        before = st.fragment_rate()
        st.move(v, t // 2, t % 2)
        assert st.fragment_rate() == pytest.approx(before + d, abs=1e-12)
        pm, numa = st.placement_of()
        assert st.fragment_rate() == pytest.approx(fragment_rate(inst, pm, numa), abs=1e-12)
    validate(inst, st.solution())


def test_generator_is_seeded_and_calibrated():
    a, b = generate("gen_m_medium_s0"), generate("gen_m_medium_s0")
    assert np.array_equal(a.init_pm, b.init_pm) and np.array_equal(a.vm_cpu, b.vm_cpu)
    frs, vms = [], []
    for s in range(3):
        inst = generate(f"gen_m_medium_s{s}")
        used, _, _ = inst.usage(inst.init_pm, inst.init_numa)
        assert used.sum() / inst.pm_cpu.sum() == pytest.approx(0.94, abs=0.01)
        assert inst.n_pms == 279
        frs.append(fragment_rate(inst, inst.init_pm, inst.init_numa))
        vms.append(inst.n_vms)
        assert 0.85 <= (inst.vm_cpu <= 16).mean() <= 0.93
    assert 0.5 <= np.mean(frs) <= 0.65
    assert 1900 <= np.mean(vms) <= 2300
    gpu = generate("gen_s_medium_gpu_s0")
    assert gpu.pm_gpu.sum() == 8 * gpu.n_pms and set(np.unique(gpu.vm_gpu)) <= {0, 1, 2, 4, 8}
    with pytest.raises(ValueError):
        VMClusterGenerator(utilisation="extreme")


def test_snapshot_round_trip(tmp_path):
    for name in ("gen_s_medium_evac_s1", "gen_s_medium_gpu_s2"):
        inst = generate(name)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(snapshot_dict(inst)))
        back = read_snapshot(path)
        for f in ("pm_cpu", "pm_mem", "pm_gpu", "pm_status", "pm_rack", "vm_cpu", "vm_mem", "vm_gpu", "vm_span",
                  "vm_movable", "init_pm", "init_numa"):
            assert np.array_equal(getattr(inst, f), getattr(back, f)), f
        assert [g.tolist() for g in inst.host_groups] == [g.tolist() for g in back.host_groups]
        assert [g.tolist() for g in inst.rack_groups] == [g.tolist() for g in back.rack_groups]
        assert back.meta["free_mismatches"] == 0
    assert (~generate("gen_s_medium_evac_s1").pm_active).sum() == 1


def test_bundled_snapshots_and_sets_load():
    for name in resolve_instances(["vm_bundled"]):
        inst = load_instance(name)
        assert inst.n_vms > 0 and inst.source.endswith(".json")
    assert len(instance_sets()["generated_m"]) == 5
    with pytest.raises(UnknownNameError, match="did you mean"):
        load_instance("gen_m_medum_s0x")


def _snap():
    return snapshot_dict(tiny_instance([[44, 44], [44, 44]], [(16, 1, 0, 0), (32, 2, 1, 0), (4, 1, 0, 1)]))


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d["cluster_list"][0]["host_info"][0].pop("numa"), r"host_info\[0\]\.numa: missing field"),
    (lambda d: d["cluster_list"][0]["vm_instance"][1].pop("host_id"), r"vm_instance\[1\]\.host_id: missing field"),
    (lambda d: d["cluster_list"][0]["host_info"][1]["numa"][1].update(node=2), r"numa\[1\]\.node: unknown or repeated NUMA"),
    (lambda d: d["cluster_list"][0]["vm_instance"][0]["numa"][0].update(node=3), r"vm_instance\[0\]\.numa\[0\]\.node: unknown NUMA"),
    (lambda d: d["cluster_list"][0]["vm_instance"][0]["numa"][0].update(cpu=60), r"vm_instance\[0\].*more than any host"),
    (lambda d: d["cluster_list"][0]["vm_instance"][2]["numa"][0].update(cpu=40, node=0), r"overcommitted"),
    (lambda d: d["cluster_list"][0]["vm_instance"][1].update(host_id="nope"), r"host_id: host 'nope'"),
    (lambda d: d["cluster_list"][0]["host_info"][0].update(status="BROKEN"), r"status: unknown status"),
    (lambda d: d["cluster_list"][0]["other_requirement"].update(
        deployment_set=[{"granularity": "host", "data": ["vm_0", "vm_2"]}]), r"deployment_set\[0\]: the snapshot violates"),
    (lambda d: d.pop("cluster_list"), r"\$\.cluster_list: missing field"),
])
def test_malformed_snapshots_name_file_path_and_problem(tmp_path, mutate, match):
    d = copy.deepcopy(_snap())
    mutate(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(InstanceFormatError, match=match) as err:
        read_snapshot(path)
    assert str(path) in str(err.value)


def test_loader_handles_what_vmr2l_parser_cannot(tmp_path):
    d = _snap()
    d["cluster_list"][0]["host_info"][1]["status"] = "DISABLED"
    d["cluster_list"][0]["vm_instance"][0]["allow_migration"] = False
    d["cluster_list"][0]["other_requirement"]["deployment_set"] = [
        {"granularity": "host", "data": ["vm_0", "vm_1", "not_here"]}]
    inst = parse_snapshot(d, source="x.json")
    assert not inst.vm_movable[0] and inst.must_move.tolist() == [False, True, False]
    assert [g.tolist() for g in inst.host_groups] == [[0, 1]] and inst.meta["unknown_set_members"] == 1
    with pytest.raises(InstanceFormatError, match="not valid JSON"):
        bad = tmp_path / "broken.json"
        bad.write_text("{")
        read_snapshot(bad)
