"""scripts/evaluate.py (schedgym.cli.evaluate): resume keyed on the full config, summaries of this
run's episodes only, and exit statuses (1: an episode failed, after writing the others; 2: a bad
command line, before any episode).

Each test runs the script in a subprocess into its own ``hydra.run.dir``. The crashing policy lives
in a small module written to a temporary folder on ``PYTHONPATH`` (``evtest_policies``).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "evaluate.py"

POLICIES_MODULE = '''
"""Policies for tests/test_evaluate_cli.py."""
from schedgym.baselines.dispatching import DispatchingRulePolicy


class CrashOnFt10(DispatchingRulePolicy):
    """SPT, except that it raises on ft10 (any other instance runs normally)."""

    def act(self, obs, info):
        if self.env.unwrapped.instance.name == "ft10":
            raise RuntimeError("evtest policy crashed on ft10 on purpose")
        return super().act(obs, info)
'''

#: a 2x2 job-shop in the standard format; its optimal (and every rule's) makespan is the longer job
JOBSHOP_2X2 = "2 2\n0 {a} 1 {b}\n1 {c} 0 {d}\n"


@pytest.fixture(scope="module")
def pymod(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("evmod")
    (d / "evtest_policies.py").write_text(POLICIES_MODULE)
    return d


def evaluate(out: Path, *overrides: str, pymod: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pymod is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pymod), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, str(SCRIPT), f"hydra.run.dir={out}", "progress=false",
                           "show_instances=false", *overrides],
                          cwd=out.parent, env=env, capture_output=True, text=True, timeout=300)


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def rows(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def summary(stdout: str) -> list[list[str]]:
    """Cells of the printed summary table's body rows (after its header)."""
    body = stdout.split("summary (mean over episodes)", 1)[1].split("results: ", 1)[0]
    return [[c.strip() for c in line.strip("│ \n").split("│")] for line in body.splitlines()
            if line.startswith("│") and not line.startswith("│ suite")]


# --------------------------------------------------------------------------------------------------
# resume: the key is the full config, the instance's full path and the seed
# --------------------------------------------------------------------------------------------------

def test_another_scheme_is_computed_not_reused(tmp_path):
    """ft10 with SPT: 1074 with the rule's non-delay scheme, 1399 with the active one. A rerun into
    the same dir with another env keyword or policy parameter must compute it, not reuse 1074."""
    out = tmp_path / "run"
    first = ok(evaluate(out, "env=jobshop", "names=[ft10]", "policy=spt"))
    assert "resuming" not in first.stdout
    assert [r["makespan"] for r in rows(out)] == ["1074.0"]
    for override in ("env.kwargs.scheme=active", "policy.scheme=active"):
        res = ok(evaluate(out, "env=jobshop", "names=[ft10]", "policy=spt", override))
        assert "resuming" not in res.stdout
        assert summary(res.stdout)[0][:4] == ["custom", "spt", "1", "1399.00"]
    assert sorted(r["makespan"] for r in rows(out)) == ["1074.0", "1399.0", "1399.0"]
    assert len({r["config_hash"] for r in rows(out)}) == 3 and len({r["run_key"] for r in rows(out)}) == 3
    # the first command again: reused, and reported as such
    res = ok(evaluate(out, "env=jobshop", "names=[ft10]", "policy=spt"))
    assert "resuming: 1 of 1 episodes reused" in res.stdout
    assert summary(res.stdout)[0][:4] == ["custom", "spt", "1", "1074.00"]
    assert len(rows(out)) == 3


def test_another_solver_time_limit_is_computed_not_reused(tmp_path):
    out = tmp_path / "run"
    ok(evaluate(out, "env=jobshop", "names=[ft06]", "policy=cpsat", "time_limit_s=5"))
    assert "resuming" not in ok(evaluate(out, "env=jobshop", "names=[ft06]", "policy=cpsat", "time_limit_s=7")).stdout
    assert "resuming: 1 of 1 episodes reused" in ok(evaluate(out, "env=jobshop", "names=[ft06]", "policy=cpsat", "time_limit_s=5")).stdout
    assert len(rows(out)) == 2 and all(r["makespan"] == "55.0" for r in rows(out))


def test_files_with_one_stem_in_two_folders_are_two_instances(tmp_path):
    a = tmp_path / "a" / "x.txt"
    b = tmp_path / "b" / "x.txt"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_text(JOBSHOP_2X2.format(a=3, b=4, c=2, d=1))  # job lengths 7 and 3
    b.write_text(JOBSHOP_2X2.format(a=30, b=40, c=2, d=1))  # 70 and 3
    out = tmp_path / "run"
    ok(evaluate(out, "env=jobshop", f"names=[{a}]", "policy=spt"))
    res = ok(evaluate(out, "env=jobshop", f"names=[{b}]", "policy=spt"))
    assert "resuming" not in res.stdout
    assert summary(res.stdout)[0][3] == "70.00"
    assert sorted(float(r["makespan"]) for r in rows(out)) == [7.0, 70.0]
    assert [r["instance"] for r in rows(out)] == ["x", "x"]


