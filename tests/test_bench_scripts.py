"""Smoke test of the benchmark script (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
