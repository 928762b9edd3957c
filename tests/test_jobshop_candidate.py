"""Job-shop candidate features (``candidate_features=True``) and the candidate-attention extractor."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import schedgym  # noqa: F401
from schedgym.agents.candidate_extractor import CandidateAttentionExtractor
from schedgym.agents.policies import GraphPointerPolicy, masked_logits
from schedgym.agents.self_labeling import _stack
from schedgym.envs.jobshop.candidate_features import N_CANDIDATE_FEATURES


def _env(**kw) -> gym.Env:
    return gym.make("schedgym/JobShop-v0", instance="ft06", scheme="non_delay", time_origin="now", **kw)


def _reference(env: gym.Env, job: int) -> dict[str, float]:
    """Features 4-6 and 10 of ``job``'s candidate recomputed operation by operation."""
    u = env.unwrapped
    st, inst, ts = u.state, u.instance, u.time_scale
    o = int(st.next_op[job])
    m = int(inst.op_machine[o])
    work = sum(int(st.min_proc[q]) for q in range(inst.n_ops) if st.start[q] < 0 and inst.op_machine[q] == m)
    count = sum(1 for q in range(inst.n_ops) if st.start[q] < 0 and inst.op_machine[q] == m)
    mask = u._mask
    rivals = sum(1 for j in range(inst.n_jobs) if mask[j] and inst.op_machine[st.next_op[j]] == m)
    nxt = 0.0
    if o + 1 < st.job_end[job]:
        m2 = int(inst.op_machine[o + 1])
        nxt = sum(int(st.min_proc[q]) for q in range(inst.n_ops)
                  if st.start[q] < 0 and inst.op_machine[q] == m2) / ts
    return {"work": work / ts, "count": count / inst.n_jobs, "rivals": rivals / inst.n_jobs, "next": nxt}


def test_candidate_features_match_a_direct_count_along_an_episode() -> None:
    env = _env(candidate_features=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["action_attr"].shape == (6, N_CANDIDATE_FEATURES)
    rng = np.random.default_rng(0)
    done, steps = False, 0
    while not done:
        mask = np.asarray(info["action_mask"], dtype=bool)
        attr = obs["action_attr"]
        assert not attr[~mask].any()  # invalid actions: zero rows
        for j in np.flatnonzero(mask):
            ref = _reference(env, int(j))
            np.testing.assert_allclose(attr[j, [4, 5, 6, 10]],
                                       [ref["work"], ref["count"], ref["rivals"], ref["next"]], rtol=1e-5)
            assert 0.0 < attr[j, 7] <= 1.0 and 0.0 < attr[j, 8] <= 1.0  # ratios to the largest
        obs, _, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(mask))))
        done, steps = term or trunc, steps + 1
    assert steps == 36


def test_default_observation_has_no_candidate_key_and_flexible_env_refuses() -> None:
    obs, _ = _env().reset(seed=0)
    assert "action_attr" not in obs
    with pytest.raises(ValueError, match="candidate_features"):
        gym.make("schedgym/FlexibleJobShop-v0", instance="mk01", candidate_features=True)


def _policy(env: gym.Env, **kw) -> GraphPointerPolicy:
    torch.manual_seed(0)
    return GraphPointerPolicy(env.observation_space, env.action_space, lambda _: 1e-4,
                              features_extractor_class=CandidateAttentionExtractor,
                              features_extractor_kwargs=kw)


def test_extractor_needs_the_candidate_key() -> None:
    env = _env()
    with pytest.raises(ValueError, match="candidate_features=true"):
        _policy(env)


def test_logits_do_not_depend_on_the_padding_and_attention_mixes_candidates() -> None:
    small = _env(candidate_features=True)
    big = gym.make("schedgym/JobShop-v0", instance="ft06", scheme="non_delay", time_origin="now",
                   candidate_features=True, max_jobs=10, max_machines=10, max_ops=100)
    policy = _policy(small)
    o_s, i_s = small.reset(seed=0)
    o_b, i_b = big.reset(seed=0)
    with torch.no_grad():
        l_s = masked_logits(policy, _stack([o_s]), i_s["action_mask"][None])[0]
        l_b = masked_logits(policy, _stack([o_b]), i_b["action_mask"][None])[0]
    torch.testing.assert_close(l_b[:6], l_s, rtol=1e-4, atol=1e-5)
    assert (l_b[6:] == -1e8).all()
    # attention: one candidate's logit changes when another candidate's context features change
    valid = np.flatnonzero(i_s["action_mask"])
    assert len(valid) >= 2
    other = dict(o_s)
    other["action_attr"] = o_s["action_attr"].copy()
    other["action_attr"][valid[1]] += 1.0
    with torch.no_grad():
        l_o = masked_logits(policy, _stack([other]), i_s["action_mask"][None])[0]
    assert abs(float(l_o[valid[0]] - l_s[valid[0]])) > 1e-6
    # without attention layers the other candidates' rows do not matter
    plain = _policy(small, attention_layers=0)
    with torch.no_grad():
        p_s = masked_logits(plain, _stack([o_s]), i_s["action_mask"][None])[0]
        p_o = masked_logits(plain, _stack([other]), i_s["action_mask"][None])[0]
    assert float(p_o[valid[0]]) == pytest.approx(float(p_s[valid[0]]), abs=1e-6)


@pytest.mark.slow
def test_candidate_recipe_trains_selects_and_evaluates(tmp_path) -> None:
    """experiment=sls_jobshop_v2, shrunk: self-labeling with candidate features and attention, held-out
    selection, a checkpoint that records candidate_features, and evaluate.py runs it with the
    env keyword and without it (the checkpoint's recorded candidate_features applies)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    r = subprocess.run([sys.executable, str(root / "scripts" / "train.py"), "experiment=sls_jobshop_v2",
                        "logger=tensorboard", "progress_bar=false", "agent.algo.iterations=2", "agent.algo.samples=3",
                        "agent.algo.eval_every=2", "env.train.eval_env_kwargs.instance=[ft06]",
                        "env.train.eval_episodes=1", f"hydra.run.dir={tmp_path}"],
                       capture_output=True, text=True, cwd=root, env=env, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    payload = torch.load(tmp_path / "best_policy.pt", weights_only=False)
    assert payload["env_kwargs"]["candidate_features"] is True and payload["meta"]["iteration"] == 2
    base = [sys.executable, str(root / "scripts" / "evaluate.py"), "env=jobshop", "names=[ft06]", "policy=ppo_gnn",
            f"policy.checkpoint={tmp_path / 'best_policy.pt'}"]
    ok = subprocess.run(base + ["+env.kwargs.candidate_features=true", f"hydra.run.dir={tmp_path / 'ev'}"],
                        capture_output=True, text=True, cwd=root, env=env, timeout=300)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert "ft06" in (tmp_path / "ev" / "results.csv").read_text()
    plain = subprocess.run(base + [f"hydra.run.dir={tmp_path / 'ev2'}"], capture_output=True, text=True, cwd=root,
                           env=env, timeout=300)
    assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-3000:]

    def makespan(run: str) -> str:
        rows = (tmp_path / run / "results.csv").read_text().splitlines()
        header, row = rows[0].split(","), rows[1].split(",")
        return row[header.index("makespan")]

    assert makespan("ev2") == makespan("ev")  # the checkpoint's candidate_features applies by itself
