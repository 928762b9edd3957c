"""A graph extractor for (operation, machine) pair actions: each action's features also carry the
pair's own observed features.

:class:`PairSkipExtractor` is :class:`~schedgym.agents.skip_extractor.SkipGraphExtractor` with a wider
skip connection: each action's features are ``[h(op) || h(machine) || relu(W [x(op) || x(machine) || attr])]``
where ``x`` are the nodes' observed feature rows, ``attr`` the action's row of the optional
``action_attr`` observation key (the flexible job-shop's processing time on that machine, start and
completion times, machine load; see :class:`~schedgym.envs.jobshop.env.FlexibleJobShopEnv`) and
``W`` a learned linear map. The GIN ignores edge features, so without this the scorer could not tell
a pair's processing time: it sits on the eligibility edge, not on either node. No parameter depends
on the number of nodes or actions.
"""

from __future__ import annotations

import gymnasium as gym
import torch

from schedgym.agents.skip_extractor import SkipGraphExtractor, gather_rows


class PairSkipExtractor(SkipGraphExtractor):
    """:class:`SkipGraphExtractor` whose skip projection reads the whole pair and its attributes.

    Args (besides the parent's):
        skip_dim: width of the linear projection of ``[x(op) || x(machine) || action_attr]``.
    """

    def __init__(self, observation_space: gym.spaces.Dict, skip_dim: int = 32, **kwargs):
        spaces = observation_space.spaces
        self.n_attr = spaces["action_attr"].shape[1] if "action_attr" in spaces else 0
        super().__init__(observation_space, skip_dim=skip_dim, **kwargs)

    def _skip_in_dim(self, observation_space: gym.spaces.Dict) -> int:
        return self.in_dim * (2 if self.pair else 1) + self.n_attr

    def _skip_input(self, x: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [gather_rows(x, obs["action_node"])]
        if self.pair:
            parts.append(gather_rows(x, obs["action_machine_node"]))
        if self.n_attr:
            parts.append(obs["action_attr"])
        return torch.cat(parts, dim=-1)
