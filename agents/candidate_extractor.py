"""A graph extractor for job-shop candidates: per-candidate context features and attention among
the candidates, in the spirit of the self-labeling paper's SPN decoder (Corsini et al., NeurIPS 2024).

:class:`CandidateAttentionExtractor` is :class:`~schedgym.agents.skip_extractor.SkipGraphExtractor`
whose skip projection also reads the action's ``action_attr`` row (``JobShop-v0`` with
``candidate_features=True``: machine load, competing candidates, remaining work ratios; see
:mod:`schedgym.envs.jobshop.candidate_features`), followed by ``attention_layers`` rounds of
multi-head self-attention over the valid actions of each graph (residual, then layer norm), so that
each candidate's row is scored knowing the others. Invalid actions keep all-zero rows (the pointer
head scores them once and masks them). No parameter depends on the number of nodes or actions.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from schedgym.agents.skip_extractor import SkipGraphExtractor, gather_rows


class CandidateAttentionExtractor(SkipGraphExtractor):
    """:class:`SkipGraphExtractor` with candidate context features and attention among candidates.

    Args (besides the parent's):
        skip_dim: width of the projection of ``[x(node) || action_attr]``.
        attention_heads: heads of each attention layer (must divide the per-action width,
            ``hidden_dim + skip_dim``).
        attention_layers: rounds of self-attention over the candidates (0: none).
    """

    def __init__(self, observation_space: gym.spaces.Dict, skip_dim: int = 32, attention_heads: int = 4,
                 attention_layers: int = 1, **kwargs):
        spaces = observation_space.spaces
        if "action_attr" not in spaces:
            raise ValueError("CandidateAttentionExtractor needs the action_attr observation key: build the "
                             "job-shop env with candidate_features=true (training: env.train.env_kwargs and eval_env_kwargs; "
                             "scripts/evaluate.py: +env.kwargs.candidate_features=true)")
        self.n_attr = spaces["action_attr"].shape[1]
        super().__init__(observation_space, skip_dim=skip_dim, **kwargs)
        d = self.per_action_dim
        if attention_layers and d % attention_heads:
            raise ValueError(f"attention_heads={attention_heads} must divide the per-action width {d} "
                             "(hidden_dim + skip_dim)")
        self.attention = nn.ModuleList(nn.MultiheadAttention(d, attention_heads, batch_first=True)
                                       for _ in range(attention_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(attention_layers))

    def _skip_in_dim(self, observation_space: gym.spaces.Dict) -> int:
        return self.in_dim + self.n_attr

    def _skip_input(self, x: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([gather_rows(x, obs["action_node"]), obs["action_attr"]], dim=-1)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = super().forward(obs)
        if not len(self.attention):
            return out
        B = out.shape[0]
        d = self.per_action_dim
        A = (out.shape[1] - self.hidden_dim) // d
        a = out[:, : A * d].reshape(B, A, d)
        g = out[:, A * d:]
        mask = obs["action_mask"].bool()
        # a graph without a valid action (never at a decision) attends over all rows instead of none
        ignore = ~mask & mask.any(dim=1, keepdim=True)
        keep = mask.unsqueeze(-1).to(a.dtype)
        for attn, norm in zip(self.attention, self.norms):
            y, _ = attn(a, a, a, key_padding_mask=ignore, need_weights=False)
            a = norm(a + y) * keep  # invalid actions: zero rows again
        return torch.cat([a.reshape(B, -1), g], dim=-1)
