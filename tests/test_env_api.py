"""Every registered schedgym env: Gymnasium's checker, determinism, invalid actions, rendering."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import schedgym  # noqa: F401
from schedgym.envs import ENV_SPECS

ENV_IDS = sorted(ENV_SPECS)


def _rollout(env, seed, n_steps=60):
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    trace = [obs["x"].sum()]
    for _ in range(n_steps):
        mask = env.unwrapped.action_masks()
        assert mask.shape == (env.action_space.n,)
        assert np.array_equal(mask, info["action_mask"])
        a = int(rng.choice(np.flatnonzero(mask)))
        obs, r, term, trunc, info = env.step(a)
        trace.append((a, round(float(r), 9), float(obs["x"].sum())))
        if term or trunc:
            break
    return trace


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_trajectory(env_id):
    a = _rollout(gym.make(env_id), seed=3)
    b = _rollout(gym.make(env_id), seed=3)
    assert a == b


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_invalid_action_is_a_noop(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    mask = env.unwrapped.action_masks()
    invalid = np.flatnonzero(~mask)
    if len(invalid) == 0:
        pytest.skip("every action is valid in the first state")
    obs2, r, term, trunc, info2 = env.step(int(invalid[0]))
    assert info2["invalid_action"] is True
    assert r < 0
    assert not term
    for k in obs:
        assert np.array_equal(obs[k], obs2[k]), k


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_render_rgb_array(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    mask = env.unwrapped.action_masks()
    env.step(int(np.flatnonzero(mask)[0]))
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_observation_in_space(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    mask = env.unwrapped.action_masks()
    assert np.array_equal(obs["action_mask"].astype(bool), mask)
