"""GPU-DAG instances: generators, names, bad input, JSON files."""

import json

import numpy as np
import pytest

from schedgym.envs.core.errors import InstanceFormatError, UnknownNameError
from schedgym.envs.gpudag.generator import (
    TOKEN_GRID,
    TileDagGenerator,
    TopcuogluGenerator,
    build_instance,
    gpu_cluster,
    operator_table,
)
from schedgym.envs.gpudag.instances import load_instance, read_json, resolve_workload, write_json

NAMES = [
    "topcuoglu-example",
    "topcuoglu-v50-ccr1-a1-b0.5-s3",
    "topcuoglu-v30-ccr0.1-a2-b1-o5-p3-w20-s1",
    "transformer-llama2_7b-L2-mb3-t512-inference-ch100x2_a100x2_a40x2-s0",
    "transformer-llama2_70b-L1-mb2-t256r-training-ch100x4_a40x4-s1",
    "cholesky-T5-c4g2-s0",
    "lu-T4-c2g2-n0.1-s2",
    "qr-T4-c0g2-s0",
    "online-topcuoglu-v20-ccr1-a1-b0.5-j5-load0.7-s4",
]


@pytest.mark.parametrize("name", NAMES)
def test_names_regenerate_deterministically(name):
    a, b = load_instance(name), load_instance(name)
    assert a.name == name
    assert np.array_equal(a.exec_time, b.exec_time)
    assert np.array_equal(a.edge_src, b.edge_src) and np.array_equal(a.edge_data, b.edge_data)
    assert np.array_equal(a.job_arrival, b.job_arrival)


def test_seed_changes_instance():
    a = load_instance("topcuoglu-v50-ccr1-a1-b0.5-s0")
    b = load_instance("topcuoglu-v50-ccr1-a1-b0.5-s1")
    assert not np.array_equal(a.exec_time, b.exec_time)


def test_topcuoglu_generator_parameters():
    gen = TopcuogluGenerator(n_tasks=60, ccr=5.0, alpha=1.0, beta=0.5, max_out_degree=3, n_procs=4, w_dag=50)
    ratios = []
    for s in range(20):
        inst = gen(np.random.default_rng(s))
        assert inst.n_tasks == 60 and inst.n_devices == 4
        w = inst.exec_time
        # heterogeneity: all w(i, j) in [w_i (1 - beta/2), w_i (1 + beta/2)], so max/min <= 1.25/0.75
        assert (w.max(axis=1) <= w.min(axis=1) * (1.25 / 0.75) + 1e-9).all()
        ratios.append(inst.edge_data.mean() / w.mean())
        outdeg = np.bincount(inst.edge_src, minlength=60)
        assert (outdeg <= 3).mean() >= 0.95  # the cap holds except for rare repairs of orphan tasks
        # about sqrt(v)/alpha levels: the longest path has at most round(sqrt(60)) = 8 tasks
        assert _longest_path_tasks(inst) <= 8
    assert 4.0 < np.mean(ratios) < 6.0  # CCR: mean comm / mean computation


def _longest_path_tasks(inst):
    depth = np.ones(inst.n_tasks, dtype=int)
    for t in inst.topo_order:
        for s in inst.succs(t):
            depth[s] = max(depth[s], depth[t] + 1)
    return int(depth.max())


@pytest.mark.parametrize("kind,n,expected", [("cholesky", 4, 4 + 6 + 6 + 4), ("lu", 3, 3 + 3 + 3 + 5), ("qr", 3, 3 + 3 + 3 + 5)])
def test_tile_dag_task_counts(kind, n, expected):
    inst = TileDagGenerator(kind, n, 2, 1)(np.random.default_rng(0))
    assert inst.n_tasks == expected
    assert inst.type_names == ("CPU", "GPU")
    # the first kernel (POTRF/GETRF/GEQRT) of step 0 is the only entry task
    assert np.flatnonzero(np.bincount(inst.edge_dst, minlength=inst.n_tasks) == 0).tolist() == [0]


def test_cholesky_gemm_dependencies():
    inst = TileDagGenerator("cholesky", 3, 1, 1)(np.random.default_rng(0))
    kinds = [inst.kind_names[k] for k in inst.task_kind]
    assert kinds == ["POTRF", "TRSM", "TRSM", "SYRK", "SYRK", "GEMM", "POTRF", "TRSM", "SYRK", "POTRF"]
    gemm = kinds.index("GEMM")
    assert sorted(inst.preds(gemm).tolist()) == [1, 2]  # both TRSMs of column 0


