"""The padded graph observation every schedgym environment returns (DESIGN.md section 2).

A ``spaces.Dict`` of fixed shapes, so that SB3 accepts it and one GNN policy serves every env:

============  =========================  ====================================================
key           shape, dtype               meaning
============  =========================  ====================================================
x             (N_max, F) float32         node features (padded rows are 0)
edge_index    (2, E_max) int64           directed edges (source row 0, target row 1); entries
                                         where edge_mask is 0 are padding (any valid index)
edge_attr     (E_max, D) float32         edge features
edge_mask     (E_max,) int8              1 for real edges
node_mask     (N_max,) int8              1 for real nodes
action_mask   (A,) int8                  1 for valid actions
action_node   (A,) int64                 node index that each action points at (pointer heads)
globals       (G,) float32               graph-level features
============  =========================  ====================================================

``edge_index`` is a ``Box`` (never ``MultiDiscrete``: SB3 one-hot encodes those).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces


def padded_graph_space(
    n_nodes: int, n_node_features: int, n_edges: int, n_edge_features: int, n_actions: int, n_globals: int,
    extra: dict[str, spaces.Space] | None = None,
) -> spaces.Dict:
    """The observation space of a padded graph with the standard keys."""
    big = np.float32(1e6)
    d = {
        "x": spaces.Box(-big, big, (n_nodes, n_node_features), np.float32),
        "edge_index": spaces.Box(0, max(n_nodes - 1, 0), (2, n_edges), np.int64),
        "edge_attr": spaces.Box(-big, big, (n_edges, n_edge_features), np.float32),
        "edge_mask": spaces.MultiBinary(n_edges),
        "node_mask": spaces.MultiBinary(n_nodes),
        "action_mask": spaces.MultiBinary(n_actions),
        "action_node": spaces.Box(0, max(n_nodes - 1, 0), (n_actions,), np.int64),
        "globals": spaces.Box(-big, big, (n_globals,), np.float32),
    }
    if extra:
        d.update(extra)
    return spaces.Dict(d)
