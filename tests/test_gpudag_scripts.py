"""GPU-DAG scripts end to end: the evaluation CLI on the three workload families and the benchmark."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _evaluate(tmp_path, *args):
    cmd = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "env=gpudag", f"hydra.run.dir={tmp_path}",
           "progress=false", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(tmp_path / "results.csv") as fh:
        return proc.stdout, list(csv.DictReader(fh))


def test_evaluate_heft_on_topcuoglu_example(tmp_path):
    out, rows = _evaluate(tmp_path, "policy=heft")  # default workload: topcuoglu-example
    assert "summary" in out and "heft" in out
    assert len(rows) == 1
    r = rows[0]
    assert r["instance"] == "topcuoglu-example" and r["status"] == "feasible"
    assert float(r["makespan"]) == 80.0
    assert float(r["slr"]) == pytest.approx(80 / 41)
    for col in ("speedup", "wall_time_s", "mean_jct", "p95_jct"):
        assert r[col] != ""


def test_evaluate_env_policy_on_smoke_workload(tmp_path):
    _, rows = _evaluate(tmp_path, "workload=dag_smoke", "policy=dag_fifo")
    assert len(rows) == 5
    assert all(r["status"] == "ok" for r in rows), rows
    names = [r["instance"] for r in rows]
    assert any(n.startswith("transformer-") for n in names) and any(n.startswith("cholesky-") for n in names)
    assert any(n.startswith("online-") for n in names)


def test_bench_gpudag_rows():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench_gpudag
    finally:
        sys.path.pop(0)
    rows = bench_gpudag.bench_rows(episodes=1)
    assert [r["tool"] for r in rows] == ["schedgym GPUDag-v0 (graph obs)", "schedgym GPUDagState (core, no obs)"]
    assert all(r["decisions"] >= 100 and r["decisions_per_cpu_s"] > 0 for r in rows)
