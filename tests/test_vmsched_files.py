"""VMR2L snapshot files as VMR2L publishes them (0/1 flags, float MB, int rack ids, extra fields), and
a clear error naming the file and the JSON path for every value outside the format."""

import copy
import json

import numpy as np
import pytest
from vmsched_helpers import tiny_instance

from schedgym.envs.core.errors import InstanceFormatError
from schedgym.envs.vmsched.instances import load_instance, read_snapshot, snapshot_dict


def vmr2l_style() -> dict:
    """A small snapshot written the way VMR2L's published files are: ``allow_migration`` as 1/0,
    memory and free counts as floats, integer rack ids, VMR2L's extra fields, a limit of 10000."""
    inst = tiny_instance([[44, 44], [44, 44], [44, 44]], [(16, 1, 0, 0), (32, 2, 1, 0), (4, 1, 0, 1), (8, 1, 2, 1)],
                         rack=[0, 1, 1])
    d = snapshot_dict(inst)
    cl = d["cluster_list"][0]
    for i, h in enumerate(cl["host_info"]):
        h["rack_id"] = [0, 1, 1][i]
        h["node_mem_mb"] = float(h["node_mem_mb"])
        for nu in h["numa"]:
            nu["memory_huge_total_mb"] = float(nu["memory_huge_total_mb"])
            nu["memory_huge_free_mb"] = float(nu["memory_huge_free_mb"])
            nu["free_cpu"] = float(nu["free_cpu"])
    for i, vm in enumerate(cl["vm_instance"]):
        vm["allow_migration"] = 0 if i == 1 else 1
        for e in vm["numa"]:
            e["mem_mb"] = float(e["mem_mb"])
    for t in d["vm_type_list"]:
        t.update(request_mem_mb=float(t["request_mem_mb"]), expected_newly_created_num=0, weight=0.0)
    d["general_requirement"] = {"optimization_objective": 1, "maximum_migration_each_batch": 1000,
                                "maximum_migration": 10000, "maximum_time": 600, "available_zone": "cn-beijing-a"}
    return d


def _write(tmp_path, d, name="snap.json"):
    path = tmp_path / name
    path.write_text(json.dumps(d))  # allow_nan: NaN / Infinity written as Python's json writes them
    return path


def test_vmr2l_published_format_loads(tmp_path):
    inst = read_snapshot(_write(tmp_path, vmr2l_style()))
    assert inst.vm_movable.tolist() == [True, False, True, True]
    assert inst.mnl == 10000 and inst.pm_mem[0, 0] == 44 * 4096
    assert inst.pm_rack.tolist() == [0, 1, 1] and inst.meta["free_mismatches"] == 0
    assert load_instance(str(tmp_path / "snap.json"), mnl=50).mnl == 50


def test_missing_requirement_takes_vmr2l_default(tmp_path):
    d = vmr2l_style()
    d.pop("general_requirement")
    assert read_snapshot(_write(tmp_path, d)).mnl == 50
    d["general_requirement"] = {"optimization_objective": 1}
    assert read_snapshot(_write(tmp_path, d)).mnl == 50


@pytest.mark.parametrize("value", [2, -1, "yes", "1", 1.0, None, [1]])
def test_flags_other_than_bools_and_0_1_are_errors(tmp_path, value):
    d = vmr2l_style()
    d["cluster_list"][0]["vm_instance"][2]["allow_migration"] = value
    path = _write(tmp_path, d)
    with pytest.raises(InstanceFormatError, match=r"vm_instance\[2\]\.allow_migration: expected true/false or 1/0") \
            as err:
        read_snapshot(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("value,problem", [
    ("5", "expected a number"), (-3, "below 0"), (2.5, "whole number"), (True, "expected a number"),
    (float("nan"), "finite number"), (float("inf"), "finite number"), (10**20, "out of range"),
])
def test_bad_maximum_migration_is_an_error(tmp_path, value, problem):
    d = vmr2l_style()
    d["general_requirement"]["maximum_migration"] = value
    path = _write(tmp_path, d)
    with pytest.raises(InstanceFormatError, match=rf"general_requirement\.maximum_migration: .*{problem}") as err:
        read_snapshot(path)
    assert str(path) in str(err.value)
    d["general_requirement"] = "50"
    with pytest.raises(InstanceFormatError, match=r"\$\.general_requirement: expected dict"):
        read_snapshot(_write(tmp_path, d))


def _host_numa(d):
    return d["cluster_list"][0]["host_info"][1]["numa"][0]


def _vm_numa(d):
    return d["cluster_list"][0]["vm_instance"][0]["numa"][0]


@pytest.mark.parametrize("where,key,path", [
    (_host_numa, "total_cpu", r"host_info\[1\]\.numa\[0\]\.total_cpu"),
    (_host_numa, "memory_huge_total_mb", r"host_info\[1\]\.numa\[0\]\.memory_huge_total_mb"),
    (_host_numa, "free_cpu", r"host_info\[1\]\.numa\[0\]\.free_cpu"),
    (_host_numa, "memory_huge_free_mb", r"host_info\[1\]\.numa\[0\]\.memory_huge_free_mb"),
    (_host_numa, "node", r"host_info\[1\]\.numa\[0\]\.node"),
    (_vm_numa, "cpu", r"vm_instance\[0\]\.numa\[0\]\.cpu"),
    (_vm_numa, "mem_mb", r"vm_instance\[0\]\.numa\[0\]\.mem_mb"),
    (_vm_numa, "gpu", r"vm_instance\[0\]\.numa\[0\]\.gpu"),
])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_errors_naming_the_field(tmp_path, where, key, path, bad):
    d = copy.deepcopy(vmr2l_style())
    where(d)[key] = bad
    file = _write(tmp_path, d)
    assert ("NaN" in file.read_text()) or ("Infinity" in file.read_text())
    with pytest.raises(InstanceFormatError, match=rf"{path}: expected a finite number") as err:
        read_snapshot(file)
    assert str(file) in str(err.value)


def test_absurd_numbers_and_binary_files_are_format_errors(tmp_path):
    d = vmr2l_style()
    _host_numa(d)["total_cpu"] = 10**20
    with pytest.raises(InstanceFormatError, match=r"numa\[0\]\.total_cpu: value 100000000000000000000 is out of range"):
        read_snapshot(_write(tmp_path, d))
    path = tmp_path / "snap.bin.json"
    path.write_bytes(bytes(np.random.default_rng(0).integers(128, 256, 64, dtype=np.uint8)))
    with pytest.raises(InstanceFormatError, match="not a UTF-8 text file"):
        read_snapshot(path)


@pytest.mark.parametrize("bad", [-1, "5", True])
def test_explicit_limits_are_checked(tmp_path, bad):
    path = _write(tmp_path, vmr2l_style())
    with pytest.raises(ValueError, match="migration number limit must be a whole number >= 0"):
        load_instance(str(path), mnl=bad)
    with pytest.raises(ValueError, match="migration number limit must be a whole number >= 0"):
        read_snapshot(path, mnl=bad)
