"""The shipped GPU-DAG policy's bars (issue 12), on the evaluation sets of the README's SLR table.

Static: greedy mean SLR of ``agents/checkpoints/gpudag_gnn.pt`` at most HEFT's on every cell
(Topcuoglu DAGs, 50 tasks x 50 DAGs and 100 tasks x 20 DAGs, CCR 0.1 / 1 / 5), i.e.::

    python scripts/evaluate.py env=gpudag workload=topcuoglu_v50_ccr1 policy=ppo_gnn
    python scripts/evaluate.py env=gpudag workload=topcuoglu_v50_ccr1 policy=heft

Slow (about a minute): marked ``slow``, run by CI's slow step.
"""

from __future__ import annotations

import numpy as np
import pytest

from schedgym.agents.trained import load_trained_agent
from schedgym.baselines.heft import heft
from schedgym.envs.core.domain import get_domain
from schedgym.envs.core.episode import env_kwargs_for_agent, run_episode
from schedgym.envs.gpudag.metrics import metrics

CELLS = [(50, "0.1", 50), (50, "1", 50), (50, "5", 50), (100, "0.1", 20), (100, "1", 20), (100, "5", 20)]


@pytest.mark.slow
@pytest.mark.parametrize("tasks,ccr,count", CELLS)
def test_learned_greedy_slr_at_most_heft(tasks, ccr, count):
    domain = get_domain("gpudag")
    agent = load_trained_agent(domain="gpudag")
    env_kwargs = env_kwargs_for_agent({"reward": "auto"}, agent)
    assert env_kwargs["action_mode"] == "task"
    learned, ref = [], []
    for s in range(count):
        inst = domain.load(f"topcuoglu-v{tasks}-ccr{ccr}-a1-b0.5-o3-p4-s{s}")
        res = run_episode(domain, inst, agent, seed=0, suite="bars", env_kwargs=env_kwargs)
        assert res.status == "ok", res.error
        learned.append(res.metrics["slr"])
        ref.append(metrics(inst, heft(inst))["slr"])
    assert np.mean(learned) <= np.mean(ref), (np.mean(learned), np.mean(ref))
