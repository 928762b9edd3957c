"""A graph extractor for (operation, machine) pair actions: each action's features also carry the
pair's own observed features.

:class:`PairSkipExtractor` is :class:`~schedgym.agents.extractor.PaddedGraphExtractor` plus a skip
connection: each action's features are ``[h(op) || h(machine) || relu(W [x(op) || x(machine) || attr])]``
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
from torch import nn

from schedgym.agents.extractor import PaddedGraphExtractor


class PairSkipExtractor(PaddedGraphExtractor):
    """:class:`PaddedGraphExtractor` with each action's projected raw features appended.

    Args (besides the parent's):
        skip_dim: width of the linear projection of ``[x(op) || x(machine) || action_attr]``.
    """

    def __init__(self, observation_space: gym.spaces.Dict, skip_dim: int = 32, **kwargs):
        super().__init__(observation_space, **kwargs)
        spaces = observation_space.spaces
        self.n_attr = spaces["action_attr"].shape[1] if "action_attr" in spaces else 0
        skip_in = self.in_dim * (2 if self.pair else 1) + self.n_attr
        self.skip = nn.Linear(skip_in, skip_dim)
        self.skip_dim = skip_dim
        self.base_per_action = self.per_action_dim
        self.per_action_dim = self.base_per_action + skip_dim
        self._features_dim = self.n_actions * self.per_action_dim + self.hidden_dim

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        # the parent lays out its own per-action width (the GNN part); ours adds the skip part
        self.per_action_dim = self.base_per_action
        try:
            base = super().forward(obs)
        finally:
            self.per_action_dim = self.base_per_action + self.skip_dim
        x = obs["x"]
        B, N, F = x.shape
        A = (base.shape[1] - self.hidden_dim) // self.base_per_action
        a = base[:, : A * self.base_per_action].reshape(B, A, self.base_per_action)
        g = base[:, A * self.base_per_action:]
        parts = [self._gather(x, obs["action_node"])]
        if self.pair:
            parts.append(self._gather(x, obs["action_machine_node"]))
        if self.n_attr:
            parts.append(obs["action_attr"])
        # invalid actions keep all-zero features, as in the parent (their logits are masked anyway)
        skip = torch.relu(self.skip(torch.cat(parts, dim=-1))) * obs["action_mask"].unsqueeze(-1).to(x.dtype)
        a = torch.cat([a, skip], dim=-1)
        return torch.cat([a.reshape(B, -1), g], dim=-1)

    @staticmethod
    def _gather(x: torch.Tensor, node: torch.Tensor) -> torch.Tensor:
        """(B, A, F) feature rows of the nodes ``node`` (B, A) points at."""
        idx = node.long().clamp(0, x.shape[1] - 1)
        return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
