"""One migration limit per VM episode: the run's ``env.kwargs.mnl`` (else the instance's) reaches the
env, every policy and solver, the validator and the ``mnl`` metric; a plan's declared limit never
raises the instance's."""

import csv
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from vmsched_helpers import tiny_instance

import schedgym  # noqa: F401
from schedgym.baselines.vm_bestfit import VMBestFitPolicy
from schedgym.baselines.vm_cpsat import VMCPSATSolver
from schedgym.baselines.vm_cpsat_lns import VMCPSATLNSSolver
from schedgym.baselines.vm_greedy import VMGreedyPolicy
from schedgym.baselines.vm_joint_greedy import VMJointGreedyPolicy
from schedgym.baselines.vm_random import VMRandomPolicy
from schedgym.envs.core.domain import get_domain
from schedgym.envs.core.episode import apply_env_overrides, run_episode
from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.vmsched.instances import generate, write_snapshot
from schedgym.envs.vmsched.metrics import metrics
from schedgym.envs.vmsched.types import VMSolution
from schedgym.envs.vmsched.validate import validate

ROOT = Path(__file__).resolve().parent.parent
ENV_ID = "schedgym/VMReschedule-v0"
OVERRIDE = 5  # far below what any solver uses on an S snapshot when the limit is 10000


@pytest.fixture(scope="module")
def big_limit_file(tmp_path_factory) -> Path:
    """An S-size snapshot file whose general_requirement.maximum_migration is 10000."""
    path = tmp_path_factory.mktemp("vm") / "snap_mnl10000.json"
    write_snapshot(generate("gen_s_medium_s0").with_mnl(10000), path)
    return path


AGENTS = {
    "vm_greedy": VMGreedyPolicy,
    "vm_joint_greedy": VMJointGreedyPolicy,
    "vm_bestfit": VMBestFitPolicy,
    "vm_random": lambda: VMRandomPolicy(seed=0),
    "vm_cpsat_lns": lambda: VMCPSATLNSSolver(time_limit_s=0.5),
    "vm_cpsat": VMCPSATSolver,
}


@pytest.mark.parametrize("name", list(AGENTS))
def test_override_reaches_every_policy_and_solver(big_limit_file, name):
    dom = get_domain("vmsched")
    inst = dom.load(str(big_limit_file))
    assert inst.mnl == 10000
    res = run_episode(dom, inst, AGENTS[name](), seed=0, env_kwargs={"mnl": OVERRIDE, "migration_cost": 0.0},
                      time_limit_s=1.5)
    assert res.status in ("ok", "feasible", "optimal"), res.error
    assert 0 < res.metrics["migrations"] <= OVERRIDE
    assert res.metrics["mnl"] == OVERRIDE and res.metrics["violations"] == 0


def test_without_override_the_instance_limit_applies(big_limit_file):
    """The override test has teeth: with the file's own limit the LNS uses more than OVERRIDE moves."""
    dom = get_domain("vmsched")
    res = run_episode(dom, dom.load(str(big_limit_file)), VMCPSATLNSSolver(time_limit_s=0.5), seed=0,
                      env_kwargs={"mnl": None})
    assert res.metrics["migrations"] > OVERRIDE and res.metrics["mnl"] == 10000


def test_solver_own_mnl_only_tightens_the_instance_limit(big_limit_file):
    dom = get_domain("vmsched")
    inst = apply_env_overrides(dom, dom.load(str(big_limit_file)), {"mnl": OVERRIDE})
    sol = VMCPSATLNSSolver(time_limit_s=0.3, mnl=1000).solve(inst)
    assert sol.n_moves <= OVERRIDE
    assert VMCPSATLNSSolver(time_limit_s=0.3, mnl=2).solve(inst).n_moves <= 2


def test_validator_checks_the_instance_limit_not_the_declared_one():
    inst = tiny_instance([[20, 20], [20, 20]], [(4, 1, 0, 0), (4, 1, 0, 1)], mnl=1)
    plan = VMSolution(moves=[[0, 1, 0], [1, 1, 1]], mnl=10)  # declares a larger limit than the instance's
    with pytest.raises(InfeasibleSolution, match=r"2 migrations, more than the instance's migration limit mnl=1 "
                                                 r"\(the plan declares mnl=10"):
        validate(inst, plan)
    m = metrics(inst, plan)
    assert m["violations"] == 1 and m["mnl"] == 1
    validate(inst.with_mnl(2), plan)  # the same plan under a limit of 2


def test_env_mnl_is_the_instance_limit_of_the_episode(big_limit_file):
    env = gym.make(ENV_ID, instance=str(big_limit_file), mnl=OVERRIDE)
    obs, info = env.reset(seed=0)
    assert env.unwrapped.instance.mnl == OVERRIDE and env.unwrapped.state.mnl == OVERRIDE
    done = False
    while not done:
        valid = np.flatnonzero(info["action_mask"])
        if info["phase"] == 0 and len(valid) > 1:
            valid = valid[valid != env.unwrapped.stop_action]
        obs, _, term, trunc, info = env.step(int(valid[0]))
        done = term or trunc
    assert info["solution"].n_moves == OVERRIDE and info["metrics"]["mnl"] == OVERRIDE
    validate(env.unwrapped.instance, info["solution"])


@pytest.mark.parametrize("bad", [-3, "5", True, 2.5, float("nan")])
def test_bad_mnl_override_is_an_error(big_limit_file, bad):
    dom = get_domain("vmsched")
    inst = dom.load(str(big_limit_file))
    with pytest.raises(ValueError, match=r"env\.kwargs\.mnl: the migration number limit must be a whole number >= 0"):
        apply_env_overrides(dom, inst, {"mnl": bad})
    res = run_episode(dom, inst, VMGreedyPolicy(), seed=0, env_kwargs={"mnl": bad})
    assert res.status == "failed" and "env.kwargs.mnl" in res.error
    with pytest.raises(ValueError, match=r"mnl: the migration number limit must be a whole number >= 0"):
        gym.make(ENV_ID, instance=inst, mnl=bad)


def test_leaderboard_task_uses_the_override(big_limit_file):
    from schedgym.evaluation.runners import run_task

    task = {"key": "k", "suite": "t", "domain": "vmsched", "instance_set": "custom",
            "instance": str(big_limit_file), "policy": "vm_cpsat_lns_t", "seed": 0, "config_hash": "vmlimit",
            "policy_cfg": {"_target_": "schedgym.baselines.vm_cpsat_lns.VMCPSATLNSSolver", "time_limit_s": 0.3,
                           "name": "vm_cpsat_lns_t"},
            "env_kwargs": {"mnl": OVERRIDE, "migration_cost": 0.0}, "time_limit_s": 0.3}
    row = run_task(task)
    assert row["status"] == "feasible", row["error"]
    assert row["metrics"]["migrations"] <= OVERRIDE and row["metrics"]["mnl"] == OVERRIDE


def test_evaluate_cli_writes_the_effective_limit(big_limit_file, tmp_path):
    cmd = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "env=vmsched", f"names=[{big_limit_file}]",
           "policy=vm_cpsat_lns", "time_limit_s=0.5", f"env.kwargs.mnl={OVERRIDE}", "progress=false",
           f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["status"] == "feasible"
    assert float(rows[0]["migrations"]) <= OVERRIDE and float(rows[0]["mnl"]) == OVERRIDE
    assert float(rows[0]["violations"]) == 0
