"""A non-editable install (a wheel, no clone) ships the Hydra configs and the console scripts.

Builds the wheel from this checkout, installs it with ``--no-deps`` into a fresh venv that borrows
the dependencies of the test environment (a ``.pth`` line), and runs ``schedgym-evaluate`` from a
folder outside the clone, so neither ``conf/`` nor the sources of the checkout can be found.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["WANDB_MODE"] = "disabled"
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                 "-w", str(out)], cwd=out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # no setuptools warnings (license table, data folders reported as missing packages)
    warnings = [ln for ln in proc.stderr.splitlines() if "Warning" in ln and "Location" not in ln]
    assert not warnings, "\n".join(warnings)
    (whl,) = out.glob("schedgym-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory) -> Path:
    """bin/ of a fresh venv with the wheel installed."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=True)
    py = root / "bin" / "python"
    target = Path(_run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], cwd=root).stdout.strip())
    (target / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    proc = _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "bin"


def test_wheel_contains_configs_and_entry_points(wheel: Path):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "schedgym/conf/evaluate.yaml" in names
    assert "schedgym/conf/policy/mwkr.yaml" in names
    assert "schedgym/envs/data/jobshop/classic/ft06.txt" in names or any("ft06" in n for n in names)
    ep = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(ep).decode()
    for cmd in ("schedgym-train", "schedgym-evaluate", "schedgym-leaderboard"):
        assert cmd in text


def test_console_evaluate_runs_from_wheel(installed: Path, tmp_path: Path):
    py = installed / "python"
    where = _run([str(py), "-c", "import schedgym; print(schedgym.__file__)"], cwd=tmp_path).stdout
    assert str(installed.parent) in where, f"schedgym imported from {where}, not the wheel"
    proc = _run([str(installed / "schedgym-evaluate"), "env=jobshop", "instances=ft", "policy=mwkr",
                 f"hydra.run.dir={tmp_path / 'out'}", "progress=false"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "ft10" in proc.stdout
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(rows) == 4  # header + ft06, ft10, ft20


@pytest.mark.parametrize("cmd", ["schedgym-train", "schedgym-leaderboard"])
def test_console_scripts_compose_shipped_configs(installed: Path, tmp_path: Path, cmd: str):
    proc = _run([str(installed / cmd), "--cfg", "job"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "env:" in proc.stdout or "suite:" in proc.stdout
