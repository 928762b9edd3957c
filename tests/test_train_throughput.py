"""train(): env steps/s in its summary and printout; the subprocess vec env trains the same weights."""

from __future__ import annotations

import pytest
import torch

from schedgym.agents.checkpoint import read_checkpoint
from schedgym.agents.policies import GraphPointerPolicy
from schedgym.agents.train import make_vec_env, train
from schedgym.envs.jobshop.generator import UniformJobShopGenerator

ALGO = {"n_steps": 32, "batch_size": 32, "n_epochs": 1, "learning_rate": 3e-4}
POLICY = {"features_extractor_kwargs": {"hidden_dim": 8, "num_layers": 2}, "head_hidden_dim": 8}


def _train(tmp_path, name: str, **kwargs) -> tuple[dict, torch.Tensor]:
    summary = train(env_id="schedgym/JobShop-v0", env_kwargs={"generator": UniformJobShopGenerator(4, 4)},
                    policy_class=GraphPointerPolicy, policy_kwargs=POLICY, algo_kwargs=ALGO, total_timesteps=64,
                    out_dir=tmp_path / name, seed=3, tensorboard=False, **kwargs)
    state = read_checkpoint(summary["policy"])["state_dict"]
    return summary, torch.cat([v.flatten().float() for v in state.values()])


def test_summary_and_printout_report_env_steps_per_s(tmp_path, capsys) -> None:
    summary, _ = _train(tmp_path, "a")
    assert summary["timesteps"] == 64
    assert summary["env_steps_per_s"] > 0 and summary["learn_wall_s"] > 0
    assert summary["env_steps_per_s"] == pytest.approx(64 / summary["learn_wall_s"])
    assert summary["learn_cpu_s"] > 0
    out = capsys.readouterr().out
    assert "env steps/s" in out and "steps per CPU-second" in out


def test_default_training_is_deterministic(tmp_path) -> None:
    assert torch.equal(_train(tmp_path, "a")[1], _train(tmp_path, "b")[1])


@pytest.mark.slow
def test_subproc_vec_env_trains_the_same_weights_as_dummy(tmp_path) -> None:
    """The worker processes step the same seeded envs, so the transitions and weights are identical."""
    _, dummy = _train(tmp_path, "d", n_envs=2, vec_env="dummy")
    _, sub = _train(tmp_path, "s", n_envs=2, vec_env="subproc")
    assert torch.equal(dummy, sub)


def test_bad_vec_env_names_the_option() -> None:
    with pytest.raises(ValueError, match="agent.vec_env"):
        make_vec_env("schedgym/JobShop-v0", {}, 0, 1, "threads")