def test_summary_covers_only_this_runs_episodes(tmp_path):
    out = tmp_path / "run"
    ok(evaluate(out, "env=jobshop", "names=[ft06]", "policy=spt"))
    res = ok(evaluate(out, "env=jobshop", "names=[ft10]", "policy=spt"))
    assert [row[:4] for row in summary(res.stdout)] == [["custom", "spt", "1", "1074.00"]]  # not ft06's 88 too
    assert sorted(r["instance"] for r in rows(out)) == ["ft06", "ft10"]  # the other run's row is kept
    assert "(+1 rows of other runs, not summarised)" in res.stdout


# --------------------------------------------------------------------------------------------------
# exit statuses
# --------------------------------------------------------------------------------------------------

def test_failed_episode_exits_1_after_writing_the_others(tmp_path, pymod):
    out = tmp_path / "run"
    res = evaluate(out, "env=jobshop", "names=[ft06,ft10]", "policy=spt", "policy._target_=evtest_policies.CrashOnFt10",
                   pymod=pymod)
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "[failed] ft10 seed 0: RuntimeError: evtest policy crashed on ft10 on purpose" in res.stderr
    assert "1 of 2 episodes of spt on custom failed or were invalid" in res.stderr
    by_instance = {r["instance"]: r for r in rows(out)}
    assert by_instance["ft06"]["status"] == "ok" and by_instance["ft06"]["makespan"] == "88.0"
    assert by_instance["ft10"]["status"] == "failed" and "crashed on ft10" in by_instance["ft10"]["error"]
    # a rerun reuses ft06, runs ft10 again (failed episodes are not reused) and still exits 1
    res = evaluate(out, "env=jobshop", "names=[ft06,ft10]", "policy=spt", "policy._target_=evtest_policies.CrashOnFt10",
                   pymod=pymod)
    assert res.returncode == 1 and "resuming: 1 of 2 episodes reused" in res.stdout
    assert len(rows(out)) == 2


def _gpudag_checkpoint(tmp_path: Path) -> Path:
    """The shipped job-shop checkpoint relabelled as trained on GPU DAGs."""
    import torch

    from schedgym.agents.checkpoint import resolve_checkpoint
    from schedgym.envs.core.domain import get_domain

    payload = torch.load(resolve_checkpoint(None), weights_only=False)
    payload.update(env_id=get_domain("gpudag").env_ids[0], domain="gpudag")
    path = tmp_path / "gpudag.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("overrides,message", [
    (["env=jobshop", "names=[]"], "names=[] lists no instance"),
    (["env=jobshop", "names=[ft06]", "seeds=[]"], "seeds=[] runs no episode"),
    (["env=jobshop", "names=[ft06]", "policy=heft"], "policy 'heft' applies to [gpudag], not 'jobshop'"),
    (["env=vmsched", "policy=mwkr"], "policy 'mwkr' applies to [jobshop], not 'vmsched'"),
    (["env=gpudag", "policy=ppo_gnn", "policy.samples=4", "policy.checkpoint=jobshop_gnn"],
     "checkpoint 'jobshop_gnn' was trained on 'jobshop'"),
    (["env=gpudag", "policy=ppo_gnn", "policy.checkpoint=jobshop_gnn"], "policy 'ppo_gnn' applies to [jobshop], not 'gpudag'"),
    (["env=jobshop", "names=[ft06]", "policy=ppo_gnn", "policy.checkpoint=GPUDAG_CKPT"],
     "policy 'ppo_gnn' applies to [gpudag], not 'jobshop'"),
    (["env=jobshop", "names=[ft6]"], "unknown job-shop instance or set 'ft6'"),
    (["env=jobshop", "policy=nope"], "Could not find 'policy/nope'"),
])
def test_bad_command_line_exits_2_before_any_episode(tmp_path, overrides, message):
    overrides = [o.replace("GPUDAG_CKPT", str(_gpudag_checkpoint(tmp_path))) if "GPUDAG_CKPT" in o else o
                 for o in overrides]
    out = tmp_path / "run"
    res = evaluate(out, *overrides)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert message in res.stderr
    assert not (out / "results.csv").exists()


def test_seeds_must_be_integers(tmp_path):
    res = evaluate(tmp_path / "run", "env=jobshop", "names=[ft06]", "seeds=[a]")
    assert res.returncode == 2 and re.search(r"seeds: 'a' is not an integer", res.stderr)