def test_transformer_times_are_the_profile_rows():
    inst = load_instance("transformer-llama2_7b-L1-mb1-t512-inference-ch100x1_a100x1_a40x1-s0")
    prof = operator_table()
    kinds = [inst.kind_names[k] for k in inst.task_kind]
    for t, op in enumerate(kinds):
        for k, dev in enumerate(inst.type_names):
            assert inst.exec_time[t, k] == prof[("llama2_7b", dev.lower(), op, 512)]
    assert 512 in TOKEN_GRID
    # the H100 is faster than the A40 on the big GEMM
    up = kinds.index("mlp_up_proj")
    assert inst.exec_time[up, inst.type_names.index("H100")] < inst.exec_time[up, inst.type_names.index("A40")]


def test_gpu_cluster_links():
    dtype, dnode, lat, bw, names = gpu_cluster("h100x2_a40x2")
    assert names == ("H100", "A40") and dtype.tolist() == [0, 0, 1, 1] and dnode.tolist() == [0, 0, 1, 1]
    assert bw[0, 1] > bw[0, 2]  # NVLink within the H100 node beats the network
    assert np.isinf(bw[0, 0])


def test_training_dag_has_backward():
    inf = load_instance("transformer-llama2_7b-L1-mb1-t128-inference-ch100x1-s0")
    tr = load_instance("transformer-llama2_7b-L1-mb1-t128-training-ch100x1-s0")
    assert tr.n_tasks == 2 * inf.n_tasks + 4
    assert any(k.startswith("wgrad:") for k in tr.kind_names)


def _tiny(**kw):
    args = dict(name="bad", exec_time=np.array([[1.0, 2.0], [3.0, 4.0]]), edges=[(0, 1, 1.0)],
                device_type=np.array([0, 1]))
    args.update(kw)
    return build_instance(**args)


def test_bad_input_cycle_names_tasks():
    with pytest.raises(InstanceFormatError, match="cycle: 0 -> 1 -> 0"):
        _tiny(edges=[(0, 1, 1.0), (1, 0, 1.0)])


def test_bad_input_negative_time_names_task():
    with pytest.raises(InstanceFormatError, match="task 1 has execution time -3"):
        _tiny(exec_time=np.array([[1.0, 2.0], [-3.0, 4.0]]))


def test_bad_input_negative_data_names_edge():
    with pytest.raises(InstanceFormatError, match=r"edge 0 \(0 -> 1\) has data size -1"):
        _tiny(edges=[(0, 1, -1.0)])


def test_bad_input_task_no_device_can_run():
    with pytest.raises(InstanceFormatError, match="task 1 cannot run on any device"):
        _tiny(eligible=np.array([[True, True], [False, True]]), device_type=np.array([0, 0]))


def test_bad_input_edge_out_of_range():
    with pytest.raises(InstanceFormatError, match="edge 0 .* names a task outside"):
        _tiny(edges=[(0, 5, 1.0)])


def test_unknown_names():
    with pytest.raises(UnknownNameError):
        load_instance("topcuglu-v50-s0")
    with pytest.raises(InstanceFormatError, match="lacks the parameter 'ccr'"):
        load_instance("topcuoglu-v50-a1-b0.5-s0")
    with pytest.raises(UnknownNameError):
        load_instance("transformer-llama2_7b-L1-mb1-t128-inference-ch200x1-s0")


def test_resolve_seed_ranges():
    names = resolve_workload(["topcuoglu-example", "cholesky-T4-c2g1-s0..2"])
    assert names == ["topcuoglu-example", "cholesky-T4-c2g1-s0", "cholesky-T4-c2g1-s1", "cholesky-T4-c2g1-s2"]


def test_json_roundtrip(tmp_path):
    for name in ("cholesky-T3-c2g1-s0", "online-topcuoglu-v8-ccr1-a1-b0.5-j3-load0.7-s0"):
        inst = load_instance(name)
        p = tmp_path / "x.json"
        write_json(inst, p)
        back = load_instance(str(p))
        assert np.array_equal(back.exec_time, inst.exec_time)
        assert np.array_equal(back.link_bandwidth, inst.link_bandwidth)
        assert np.array_equal(back.job_arrival, inst.job_arrival)
        assert np.array_equal(back.edge_dst, inst.edge_dst)


def test_json_errors_name_the_field(tmp_path):
    p = tmp_path / "bad.json"
    doc = {"device_types": ["GPU"], "devices": [{"type": "GPU"}], "tasks": [{"times": {"GPU": 1}}, {"times": {"TPU": 1}}],
           "edges": [[0, 1, 1.0]]}
    p.write_text(json.dumps(doc))
    with pytest.raises(InstanceFormatError, match=r"bad.json: tasks\[1\].times names unknown device type 'TPU'"):
        read_json(p)
    doc["tasks"][1] = {"times": {"GPU": 2}}
    doc["edges"].append([1, 0, 1.0])
    p.write_text(json.dumps(doc))
    with pytest.raises(InstanceFormatError, match="bad.json: .*cycle"):
        read_json(p)
    p.write_text("{ not json")
    with pytest.raises(InstanceFormatError, match="line 1"):
        read_json(p)
