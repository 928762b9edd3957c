"""A rollout buffer for dict observations that does not copy the observations before each PPO update.

sb3-contrib's ``MaskableDictRolloutBuffer.get`` first copies every observation array from its
``(n_steps, n_envs, ...)`` layout into env-major flat order (``swap_and_flatten``) and then gathers
the minibatches from the copy. For the padded graph observations of VMReschedule-v0 at S size that
is about 100 MB per rollout of 2,048 steps, copied once more than needed. :class:`DirectDictRolloutBuffer`
gathers each minibatch straight from the ``(n_steps, n_envs, ...)`` arrays: flat index ``i`` of the
env-major order is step ``i % n_steps`` of env ``i // n_steps``. The permutation is drawn as before
(``np.random.permutation``), so the minibatches hold the same samples in the same order.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer, MaskableDictRolloutBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

_SMALL = ("actions", "values", "log_probs", "advantages", "returns", "action_masks")


class DirectDictRolloutBuffer(MaskableDictRolloutBuffer):
    """``MaskableDictRolloutBuffer`` with the same minibatches, gathered without the flat copy of the
    observations (see the module docstring); the small per-step arrays are flattened as before."""

    def get(self, batch_size: int | None = None) -> Generator[MaskableDictRolloutBufferSamples, None, None]:  # type: ignore[override]
        assert self.full, ""
        indices = np.random.permutation(self.buffer_size * self.n_envs)
        if not self.generator_ready:
            for name in _SMALL:
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
            self.generator_ready = True
        if batch_size is None:
            batch_size = self.buffer_size * self.n_envs
        start_idx = 0
        while start_idx < self.buffer_size * self.n_envs:
            yield self._get_samples(indices[start_idx: start_idx + batch_size])
            start_idx += batch_size

    def _get_samples(self, batch_inds: np.ndarray,  # type: ignore[override]
                     env: VecNormalize | None = None) -> MaskableDictRolloutBufferSamples:
        env_idx, step_idx = np.divmod(batch_inds, self.buffer_size)
        return MaskableDictRolloutBufferSamples(
            observations={key: self.to_torch(obs[step_idx, env_idx]) for key, obs in self.observations.items()},
            actions=self.to_torch(self.actions[batch_inds]),
            old_values=self.to_torch(self.values[batch_inds].flatten()),
            old_log_prob=self.to_torch(self.log_probs[batch_inds].flatten()),
            advantages=self.to_torch(self.advantages[batch_inds].flatten()),
            returns=self.to_torch(self.returns[batch_inds].flatten()),
            action_masks=self.to_torch(self.action_masks[batch_inds].reshape(-1, self.mask_dims)),
        )
