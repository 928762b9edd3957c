"""ObsActionMasks answers MaskablePPO's per-step mask query from the observations: the same masks
as the envs' action_masks(), through steps, invalid actions and automatic resets."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

import schedgym  # noqa: F401  (registers the env ids)
from schedgym.agents.train import ObsActionMasks, make_env_fn
from schedgym.envs.gpudag.generator import TopcuogluGenerator
from schedgym.envs.jobshop.generator import UniformJobShopGenerator
from schedgym.envs.vmsched.generator import VMClusterGenerator

ENVS = {
    "schedgym/VMReschedule-v0": {"generator": VMClusterGenerator(size="S"), "mnl": 5},
    "schedgym/JobShop-v0": {"generator": UniformJobShopGenerator(3, 3)},
    "schedgym/GPUDag-v0": {"generator": TopcuogluGenerator(n_tasks=8)},
}


@pytest.mark.parametrize("env_id", sorted(ENVS))
def test_masks_from_observations_equal_the_envs_masks(env_id: str) -> None:
    inner = DummyVecEnv([make_env_fn(env_id, ENVS[env_id], 0, i) for i in range(2)])
    vec = ObsActionMasks(inner)
    vec.reset()
    rng = np.random.default_rng(0)
    resets = 0
    for step in range(150):
        masks = np.stack(vec.env_method("action_masks"))
        np.testing.assert_array_equal(masks, np.stack(inner.env_method("action_masks")))
        assert masks.dtype == bool
        assert vec.env_method("action_masks", indices=1)[0].tolist() == masks[1].tolist()
        # mostly valid actions, sometimes an invalid one (a no-op)
        actions = [int(rng.choice(np.flatnonzero(m))) if step % 7 else int(np.flatnonzero(~m)[0]) if (~m).any()
                   else 0 for m in masks]
        _, _, dones, _ = vec.step(np.array(actions))
        resets += int(dones.sum())
    assert resets > 0  # automatic resets were crossed
    assert vec.env_method("get_wrapper_attr", "spec")[0].id == env_id  # other methods pass through
