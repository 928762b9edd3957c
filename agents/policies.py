"""Maskable actor-critic policies for sb3-contrib's MaskablePPO.

:class:`GraphPointerPolicy`: the node-pointer head of DESIGN.md section 3. The actor scores each
action from ``[a_i || g]`` (a_i: embedding of the node(s) the action points at, g: graph embedding)
with one shared MLP, so its parameters do not depend on the number of actions; the critic is an MLP
over ``g``. Build it with ``features_extractor_class=PaddedGraphExtractor``.
"""

from __future__ import annotations

from typing import Any

import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn
from torch.nn import functional as F

from schedgym.agents.extractor import PaddedGraphExtractor


class PointerHeads(nn.Module):
    """Splits the extractor's features into per-action latents and the value latent.

    ``latent_pi`` is ``(B, A * h)``: for each action the hidden layer of the shared scorer MLP;
    ``latent_vf`` is ``(B, h)``.
    """

    def __init__(self, n_actions: int, per_action_dim: int, graph_dim: int, hidden_dim: int = 64):
        super().__init__()
        self.n_actions, self.per_action_dim, self.graph_dim = n_actions, per_action_dim, graph_dim
        self.actor = nn.Sequential(nn.Linear(per_action_dim + graph_dim, hidden_dim), nn.Tanh(),
                                   nn.Linear(hidden_dim, hidden_dim), nn.Tanh())
        self.critic = nn.Sequential(nn.Linear(graph_dim, hidden_dim), nn.Tanh(),
                                    nn.Linear(hidden_dim, hidden_dim), nn.Tanh())
        self.latent_dim_pi = n_actions * hidden_dim
        self.latent_dim_vf = hidden_dim
        self.hidden_dim = hidden_dim

    def _split(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the number of actions is read from the input, so one module serves any padded size
        B = features.shape[0]
        n_actions = (features.shape[1] - self.graph_dim) // self.per_action_dim
        a = features[:, : n_actions * self.per_action_dim].reshape(B, n_actions, self.per_action_dim)
        g = features[:, n_actions * self.per_action_dim:]
        return a, g

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        a, g = self._split(features)
        B, A, d = a.shape
        # actor[0]([a_i || g]) = W_a a_i + (W_g g + b): the graph part once per graph, not per action;
        # a zero a_i (an invalid action, see PaddedGraphExtractor) gives actor[1:](W_g g + b), once per graph
        first, rest = self.actor[0], self.actor[1:]
        gz = F.linear(g, first.weight[:, d:], first.bias)  # (B, h)
        nz = (a != 0).any(dim=-1)  # (B, A)
        out = rest(gz).unsqueeze(1).expand(B, A, -1)
        if bool(nz.any()):
            b_idx, a_idx = nz.nonzero(as_tuple=True)
            rows = rest(F.linear(a[b_idx, a_idx], first.weight[:, :d]) + gz[b_idx])
            out = out.index_put((b_idx, a_idx), rows)
        return out.reshape(B, -1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.critic(self._split(features)[1])

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)


class SharedScorer(nn.Module):
    """``(B, A * h) -> (B, A)`` logits with one ``Linear(h, 1)`` shared by all actions."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.linear = nn.Linear(hidden_dim, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        B = latent.shape[0]
        return self.linear(latent.reshape(B, -1, self.hidden_dim)).squeeze(-1)


class GraphPointerPolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy with a GNN extractor and a node-pointer actor.

    Extra keyword: ``head_hidden_dim`` (width of the shared scorer and critic MLPs).
    """

    def __init__(self, *args: Any, head_hidden_dim: int = 64, **kwargs: Any):
        self.head_hidden_dim = head_hidden_dim
        kwargs.setdefault("features_extractor_class", PaddedGraphExtractor)
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        fe = self.features_extractor
        if not isinstance(fe, PaddedGraphExtractor):
            raise TypeError("GraphPointerPolicy needs features_extractor_class=PaddedGraphExtractor")
        self.mlp_extractor = PointerHeads(fe.n_actions, fe.per_action_dim, fe.hidden_dim, self.head_hidden_dim)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        # one scorer shared by all actions instead of SB3's Linear(A*h, A); rebuild the optimizer,
        # else the new parameters would never be trained
        self.action_net = SharedScorer(self.head_hidden_dim)
        if self.ortho_init:
            self.action_net.apply(lambda m: self.init_weights(m, gain=0.01))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["head_hidden_dim"] = self.head_hidden_dim
        return data


def masked_logits(policy: MaskableActorCriticPolicy, obs: dict[str, torch.Tensor], masks) -> torch.Tensor:
    """(B, A) action logits with invalid actions at -1e8.

    Unlike ``policy.get_distribution`` this does not check the action count against the policy's
    action space, so a :class:`GraphPointerPolicy` scores any padded size with the same module.
    """
    features = policy.extract_features(obs, policy.pi_features_extractor)
    latent = policy.mlp_extractor.forward_actor(features)
    logits = policy.action_net(latent)
    m = torch.as_tensor(masks, dtype=torch.bool, device=logits.device).reshape(logits.shape)
    return torch.where(m, logits, torch.full_like(logits, -1e8))
