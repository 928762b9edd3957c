"""Smoke test of the benchmark script (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_envs_runs_on_ft06(tmp_path):
    csv_path = tmp_path / "bench.csv"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_envs.py"), "--episodes", "1", "--instances", "ft06",
         "--no-peers", "--csv", str(csv_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "JobShop-v0" in line]
    assert rows and any("ft06" in line for line in rows), proc.stdout
    text = csv_path.read_text()
    assert "JobShop-v0" in text and "ft06" in text


def test_bench_sampling_row_on_15x15_with_two_samples():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench_sampling
    finally:
        sys.path.pop(0)
    row = bench_sampling.bench_row("15x15", samples=2)
    assert row["instance"] == "ta01" and row["samples"] == 2 and row["ops"] == 225
    assert 0 < row["forwards"] <= 225 and row["makespan"] > 1231  # ta01's optimum is 1231
    assert row["cpu_s"] >= row["forward_cpu_s"] > 0


@pytest.mark.slow
def test_bench_training_prints_a_row_for_jobshop():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_training.py"), "--envs", "jobshop",
                           "--steps", "1024"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line.split() for line in lines if line.startswith("env "))
    rows = [dict(zip(header, line.split(), strict=True)) for line in lines if line.startswith("jobshop")]
    assert len(rows) == 1 and rows[0]["steps"] == "1024", proc.stdout
    assert float(rows[0]["steps/s"]) > 0 and float(rows[0]["steps/cpu_s"]) > 0, proc.stdout
