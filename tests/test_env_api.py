"""Every registered schedgym env: Gymnasium's checker, determinism, invalid actions, rendering, and the
episode order (reset before step; no step after the end or after a failed reset)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

import schedgym  # noqa: F401
from schedgym.envs import ENV_SPECS
from schedgym.envs.core.errors import ResetNeededError, UnknownNameError

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


def _first_state_with_a_masked_action(env_id, max_steps=1000):
    """A fresh env advanced (always the first valid action, seed 0) to the first state where some action
    is masked, with the actions taken to get there; deterministic, so the state can be rebuilt."""
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    prefix = []
    for _ in range(max_steps):
        mask = env.unwrapped.action_masks()
        if not mask.all():
            return env, obs, info, prefix
        prefix.append(int(np.flatnonzero(mask)[0]))
        obs, _, term, trunc, info = env.step(prefix[-1])
        assert not (term or trunc), f"{env_id}: the episode ended before any action was masked"
    raise AssertionError(f"{env_id}: no masked action in {max_steps} steps")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_invalid_action_is_a_noop(env_id):
    """An invalid action: penalty reward, info["invalid_action"] True, not the end, and no change of
    state (same observation, and the next valid action does exactly what it does without it)."""
    env, obs, info, prefix = _first_state_with_a_masked_action(env_id)
    mask = env.unwrapped.action_masks()
    bad, good = int(np.flatnonzero(~mask)[0]), int(np.flatnonzero(mask)[0])
    obs2, r, term, trunc, info2 = env.step(bad)
    assert info2["invalid_action"] is True
    assert r < 0
    if hasattr(env.unwrapped, "invalid_action_penalty"):
        assert r == env.unwrapped.invalid_action_penalty
    assert not term and not trunc
    for k in obs:
        assert np.array_equal(obs[k], obs2[k]), k
    assert np.array_equal(info2["action_mask"], info["action_mask"])
    # the same valid action after the invalid one and on a twin that never saw it: same outcome
    twin, *_ = _first_state_with_a_masked_action(env_id)
    after = env.step(good)
    expected = twin.step(good)
    assert after[4]["invalid_action"] is False
    assert after[1:4] == expected[1:4]
    for k in expected[0]:
        assert np.array_equal(after[0][k], expected[0][k]), k


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


def _first_valid(info) -> int:
    return int(np.flatnonzero(info["action_mask"])[0])


def _play_to_end(env, seed=0):
    """Reset, then take the first valid action until the episode ends; the last step's outputs."""
    _, info = env.reset(seed=seed)
    while True:
        out = env.step(_first_valid(info))
        info = out[4]
        if out[2] or out[3]:
            return out


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_step_before_reset_raises(env_id):
    env = gym.make(env_id)
    with pytest.raises(ResetNeededError, match=r"call reset\(\) before step\(\): the env has not been reset"):
        env.step(0)
    with pytest.raises(ResetNeededError, match=r"call reset\(\) before action_masks\(\)"):
        env.unwrapped.action_masks()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_step_after_the_episode_ended_raises_the_same_error(env_id):
    env = gym.make(env_id)
    _, _, terminated, truncated, info = _play_to_end(env)
    assert terminated and not truncated and "solution" in info
    mask = env.unwrapped.action_masks()  # the final state can still be read
    with pytest.raises(ResetNeededError, match=r"call reset\(\) before step\(\): the episode has ended"):
        env.step(int(np.flatnonzero(mask)[0]) if mask.any() else 0)
    with pytest.raises(ResetNeeded):  # Gymnasium's own class, for code that catches that
        env.step(0)
    _, info = env.reset(seed=1)  # a new episode steps again
    env.step(_first_valid(info))


#: small LLM workloads, so that truncation (after 10 * N + 100 invalid actions) comes quickly
SMALL = {"schedgym/LLMRouting-v0": {"instance": "azure_conv:rate=10:n=20:replicas=4"},
         "schedgym/LLMQueue-v0": {"instance": "azure_conv:rate=3:n=20"}}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_step_after_truncation_raises(env_id):
    env = gym.make(env_id, **SMALL.get(env_id, {})).unwrapped
    env.reset(seed=0)
    out_of_range = int(env.action_space.n)  # an invalid action: a penalised no-op
    for _ in range(5000):
        _, _, terminated, truncated, info = env.step(out_of_range)
        assert info["invalid_action"] and not terminated
        if truncated:
            break
    assert truncated
    with pytest.raises(ResetNeededError, match=r"call reset\(\) before step\(\): the episode has ended"):
        env.step(out_of_range)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_failed_reset_leaves_the_env_needing_a_reset(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    _, info = env.reset(seed=0)
    a = _first_valid(info)
    with pytest.raises(UnknownNameError, match="no-such-instance"):
        env.reset(seed=0, options={"instance": "no-such-instance"})
    with pytest.raises(ResetNeededError, match=r"call reset\(\) before step\(\): the last reset\(\) raised"):
        env.step(a)
    with pytest.raises(ResetNeededError, match=r"the last reset\(\) raised"):
        env.unwrapped.action_masks()
    assert env.unwrapped.render() is None  # nothing stale is drawn either
    obs, info = env.reset(seed=0)
    obs2, _, _, _, info2 = env.step(_first_valid(info))
    assert env.observation_space.contains(obs2) and info2["invalid_action"] is False
