"""Maskable actor-critic policies for sb3-contrib's MaskablePPO.

:class:`GraphPointerPolicy`: the node-pointer head of DESIGN.md section 3. The actor scores each
action from ``[a_i || g]`` (a_i: embedding of the node(s) the action points at, g: graph embedding)
with one shared MLP, so its parameters do not depend on the number of actions; the critic is an MLP
over ``g``. Build it with ``features_extractor_class=PaddedGraphExtractor``.

With ``dedup=True`` the SB3 entry points (``forward``, ``evaluate_actions``, ``get_distribution``,
``predict_values``: MaskablePPO's rollouts and updates) take a shortcut with the same outputs up to
float rounding: the extractor's :meth:`~schedgym.agents.extractor.PaddedGraphExtractor.encode` runs
the GNN once per class of nodes it necessarily embeds alike (batches of at least ``dedup_min_batch``
graphs: PPO minibatches; rollout steps of a few envs skip the class refinement), and the actor scores
the valid actions only, from those rows, without the dense ``(B, A * d)`` features. :func:`masked_logits`
always takes the plain path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sb3_contrib.common.maskable.distributions import MaskableCategorical, MaskableDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from torch import nn
from torch.nn import functional as F

from schedgym.agents.extractor import ActionEncoding, PaddedGraphExtractor


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

    def encoded_logits(self, enc: ActionEncoding, scorer: nn.Module) -> torch.Tensor:
        """``(B, A)`` logits of :meth:`forward_actor` followed by ``scorer`` (``Linear(h, 1)``), from an
        :class:`ActionEncoding`: the valid actions' rows are scored, each invalid action gets its
        graph's zero-row score (as in :meth:`forward_actor`)."""
        g = enc.graph
        B, A = g.shape[0], enc.n_actions
        first, rest = self.actor[0], self.actor[1:]
        d = self.per_action_dim
        gz = F.linear(g, first.weight[:, d:], first.bias)  # (B, h)
        zero = scorer(rest(gz))  # (B, 1)
        if enc.one_row_per_action:  # no shared rows to find: the actor MLP on each valid action's row
            pre = F.linear(enc.table, first.weight[:, :d]) + gz.index_select(0, enc.valid // A)
            rows = scorer(rest(pre)).reshape(-1)
            return zero.expand(B, A).reshape(-1).index_copy(0, enc.valid, rows).reshape(B, A)
        # W_a a_i = sum over parts p of W_p table[index[i, p]]: each distinct row projected once;
        # actions of one graph with the same rows share a logit: the MLP runs once per such group
        T, P = enc.table.shape[0], enc.index.shape[1]
        key = enc.valid // A
        for p in range(P):
            key = key * T + enc.index[:, p]
        uniq, inv = torch.unique(key, return_inverse=True)
        w = enc.table.shape[1]
        parts = []
        for _ in range(P):
            parts.append(uniq % T)
            uniq = uniq // T
        pre = gz.index_select(0, uniq)  # uniq now holds the graph of each group
        for p, idx in enumerate(reversed(parts)):
            pre = pre + F.linear(enc.table, first.weight[:, p * w:(p + 1) * w]).index_select(0, idx)
        rows = scorer(rest(pre)).reshape(-1).index_select(0, inv)
        return zero.expand(B, A).reshape(-1).index_copy(0, enc.valid, rows).reshape(B, A)

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

    Extra keywords: ``head_hidden_dim`` (width of the shared scorer and critic MLPs); ``dedup`` (the
    shortcut of the module docstring for MaskablePPO's calls; same outputs up to float rounding).
    """

    def __init__(self, *args: Any, head_hidden_dim: int = 64, dedup: bool = False, **kwargs: Any):
        self.head_hidden_dim = head_hidden_dim
        self.dedup = dedup
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
        data["dedup"] = self.dedup
        return data

    # ------------------------------------------------------------------------------------------
    # the dedup shortcut of SB3's entry points
    # ------------------------------------------------------------------------------------------
    #: batches smaller than this (rollout steps of a few envs) skip the class refinement, which there
    #: costs more than it saves (VM S, measured: equal at 8 graphs, 15 % less at 16); they still take
    #: the valid-actions-only path (the GNN on the real nodes, the actor on the valid actions' rows)
    dedup_min_batch = 8

    def _encoded(self, obs: dict[str, torch.Tensor]) -> bool:
        return self.dedup and self.share_features_extractor and isinstance(self.mlp_extractor, PointerHeads)

    def _encode(self, obs: dict[str, torch.Tensor]) -> ActionEncoding:
        pre = preprocess_obs(obs, self.observation_space, self.normalize_images)
        return self.features_extractor.encode(pre, dedup=pre["x"].shape[0] >= self.dedup_min_batch)

    def _distribution(self, enc: ActionEncoding, action_masks: np.ndarray | None) -> MaskableDistribution:
        logits = self.mlp_extractor.encoded_logits(enc, self.action_net.linear)
        # what proba_distribution(logits) then apply_masking(masks) build (the masked logits come from
        # the first normalisation of the raw logits either way), with one Categorical fewer
        distribution = self.action_dist
        distribution.distribution = MaskableCategorical(logits=logits.view(-1, distribution.action_dim),
                                                        masks=action_masks)
        return distribution

    def _value(self, enc: ActionEncoding) -> torch.Tensor:
        return self.value_net(self.mlp_extractor.critic(enc.graph))

    def forward(self, obs: dict[str, torch.Tensor], deterministic: bool = False,
                action_masks: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self._encoded(obs):
            return super().forward(obs, deterministic=deterministic, action_masks=action_masks)
        enc = self._encode(obs)
        distribution = self._distribution(enc, action_masks)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *self.action_space.shape)), self._value(enc), log_prob

    def evaluate_actions(self, obs: dict[str, torch.Tensor], actions: torch.Tensor,
                         action_masks: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self._encoded(obs):
            return super().evaluate_actions(obs, actions, action_masks=action_masks)
        enc = self._encode(obs)
        distribution = self._distribution(enc, action_masks)
        return self._value(enc), distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: dict[str, torch.Tensor],
                         action_masks: np.ndarray | None = None) -> MaskableDistribution:
        if not self._encoded(obs):
            return super().get_distribution(obs, action_masks=action_masks)
        return self._distribution(self._encode(obs), action_masks)

    def predict_values(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self._encoded(obs):
            return super().predict_values(obs)
        return self._value(self._encode(obs))


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
