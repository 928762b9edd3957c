"""Classes of nodes that a message-passing GNN necessarily embeds identically (used by the
deduplicated forward of :class:`~schedgym.agents.extractor.PaddedGraphExtractor`).

A batch of scheduling states repeats itself: the states of one episode differ in a few nodes, and a
VM cluster or a job-shop holds many nodes with equal features and equal neighbourhoods. After
``k`` rounds of sum (or mean) aggregation, two nodes have equal embeddings whenever they have equal
input features and, for every round ``j < k``, equal multisets of neighbour classes of round
``j - 1`` (the colour refinement of Weisfeiler and Leman, run on the actual feature values). So the
GNN needs to run on one representative node per class only; the others copy its rows.

:func:`refine` computes these classes for rounds ``0 .. rounds``:

* round 0: equal feature rows (bit patterns of the float32 values; ``-0.0`` and ``0.0`` count as
  different, which only costs a copy). A row hash proposes the classes and a full comparison of
  every row with its class representative checks them, so round 0 is exact; on a hash collision the
  exact (slow) ``torch.unique(dim=0)`` takes over.
* round ``k >= 1``: a node's key is ``S[own class] + sum over incoming edges R[neighbour class]``
  with ``S``, ``R`` random 52-bit integers (no int64 overflow below 2,048 incoming edges per node).
  Two different (class, neighbour multiset) pairs get equal keys with probability at most ``2**-52``;
  a second key with independent tables must then agree as well, else :class:`RefinementError` is
  raised (the caller falls back to the plain computation). An undetected merge needs two
  independent collisions at once (probability below ``2**-100`` per pair of nodes).

No tensor here needs gradients: classes are integer labels of the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_BITS = 52
_MAX_IN_DEGREE = 2 ** (63 - _BITS)  # sums of this many 52-bit values stay below 2**63


class RefinementError(RuntimeError):
    """The two hash keys of a round disagree (a collision) or a node has too many incoming edges."""


class FewDuplicates(RuntimeError):
    """A round has more classes than the caller's ``max_classes``: deduplication would not pay."""


@dataclass(frozen=True)
class Classes:
    """One round's classes: ``label[i]`` in ``0 .. n_classes - 1`` for node ``i`` and ``rep[c]``, the
    smallest node index of class ``c``."""

    label: torch.Tensor  # (n,) int64
    rep: torch.Tensor  # (n_classes,) int64

    @property
    def n_classes(self) -> int:
        return int(self.rep.numel())


class _Tables:
    """Random 52-bit integers indexed by class label, grown on demand; fixed seed, so the classes
    (and therefore the order of the deduplicated rows) are a function of the batch only."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)
        self.values = torch.empty(4, 0, dtype=torch.long)

    def get(self, n: int) -> torch.Tensor:
        """``(4, n)`` table: rows S1, R1, S2, R2."""
        have = self.values.shape[1]
        if have < n:
            more = torch.randint(0, 2 ** _BITS, (4, max(n, 2 * have) - have), generator=self.gen, dtype=torch.long)
            self.values = torch.cat([self.values, more], dim=1)
        return self.values[:, :n]


_TABLES = _Tables(seed=20_241_203)
_ROW_WEIGHTS = torch.randint(1, 2 ** 62, (4096,), generator=torch.Generator().manual_seed(7), dtype=torch.long) | 1


def _labels(keys: torch.Tensor) -> Classes:
    """Classes of equal int64 keys, numbered in key order, with their first node as representative."""
    uniq, label = torch.unique(keys, return_inverse=True)
    n = keys.numel()
    rep = torch.full((uniq.numel(),), n, dtype=torch.long, device=keys.device)
    rep.scatter_reduce_(0, label, torch.arange(n, device=keys.device), reduce="amin")
    return Classes(label, rep)


def feature_classes(x: torch.Tensor) -> Classes:
    """Round 0: classes of bit-identical rows of ``x`` (n, F) float32, checked exactly."""
    n, f = x.shape
    if f > _ROW_WEIGHTS.numel():
        raise ValueError(f"at most {_ROW_WEIGHTS.numel()} node features are supported, got {f}")
    bits = x.contiguous().view(torch.int32).long()
    # a row hash (int64 wrap-around arithmetic); any collision is caught by the exact check below
    keys = (bits * _ROW_WEIGHTS[:f].to(x.device)).sum(1)
    cls = _labels(keys)
    if not torch.equal(bits, bits.index_select(0, cls.rep.index_select(0, cls.label))):
        uniq, label = torch.unique(bits, dim=0, return_inverse=True)
        rep = torch.full((uniq.shape[0],), n, dtype=torch.long, device=x.device)
        rep.scatter_reduce_(0, label, torch.arange(n, device=x.device), reduce="amin")
        cls = Classes(label, rep)
    return cls


def next_classes(prev: Classes, src: torch.Tensor, dst: torch.Tensor) -> Classes:
    """Round ``k + 1`` from round ``k``: a node's own class and the multiset of the classes of its
    in-neighbours (edges ``src -> dst``; parallel edges count)."""
    n = prev.label.numel()
    s1, r1, s2, r2 = _TABLES.get(prev.n_classes).to(prev.label.device)
    deg = torch.bincount(dst, minlength=n)
    if n and int(deg.max()) >= _MAX_IN_DEGREE:
        raise RefinementError(f"a node has {int(deg.max())} incoming edges (at most {_MAX_IN_DEGREE - 1})")
    nb = prev.label.index_select(0, src)
    k1 = s1.index_select(0, prev.label).index_add_(0, dst, r1.index_select(0, nb))
    k2 = s2.index_select(0, prev.label).index_add_(0, dst, r2.index_select(0, nb))
    cls = _labels(k1)
    if not torch.equal(k2, k2.index_select(0, cls.rep.index_select(0, cls.label))):
        raise RefinementError("hash collision in the node-class refinement")
    return cls


def refine(x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, rounds: int,
           max_classes: int | None = None) -> list[Classes]:
    """Classes of rounds ``0 .. rounds`` of the graph with node features ``x`` (n, F) and directed
    edges ``src -> dst`` (messages flow from ``src`` to ``dst``). Raises :class:`RefinementError`
    on a detected hash collision, and :class:`FewDuplicates` as soon as a round has more than
    ``max_classes`` classes (later rounds only split classes further)."""
    out = [feature_classes(x)]
    for k in range(rounds + 1):
        if max_classes is not None and out[-1].n_classes > max_classes:
            raise FewDuplicates(f"round {k}: {out[-1].n_classes} classes of {x.shape[0]} nodes")
        if k < rounds:
            out.append(next_classes(out[-1], src, dst))
    return out
