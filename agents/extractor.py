"""Features extractors for the padded graph observation of every schedgym env.

:class:`PaddedGraphExtractor` turns a batch of padded graphs (DESIGN.md section 2) into one disjoint
torch-geometric graph with index offsets (no Python loop), runs a GNN (GIN, GAT or GraphSAGE) and
returns, flattened into one tensor as SB3 expects, the embedding of the node(s) each action points at
and a masked-mean-pooled graph embedding:

    features = [ a_1 || ... || a_A || g ],   a_i = [h(action_node_i) (|| h(action_machine_node_i))]

No parameter depends on the number of nodes or actions, so a trained network runs on any padded
size. :class:`FlatMLPExtractor` is the simple baseline: an MLP over the flattened node features.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

GNN_KINDS = ("gin", "gat", "sage")


def _build_gnn(kind: str, in_dim: int, hidden_dim: int, num_layers: int, edge_dim: int | None) -> nn.Module:
    from torch_geometric.nn import models

    if kind == "gin":
        return models.GIN(in_dim, hidden_dim, num_layers, norm=None, jk=None)
    if kind == "gat":
        return models.GAT(in_dim, hidden_dim, num_layers, norm=None, edge_dim=edge_dim, v2=True, heads=2,
                          concat=False)
    if kind == "sage":
        return models.GraphSAGE(in_dim, hidden_dim, num_layers, norm=None)
    raise ValueError(f"gnn must be one of {GNN_KINDS}, got {kind!r}")


class PaddedGraphExtractor(BaseFeaturesExtractor):
    """GNN over the padded graph; outputs per-action node embeddings and a pooled embedding.

    Args:
        observation_space: the env's ``spaces.Dict`` (keys of :mod:`schedgym.envs.core.graph_obs`).
        gnn: ``"gin"``, ``"gat"`` or ``"sage"``.
        hidden_dim: width of node embeddings.
        num_layers: message-passing layers.
        reverse_edges: also pass messages along reversed edges (the graphs are directed).
        use_edge_attr: give edge features to the GNN (GAT only).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Dict,
        gnn: str = "gin",
        hidden_dim: int = 64,
        num_layers: int = 3,
        reverse_edges: bool = True,
        use_edge_attr: bool = False,
    ):
        spaces = observation_space.spaces
        self.n_nodes, self.in_dim = spaces["x"].shape
        self.n_actions = spaces["action_mask"].n
        self.pair = "action_machine_node" in spaces
        self.n_globals = spaces["globals"].shape[0] if "globals" in spaces else 0
        self.hidden_dim = hidden_dim
        per_action = hidden_dim * (2 if self.pair else 1)
        super().__init__(observation_space, features_dim=self.n_actions * per_action + hidden_dim)
        self.per_action_dim = per_action
        self.reverse_edges = reverse_edges
        self.use_edge_attr = use_edge_attr and gnn == "gat"
        edge_dim = spaces["edge_attr"].shape[1] if self.use_edge_attr else None
        self.gnn = _build_gnn(gnn, self.in_dim, hidden_dim, num_layers, edge_dim)
        self.global_proj = nn.Linear(hidden_dim + self.n_globals, hidden_dim)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = obs["x"]  # (B, N, F)
        B, N, _ = x.shape
        node_mask = obs["node_mask"].bool()  # (B, N)
        edge_index = obs["edge_index"].long()  # (B, 2, E)  (SB3 casts Box obs to float)
        edge_mask = obs["edge_mask"].bool()  # (B, E)
        offsets = (torch.arange(B, device=x.device) * N).view(B, 1, 1)
        ei = (edge_index + offsets).permute(1, 0, 2).reshape(2, -1)[:, edge_mask.reshape(-1)]
        ea = None
        if self.use_edge_attr:
            ea = obs["edge_attr"].reshape(B * obs["edge_attr"].shape[1], -1)[edge_mask.reshape(-1)]
        if self.reverse_edges:
            ei = torch.cat([ei, ei.flip(0)], dim=1)
            if ea is not None:
                ea = torch.cat([ea, ea], dim=0)
        flat = x.reshape(B * N, -1)
        h = self.gnn(flat, ei, edge_attr=ea) if ea is not None else self.gnn(flat, ei)
        h = h.reshape(B, N, -1) * node_mask.unsqueeze(-1)
        pooled = h.sum(1) / node_mask.sum(1, keepdim=True).clamp(min=1)
        if self.n_globals:
            pooled = torch.cat([pooled, obs["globals"]], dim=-1)
        g = torch.relu(self.global_proj(pooled))  # (B, d)
        idx = obs["action_node"].long().clamp(0, N - 1)  # (B, A)
        a = torch.gather(h, 1, idx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
        if self.pair:
            midx = obs["action_machine_node"].long().clamp(0, N - 1)
            am = torch.gather(h, 1, midx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
            a = torch.cat([a, am], dim=-1)
        return torch.cat([a.reshape(B, -1), g], dim=-1)


class FlatMLPExtractor(BaseFeaturesExtractor):
    """Baseline: an MLP over the flattened (masked) node features and the globals.

    Its input size depends on the padded number of nodes, so unlike the GNN it does not transfer
    across sizes.
    """

    def __init__(self, observation_space: gym.spaces.Dict, hidden_dim: int = 256):
        spaces = observation_space.spaces
        n, f = spaces["x"].shape
        g = spaces["globals"].shape[0] if "globals" in spaces else 0
        super().__init__(observation_space, features_dim=hidden_dim)
        self.net = nn.Sequential(nn.Linear(n * f + g, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.ReLU())
        self.has_globals = g > 0

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = obs["x"] * obs["node_mask"].unsqueeze(-1)
        parts = [x.flatten(1)]
        if self.has_globals:
            parts.append(obs["globals"])
        return self.net(torch.cat(parts, dim=-1))
