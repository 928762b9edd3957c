"""Generated snapshots of given PM and VM counts, written as VMR2L-format JSON files.

VMR2L's own data cannot be redistributed, so size-transfer checks run on generated files of the
shapes its papers report (for example 280 PMs / 2,089 VMs and 1,264 PMs / 3,000 VMs): the
generator (:class:`~schedgym.envs.vmsched.generator.VMClusterGenerator`) fills ``n_pms`` PMs to a
CPU utilisation that gives at least ``n_vms`` VMs, then VMs drawn at random (outside the
anti-affinity groups) are removed until exactly ``n_vms`` remain; the file is written by
:func:`~schedgym.envs.vmsched.instances.write_snapshot` and reads back with the VMR2L loader.

    python -m schedgym.envs.vmsched.vmr2l_files OUT_DIR        # writes the two files above
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from schedgym.envs.vmsched.generator import VMClusterGenerator
from schedgym.envs.vmsched.instances import write_snapshot
from schedgym.envs.vmsched.types import VMInstance

#: (PMs, VMs, CPU utilisation that yields a few more VMs than asked) of the shipped checks' files
SHAPES: tuple[tuple[int, int, float], ...] = ((280, 2089, 0.96), (1264, 3000, 0.37))


def keep_vms(instance: VMInstance, keep: np.ndarray, name: str | None = None) -> VMInstance:
    """``instance`` with only the VMs ``keep`` (sorted indices); groups are re-indexed (members
    removed from them dropped, groups of fewer than two members dropped)."""
    keep = np.sort(np.asarray(keep, dtype=np.int64))
    new_idx = np.full(instance.n_vms, -1, dtype=np.int64)
    new_idx[keep] = np.arange(len(keep))

    def regroup(groups: list) -> list:
        out = []
        for g in groups:
            m = new_idx[np.asarray(g, dtype=np.int64)]
            m = m[m >= 0]
            if len(m) >= 2:
                out.append(m)
        return out

    per_vm = ("vm_cpu", "vm_mem", "vm_gpu", "vm_span", "vm_movable", "vm_type", "init_pm", "init_numa")
    fields = {f: getattr(instance, f)[keep] for f in per_vm}
    vm_ids = tuple(instance.vm_ids[i] for i in keep) if instance.vm_ids else ()
    return replace(instance, **fields, host_groups=regroup(instance.host_groups),
                   rack_groups=regroup(instance.rack_groups), vm_ids=vm_ids, name=name or instance.name)


def sized_snapshot(n_pms: int, n_vms: int, utilisation: float, seed: int = 0) -> VMInstance:
    """A generated snapshot of exactly ``n_pms`` PMs and ``n_vms`` VMs (see the module docstring).

    Raises:
        ValueError: the generator gave fewer than ``n_vms`` VMs at this utilisation (raise it).
    """
    inst = VMClusterGenerator(n_pms=n_pms, utilisation=utilisation)(np.random.default_rng(seed))
    extra = inst.n_vms - n_vms
    if extra < 0:
        raise ValueError(f"{n_pms} PMs at utilisation {utilisation} gave {inst.n_vms} VMs < {n_vms}; "
                         "raise the utilisation")
    grouped = np.zeros(inst.n_vms, dtype=bool)
    for g in list(inst.host_groups) + list(inst.rack_groups):
        grouped[np.asarray(g, dtype=np.int64)] = True
    free = np.flatnonzero(~grouped)
    drop = np.random.default_rng(seed + 1).choice(free, size=extra, replace=False)
    keep = np.setdiff1d(np.arange(inst.n_vms), drop)
    return keep_vms(inst, keep, name=f"vmr2l_p{n_pms}_v{n_vms}_s{seed}")


def write_shapes(out_dir: str | Path, seed: int = 0) -> list[Path]:
    """Write one VMR2L-format file per shape of :data:`SHAPES` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for n_pms, n_vms, util in SHAPES:
        inst = sized_snapshot(n_pms, n_vms, util, seed)
        paths.append(write_snapshot(inst, out / f"{inst.name}.json"))
    return paths


if __name__ == "__main__":  # pragma: no cover - command line
    if len(sys.argv) != 2:
        sys.exit("usage: python -m schedgym.envs.vmsched.vmr2l_files OUT_DIR")
    for p in write_shapes(sys.argv[1]):
        print(p)
