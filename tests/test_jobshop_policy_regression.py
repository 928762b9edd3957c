"""Regression: the shipped job-shop policy's exact greedy makespans on Taillard 15x15 and 20x20.

The values were measured (on the 2-core x86 development machine) with::

    python scripts/evaluate.py env=jobshop instances=taillard_15x15 policy=ppo_gnn
    python scripts/evaluate.py env=jobshop instances=taillard_20x20 policy=ppo_gnn

(mean gaps 18.52 % and 19.15 %, the README's figures). The greedy evaluation is deterministic on one
machine: the only source of variation is the float arithmetic of the network's kernels (CPU model,
BLAS/torch build), which can flip an argmax between near-tied actions on another machine. A change
here on the same machine means the env's observation, the action order, the checkpoint or its loading
changed.
"""

from __future__ import annotations

from schedgym.agents.trained import TrainedPolicy
from schedgym.envs.core.domain import get_domain
from schedgym.envs.core.episode import env_kwargs_for_agent, run_episode

#: greedy makespans (time units) of the shipped checkpoint, seed 0, evaluate.py's job-shop env config
TAILLARD_15X15 = {"ta01": 1437, "ta02": 1392, "ta03": 1452, "ta04": 1434, "ta05": 1437,
                  "ta06": 1431, "ta07": 1473, "ta08": 1517, "ta09": 1509, "ta10": 1479}
TAILLARD_20X20 = {"ta21": 1949, "ta22": 1883, "ta23": 1953, "ta24": 1927, "ta25": 1869,
                  "ta26": 1939, "ta27": 2015, "ta28": 1930, "ta29": 1954, "ta30": 1848}

#: ``conf/env/jobshop.yaml``'s evaluation kwargs (scheme null: the checkpoint's own)
EVAL_ENV_KWARGS = {"scheme": None, "reward": "lb"}


def _greedy_makespans(set_name: str) -> dict[str, int]:
    domain = get_domain("jobshop")
    agent = TrainedPolicy()
    env_kwargs = env_kwargs_for_agent(EVAL_ENV_KWARGS, agent)
    out = {}
    for name in domain.resolve(set_name):
        res = run_episode(domain, domain.load(name), agent, seed=0, suite=set_name, env_kwargs=env_kwargs)
        assert res.status == "ok", (name, res.error)
        out[name] = int(res.metrics["makespan"])
    return out


def test_shipped_policy_greedy_makespans_taillard_15x15() -> None:
    assert _greedy_makespans("taillard_15x15") == TAILLARD_15X15


def test_shipped_policy_greedy_makespans_taillard_20x20() -> None:
    assert _greedy_makespans("taillard_20x20") == TAILLARD_20X20
