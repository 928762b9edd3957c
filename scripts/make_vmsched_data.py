"""Write the generated VM snapshots shipped in ``envs/data/vmsched/`` (VMR2L's JSON format).

    python scripts/make_vmsched_data.py

``snap_<size>_<kind>.json`` is the snapshot of the generated name in :data:`SNAPSHOTS` (same
generator, same seed), frozen as a file so that it survives generator changes.
"""

from __future__ import annotations

from pathlib import Path

from schedgym.envs.vmsched.instances import DATA_DIR, generate, write_snapshot

#: shipped file stem -> generated name
SNAPSHOTS = {
    "snap_s_medium": "gen_s_medium_s100",
    "snap_s_high": "gen_s_high_s100",
    "snap_s_evac": "gen_s_medium_evac_s100",
    "snap_s_gpu": "gen_s_medium_gpu_s100",
    "snap_m_medium": "gen_m_medium_s100",
}


def main(out: Path = DATA_DIR) -> None:
    for stem, name in SNAPSHOTS.items():
        inst = generate(name)
        path = write_snapshot(inst, out / f"{stem}.json")
        print(f"{path}: {inst.n_pms} PMs, {inst.n_vms} VMs (from {name})")


if __name__ == "__main__":
    main()
