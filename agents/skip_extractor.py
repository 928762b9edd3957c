"""A graph extractor whose per-action features also carry the action node's raw input features.

:class:`SkipGraphExtractor` is :class:`~schedgym.agents.extractor.PaddedGraphExtractor` plus a skip
connection: each action's features are ``[h(node) (|| h(machine node)) || relu(W x(node))]``, where
``x`` is the node's observed feature row and ``W`` a learned linear map. After several rounds of sum
aggregation a node's own features (for example a task's upward rank or its earliest finish time) are
blurred by its neighbours'; rules such as HEFT rank candidates by exactly these, so the scorer gets
them directly. No parameter depends on the number of nodes or actions.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from schedgym.agents.extractor import PaddedGraphExtractor


class SkipGraphExtractor(PaddedGraphExtractor):
    """:class:`PaddedGraphExtractor` with the action nodes' projected input features appended to
    each action's features.

    Args (besides the parent's):
        skip_dim: width of the linear projection of the raw node features.
    """

    def __init__(self, observation_space: gym.spaces.Dict, skip_dim: int = 32, **kwargs):
        super().__init__(observation_space, **kwargs)
        self.skip = nn.Linear(self._skip_in_dim(observation_space), skip_dim)
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
        # invalid actions keep all-zero features, as in the parent (their logits are masked anyway)
        skip = torch.relu(self.skip(self._skip_input(x, obs))) * obs["action_mask"].unsqueeze(-1).to(x.dtype)
        a = torch.cat([a, skip], dim=-1)
        return torch.cat([a.reshape(B, -1), g], dim=-1)

    def _skip_in_dim(self, observation_space: gym.spaces.Dict) -> int:
        """Width of :meth:`_skip_input`'s rows: the node feature width."""
        return self.in_dim

    def _skip_input(self, x: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, A, F) raw input of each action's skip projection: its action node's feature row."""
        return gather_rows(x, obs["action_node"])


def gather_rows(x: torch.Tensor, node: torch.Tensor) -> torch.Tensor:
    """(B, A, F) feature rows of the nodes ``node`` (B, A) points at (indices clamped into range)."""
    idx = node.long().clamp(0, x.shape[1] - 1)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
