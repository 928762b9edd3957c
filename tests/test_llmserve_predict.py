"""Length prediction: the rank-correlated predictor stand-in, its use in the envs (reveal="rank"),
in SRPT (srpt_rank) and in memory-aware admission, and LAPS-style short/long prompt queues."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

import schedgym  # noqa: F401
from schedgym.baselines.llm_admission import KVAdmission
from schedgym.baselines.llm_queue import QueueOrderPolicy, laps_key, queue_key
from schedgym.envs.llmserve.metrics import per_request
from schedgym.envs.llmserve.predict import predict_lengths
from schedgym.envs.llmserve.sim import DEFER, simulate
from schedgym.envs.llmserve.validate import validate
from schedgym.envs.llmserve.workload import build_workload


def _spearman(a, b) -> float:
    return float(np.corrcoef(pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy())[0, 1])


@pytest.fixture(scope="module")
def lengths():
    return build_workload("azure_conv:rate=10:n=5000:seed=0").output


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.8, 1.0])
def test_rank_predictor_has_the_requested_rank_correlation(lengths, rho):
    pred = predict_lengths(lengths, "rank", rho=rho, seed=1)
    assert _spearman(pred, lengths) == pytest.approx(rho, abs=0.04)
    # the predictions follow the workload's length distribution
    q = [0.1, 0.5, 0.9]
    np.testing.assert_allclose(np.quantile(pred, q), np.quantile(lengths, q), rtol=0.15)
    np.testing.assert_array_equal(pred, predict_lengths(lengths, "rank", rho=rho, seed=1))  # seeded


def test_other_predictors_and_bad_arguments(lengths):
    np.testing.assert_array_equal(predict_lengths(lengths, "oracle"), lengths)
    noisy = predict_lengths(lengths, "noisy", sigma=0.5, seed=2)
    assert np.std(np.log(noisy / lengths)) == pytest.approx(0.5, rel=0.1)
    with pytest.raises(ValueError, match="rho"):
        predict_lengths(lengths, "rank", rho=1.5)
    with pytest.raises(ValueError, match="length predictor must be one of"):
        predict_lengths(lengths, "magic")
    with pytest.raises(ValueError, match="predictor_rho"):
        gym.make("schedgym/LLMQueue-v0", reveal="rank", predictor_rho=2.0)


def test_env_reveals_rank_predictions():
    env = gym.make("schedgym/LLMQueue-v0", reveal="rank", predictor_rho=0.6)
    check_env(env.unwrapped, skip_render_check=True)
    u = env.unwrapped
    obs, info = u.reset(seed=3, options={"instance": "azure_conv:rate=6:n=400:seed=1"})
    pred = np.array([u._revealed(r) for r in range(u.instance.n_requests)])
    assert _spearman(pred, u.instance.output) == pytest.approx(0.6, abs=0.12)
    vis = info["candidates"]["rid"]
    np.testing.assert_allclose(obs["x"][: len(vis), 5], pred[vis] / 1e3, rtol=1e-6)


@pytest.mark.parametrize("rule", ["srpt_rank", "laps"])
def test_prediction_rules_in_env_equal_inline(rule):
    name = "azure_conv:rate=5:n=200:seed=2:replicas=2"
    env = gym.make("schedgym/LLMQueue-v0", instance=name).unwrapped
    obs, info = env.reset(seed=0)
    pol = QueueOrderPolicy(rule, rho=0.7)
    pol.reset(env)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(pol.act(obs, info))
        done = term or trunc
    inst = build_workload(name)
    ref = simulate(inst, queue_key=queue_key(rule, rho=0.7))
    np.testing.assert_allclose(info["solution"].completion, ref.completion)
    validate(inst, info["solution"])


def test_srpt_rank_interpolates_between_fcfs_like_and_srpt():
    inst = build_workload("azure_conv:rate=4.4:n=600:seed=0:batch_cap=16")
    e2e = {}
    for label, key in (("rho0", queue_key("srpt_rank", rho=0.0)), ("rho1", queue_key("srpt_rank", rho=1.0)),
                       ("srpt", queue_key("srpt"))):
        e2e[label] = float(np.nanmean(per_request(inst, simulate(inst, queue_key=key))["e2e_s"]))
    assert e2e["rho1"] < e2e["rho0"]  # a perfect ranking beats an uninformative one
    assert e2e["rho1"] == pytest.approx(e2e["srpt"], rel=0.05)


def test_laps_serves_short_prompts_first():
    assert laps_key(100, 5.0, 5.1, 1024, 1.0) < laps_key(3000, 4.8, 5.1, 1024, 1.0)  # short before older long
    assert laps_key(3000, 4.0, 5.1, 1024, 1.0)[0] == 0  # waited 1.1 s: joins the short queue
    inst = build_workload("azure_conv:rate=4.2:n=600:seed=0")
    short = inst.prompt <= 1024
    ttft = {q: np.nanmean(per_request(inst, simulate(inst, queue_key=queue_key(q)))["ttft_s"][short])
            for q in ("fcfs", "laps")}
    assert ttft["laps"] < ttft["fcfs"]


def test_kv_admission_with_rank_predictor():
    small = build_workload("azure_conv:rate=8:n=60:seed=0:num_blocks=400:max_tokens=1024")
    sol = simulate(small, admission=KVAdmission(predictor="rank", rho=0.8))
    validate(small, sol)
    assert (sol.adm_kind == DEFER).any()
