"""Features extractors for the padded graph observation of every schedgym env.

:class:`PaddedGraphExtractor` turns a batch of padded graphs (DESIGN.md section 2) into one disjoint
torch-geometric graph with index offsets (no Python loop), runs a GNN (GIN, GAT or GraphSAGE) and
returns, flattened into one tensor as SB3 expects, the embedding of the node(s) each action points at
and a masked-mean-pooled graph embedding:

    features = [ a_1 || ... || a_A || g ],   a_i = [h(action_node_i) (|| h(action_machine_node_i))]

with ``a_i = 0`` for an invalid action (``action_mask`` 0): its logit is masked anyway, and the
pointer head (:class:`~schedgym.agents.policies.PointerHeads`) scores all zero rows of a graph once.

No parameter depends on the number of nodes or actions, so a trained network runs on any padded
size.

By default (``compact=True``) the GNN runs on the real nodes only: the batch is compacted with
``node_mask`` before message passing, and the per-action embeddings are gathered back through an
index map (an action pointing at a padded node gets a zero embedding, as in the padded computation;
padded nodes are isolated zero rows by the observation contract). For GIN each layer's neighbour sum
is one CSR sparse-dense product, and the last linear layer runs on the gathered action rows and on
the pooled mean only (it is affine, so it commutes with the mean). These are exact rearrangements:
the outputs equal the padded computation's (``compact=False``) up to float rounding.

:meth:`PaddedGraphExtractor.encode` returns the same features for the valid actions only, without
the dense layout, and (GIN) runs each layer once per class of nodes that it necessarily embeds alike
(:mod:`schedgym.agents.graph_dedup`); the policy's ``dedup`` option uses it in MaskablePPO's updates.
:meth:`forward` itself is unchanged by it.

:class:`FlatMLPExtractor` is the simple baseline: an MLP over the flattened node features.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from schedgym.agents.graph_dedup import Classes, FewDuplicates, RefinementError, refine

GNN_KINDS = ("gin", "gat", "sage")


@dataclass
class ActionEncoding:
    """What :meth:`PaddedGraphExtractor.encode` returns: the extractor's features of the valid actions
    only, with rows shared between actions whose nodes have equal embeddings.

    The valid action ``valid[i]`` (flat index ``b * n_actions + action``) has the features
    ``a_i = table[index[i, 0]] || ... || table[index[i, P - 1]]`` (``P`` parts of ``table``'s width,
    ``per_action_dim`` in all); ``graph`` is the graph embedding ``g``. :meth:`dense` lays them out
    as :meth:`PaddedGraphExtractor.forward` does (zero rows for invalid actions).
    """

    graph: torch.Tensor  # (B, hidden_dim)
    valid: torch.Tensor  # (K,) int64 flat indices of the valid actions
    n_actions: int
    table: torch.Tensor  # (T, w)
    index: torch.Tensor  # (K, P) int64 rows of table
    #: ``index`` is ``arange(K)`` as one column (``table`` holds each valid action's own row)
    one_row_per_action: bool = False

    def dense(self) -> torch.Tensor:
        """``(B, A * per_action_dim + hidden_dim)``, the layout of :meth:`PaddedGraphExtractor.forward`."""
        B = self.graph.shape[0]
        rows = self.table[self.index.reshape(-1)].reshape(self.index.shape[0], -1)
        out = rows.new_zeros(B * self.n_actions, rows.shape[1]).index_copy(0, self.valid, rows)
        return torch.cat([out.reshape(B, -1), self.graph], dim=-1)


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
        compact: message passing over the real nodes only (see the module docstring); ``False``
            runs the GNN on the whole padded batch (the reference computation).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Dict,
        gnn: str = "gin",
        hidden_dim: int = 64,
        num_layers: int = 3,
        reverse_edges: bool = True,
        use_edge_attr: bool = False,
        compact: bool = True,
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
        self.gnn_kind = gnn
        self.compact = compact

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, A * per_action_dim + hidden_dim)`` features of a batch of padded graphs."""
        if self.compact:
            return self._forward_compact(obs)
        return self._forward_padded(obs)

    def _forward_padded(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
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
        a = a * obs["action_mask"].unsqueeze(-1).to(a.dtype)  # invalid actions: zero embeddings
        return torch.cat([a.reshape(B, -1), g], dim=-1)

    # ------------------------------------------------------------------------------------------
    # message passing over the real nodes only
    # ------------------------------------------------------------------------------------------
    def _forward_compact(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        g, valid, A, a = self._compact_rows(obs)
        B = g.shape[0]
        out = a.new_zeros(B * A, self.per_action_dim).index_copy(0, valid, a)  # invalid actions: zero
        return torch.cat([out.reshape(B, -1), g], dim=-1)

    def _compact_rows(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
        """The compact computation up to the dense layout: ``(g (B, d), valid (K,) flat indices of the
        valid actions, A, rows (K, per_action_dim))``; :meth:`_forward_compact` scatters the rows."""
        x = obs["x"]  # (B, N, F)
        B, N, F = x.shape
        dev = x.device
        keep = obs["node_mask"].reshape(-1).nonzero().squeeze(1)  # (R,) flat indices of real nodes
        R = keep.numel()
        # new index of every padded-batch node; padded nodes map to one zero node at row R
        new_id = torch.full((B * N,), R, dtype=torch.long, device=dev)
        new_id[keep] = torch.arange(R, device=dev)
        xc = torch.cat([x.reshape(B * N, F)[keep], x.new_zeros(1, F)])
        edge_mask = obs["edge_mask"].reshape(-1).bool()
        edge_index = obs["edge_index"].long()  # (B, 2, E)  (SB3 casts Box obs to float)
        offsets = (torch.arange(B, device=dev) * N).view(B, 1, 1)
        ei = new_id[(edge_index + offsets).permute(1, 0, 2).reshape(2, -1)[:, edge_mask]]
        graph = keep // N  # (R,) graph of each real node
        counts = torch.bincount(graph, minlength=B).clamp(min=1).unsqueeze(1).to(x.dtype)
        # only the valid actions' embeddings are computed; the others are zero (see the docstring)
        valid = obs["action_mask"].reshape(-1).nonzero().squeeze(1)  # flat (b * A + action) indices
        A = obs["action_mask"].shape[1]
        vb = valid // A
        idx = obs["action_node"].long().clamp(0, N - 1).reshape(-1)[valid]
        rows = new_id[idx + vb * N]
        mrows = None
        if self.pair:
            midx = obs["action_machine_node"].long().clamp(0, N - 1).reshape(-1)[valid]
            mrows = new_id[midx + vb * N]
        if self.gnn_kind == "gin" and not self.use_edge_attr:
            pooled, a, am = self._gin_compact(xc, ei, R, graph, B, counts, rows, mrows)
        else:
            if self.reverse_edges:
                ei = torch.cat([ei, ei.flip(0)], dim=1)
            ea = None
            if self.use_edge_attr:
                ea_all = obs["edge_attr"].reshape(-1, obs["edge_attr"].shape[-1])[edge_mask]
                ea = torch.cat([ea_all, ea_all], dim=0) if self.reverse_edges else ea_all
            h = self.gnn(xc, ei, edge_attr=ea) if ea is not None else self.gnn(xc, ei)
            pooled = h.new_zeros(B, h.shape[1]).index_add_(0, graph, h[:R]) / counts
            a, am = h[rows], (h[mrows] if mrows is not None else None)
        if self.n_globals:
            pooled = torch.cat([pooled, obs["globals"]], dim=-1)
        g = torch.relu(self.global_proj(pooled))  # (B, d)
        # an action pointing at a padded node gets a zero embedding, as in the padded computation
        a = a * (rows < R).unsqueeze(1)
        if am is not None:
            a = torch.cat([a, am * (mrows < R).unsqueeze(1)], dim=-1)
        return g, valid, A, a

    def _gin_compact(self, xc: torch.Tensor, ei: torch.Tensor, R: int, graph: torch.Tensor, B: int,
                     counts: torch.Tensor, rows: torch.Tensor, mrows: torch.Tensor | None):
        """GIN layers of ``torch_geometric.nn.models.GIN`` (sum aggregation, ReLU, no norm, no
        dropout). Each layer's ``(1 + eps) h_i + sum_j h_j`` is one CSR product with ``A + (1 + eps) I``;
        the last linear layer runs on the pooled mean and the gathered rows only.
        Returns (pooled (B, d), action rows, machine rows)."""
        n = R + 1
        if self.reverse_edges:
            ei = torch.cat([ei, ei.flip(0)], dim=1)
        loops = torch.arange(n, device=xc.device)
        src = torch.cat([ei[0], loops])
        dst = torch.cat([ei[1], loops])
        order = torch.argsort(dst * n + src)
        col = src[order]
        is_loop = (col == dst[order]) & (order >= ei.shape[1])  # the self-loop entries, in CSR order
        crow = torch.zeros(n + 1, dtype=torch.long, device=xc.device)
        crow[1:] = torch.bincount(dst, minlength=n).cumsum(0)
        h = xc
        convs = self.gnn.convs
        adj, adj_eps = None, None
        for i, conv in enumerate(convs):
            eps = conv.eps
            if adj is None or not torch.equal(eps, adj_eps):
                values = torch.where(is_loop, 1 + eps, torch.ones_like(eps)).to(xc.dtype)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                    adj = torch.sparse_csr_tensor(crow, col, values, size=(n, n))
                adj_eps = eps
            z = torch.sparse.mm(adj, h)
            lins = conv.nn.lins
            for lin in lins[:-1]:
                z = torch.relu_(lin(z))
            if i < len(convs) - 1:
                h = torch.relu_(lins[-1](z))
            else:
                last = lins[-1]
        # the last layer is affine: mean(last(z)) = last(mean(z)); it runs on B + gathered rows
        zmean = z.new_zeros(B, z.shape[1]).index_add_(0, graph, z[:R]) / counts
        gathered = [rows] + ([mrows] if mrows is not None else [])
        if sum(r.numel() for r in gathered) >= n:  # more action rows than nodes: all nodes once
            h = last(z)
            return last(zmean), h[rows], (h[mrows] if mrows is not None else None)
        out = last(torch.cat([zmean] + [z[r] for r in gathered]))
        pooled, a = out[:B], out[B:B + rows.numel()]
        am = out[B + rows.numel():] if mrows is not None else None
        return pooled, a, am


    # ------------------------------------------------------------------------------------------
    # the valid actions' features only, with the GNN on distinct node classes
    # ------------------------------------------------------------------------------------------
    def encode(self, obs: dict[str, torch.Tensor], dedup: bool = True) -> ActionEncoding:
        """The features of :meth:`forward` for the valid actions only (see :class:`ActionEncoding`):
        ``encode(obs).dense()`` equals ``forward(obs)`` up to float rounding.

        With ``dedup`` (GIN without edge features, ``compact``, a fixed ``eps``, and this class's own
        ``forward``), each GIN layer runs once per class of nodes that it necessarily embeds alike
        (:mod:`schedgym.agents.graph_dedup`): the same function, on a fraction of the rows. Otherwise,
        if the class refinement reports a hash collision, or if a round leaves more than
        ``dedup_max_fraction`` of the nodes in classes of their own (few duplicates: job-shop and
        GPU-DAG batches; VM states have about 1 class per 10 nodes), the rows come from :meth:`forward`.
        """
        if dedup and self._can_dedup():
            try:
                return self._encode_dedup(obs)
            except (RefinementError, FewDuplicates):
                pass
        if self.compact and type(self).forward is PaddedGraphExtractor.forward:
            # forward()'s rows and graph embedding before its dense layout: the same values
            g, valid, A, rows = self._compact_rows(obs)
            index = torch.arange(valid.numel(), device=rows.device).unsqueeze(1)
            return ActionEncoding(g, valid, A, rows, index, one_row_per_action=True)
        features = self(obs)
        B = features.shape[0]
        A = obs["action_mask"].shape[1]
        per_action = (features.shape[1] - self.hidden_dim) // A
        valid = obs["action_mask"].reshape(-1).nonzero().squeeze(1)
        rows = features[:, : A * per_action].reshape(B * A, per_action)[valid]
        index = torch.arange(valid.numel(), device=features.device).unsqueeze(1)
        return ActionEncoding(features[:, A * per_action:], valid, A, rows, index, one_row_per_action=True)

    #: the class refinement gives up once a round has more classes than this fraction of the nodes
    dedup_max_fraction = 0.5

    def _can_dedup(self) -> bool:
        return (self.compact and self.gnn_kind == "gin" and not self.use_edge_attr
                and type(self).forward is PaddedGraphExtractor.forward
                and not any(conv.eps.requires_grad for conv in self.gnn.convs))

    def _encode_dedup(self, obs: dict[str, torch.Tensor]) -> ActionEncoding:
        x = obs["x"]  # (B, N, F)
        B, N, F = x.shape
        dev = x.device
        keep = obs["node_mask"].reshape(-1).nonzero().squeeze(1)
        R = keep.numel()
        new_id = torch.full((B * N,), R, dtype=torch.long, device=dev)
        new_id[keep] = torch.arange(R, device=dev)
        # row R: the zero row of the padded nodes (as in the compact computation)
        xc = torch.cat([x.reshape(B * N, F).index_select(0, keep), x.new_zeros(1, F)])
        real = obs["edge_mask"].reshape(-1).nonzero().squeeze(1)
        ei = obs["edge_index"].long() + (torch.arange(B, device=dev) * N).view(B, 1, 1)  # (B, 2, E)
        src = new_id.index_select(0, ei[:, 0].reshape(-1).index_select(0, real))
        dst = new_id.index_select(0, ei[:, 1].reshape(-1).index_select(0, real))
        if self.reverse_edges:
            src, dst = torch.cat([src, dst]), torch.cat([dst, src])
        convs = self.gnn.convs
        with torch.no_grad():
            classes = refine(xc, src, dst, len(convs), max_classes=int(self.dedup_max_fraction * (R + 1)))
        graph = keep // N
        counts = torch.bincount(graph, minlength=B).clamp(min=1).unsqueeze(1).to(x.dtype)
        valid = obs["action_mask"].reshape(-1).nonzero().squeeze(1)
        A = obs["action_mask"].shape[1]
        vb = valid // A
        keys = ["action_node", "action_machine_node"] if self.pair else ["action_node"]
        nodes = [new_id.index_select(0, obs[k].long().clamp(0, N - 1).reshape(-1).index_select(0, valid) + vb * N)
                 for k in keys]
        h = xc.index_select(0, classes[0].rep)
        for k, conv in enumerate(convs, start=1):
            adj = _class_adjacency(classes[k], classes[k - 1], src, dst, float(conv.eps), x.dtype)
            z = _spmm(adj, h)
            lins = conv.nn.lins
            for lin in lins[:-1]:
                z = torch.relu_(lin(z))
            if k < len(convs):
                h = torch.relu_(lins[-1](z))
        last = lins[-1]
        # mean over each graph's real nodes of last(z): last is affine, so last(mean of z)
        final = classes[-1]
        U = final.n_classes
        pairs, mult = torch.unique(graph * U + final.label[:R], return_counts=True)
        pool = _csr(pairs // U, pairs % U, mult.to(x.dtype), B, U)
        pooled = last(_spmm(pool, z) / counts)
        if self.n_globals:
            pooled = torch.cat([pooled, obs["globals"]], dim=-1)
        g = torch.relu(self.global_proj(pooled))
        # one row per distinct class among the action nodes, then a zero row for padded nodes
        act = torch.cat(nodes)
        uniq, inv = torch.unique(final.label.index_select(0, act), return_inverse=True)
        table = torch.cat([last(z.index_select(0, uniq)), z.new_zeros(1, self.hidden_dim)])
        index = torch.where(act < R, inv, uniq.numel()).reshape(len(nodes), -1).t()
        return ActionEncoding(g, valid, A, table, index)


def _csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n_rows: int, n_cols: int) -> torch.Tensor:
    """CSR matrix from entries sorted by row (no duplicates)."""
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, cols, values, size=(n_rows, n_cols))


def _spmm(adj: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.sparse.mm(adj, h)


def _class_adjacency(cur: Classes, prev: Classes, src: torch.Tensor, dst: torch.Tensor, eps: float,
                     dtype: torch.dtype) -> torch.Tensor:
    """``(U_cur, U_prev)`` CSR matrix of one GIN aggregation on class representatives: row ``u`` holds
    ``1 + eps`` at the class of ``u``'s representative and, for each of its in-neighbours, 1 at the
    neighbour's class (summed), so that ``adj @ h_prev`` is ``(1 + eps) h_u + sum_j h_j``."""
    n = cur.label.numel()
    is_rep = torch.zeros(n, dtype=torch.bool, device=src.device)
    is_rep[cur.rep] = True
    into = is_rep.index_select(0, dst).nonzero().squeeze(1)  # the edges into representatives
    Uc, Up = cur.n_classes, prev.n_classes
    keys = torch.cat([cur.label.index_select(0, dst.index_select(0, into)) * Up
                      + prev.label.index_select(0, src.index_select(0, into)),
                      torch.arange(Uc, device=src.device) * Up + prev.label.index_select(0, cur.rep)])
    weights = torch.cat([torch.ones(into.numel(), dtype=dtype, device=src.device),
                         torch.full((Uc,), 1.0 + eps, dtype=dtype, device=src.device)])
    uniq, inv = torch.unique(keys, return_inverse=True)
    values = torch.zeros(uniq.numel(), dtype=dtype, device=src.device).index_add_(0, inv, weights)
    return _csr(uniq // Up, uniq % Up, values, Uc, Up)


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
