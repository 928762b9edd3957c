import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def jobshop_greedy_makespan():
    """Makespan (time units) of the shipped job-shop policy's greedy episode on a named instance,
    run through the env (the reference the samplers' first episode must equal)."""

    def greedy(name: str) -> int:
        from schedgym.agents.trained import TrainedPolicy
        from schedgym.envs.core.domain import get_domain
        from schedgym.envs.core.episode import env_kwargs_for_agent, run_episode

        domain = get_domain("jobshop")
        agent = TrainedPolicy()
        env_kwargs = env_kwargs_for_agent({"scheme": None, "reward": "lb"}, agent)
        res = run_episode(domain, domain.load(name), agent, seed=0, env_kwargs=env_kwargs)
        assert res.status == "ok", res.error
        return int(res.metrics["makespan"])

    return greedy
