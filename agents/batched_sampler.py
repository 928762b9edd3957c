"""Lock-step sampling of a job-shop graph policy over a vectorised batch of schedules.

:class:`BatchedJobShopSampler` runs ``k`` episodes of one classic job-shop instance together: the
schedules live in one :class:`~schedgym.envs.jobshop.batch_state.BatchJobShopState` (numpy arrays,
one row per episode, stepped by one vectorised call), the node features of every episode that has
a choice are written straight into one ``(b, O, 12)`` float32 array, and one forward pass of the
policy's GIN scores them all. It computes what :func:`schedgym.agents.policies.masked_logits`
computes on the env's padded observation, rearranged for this graph:

* an instance-sized env has no padding, so every node is real and the graphs of the batch are
  blocks of ``O`` consecutive rows;
* the GIN neighbour sum ``(1 + eps) h_i + sum_j h_j`` is written out for the job-shop graph's edges
  (job predecessor and successor: shifted views of the block; machine predecessor and successor:
  two row gathers) instead of a sparse product over a rebuilt edge list;
* as in the compact extractor, the last linear layer runs on the pooled mean (it is affine) and on
  the candidate operations' rows only, and the pointer head scores the valid actions only.

The logits equal ``masked_logits``' up to float rounding (the sums run in another order);
``tests/test_jobshop_sampling.py`` compares them step by step, and checks that the greedy episode is
the :class:`~schedgym.agents.trained.TrainedPolicy` episode. Actions are drawn from the softmax of
those logits (invalid actions have probability 0) with ``torch.multinomial`` and a seeded
generator; an episode with one valid action takes it without a forward pass.

Why the cost still grows with the square of the operation count: with ``time_origin="now"`` the
features of every operation (completion bound, start time and its machine's ready time, all measured
from the decision time) change whenever the decision time moves, and a change on one machine's ready
time reaches every operation on that machine and, through three GIN layers, nearly every node; the
pooled graph embedding needs all of them. So each decision re-encodes the whole graph (``O`` nodes)
and an episode has ``O`` decisions. What this module removes is the per-step overhead around it
(observation dicts, padded-batch compaction, edge sorting, sparse-matrix construction) and the
per-episode Python stepping.

Supported: ``schedgym/JobShop-v0`` checkpoints with ``scheme="non_delay"`` (either ``time_origin``)
and a :class:`~schedgym.agents.policies.GraphPointerPolicy` over a GIN (no edge features)
:class:`~schedgym.agents.extractor.PaddedGraphExtractor`, its
:class:`~schedgym.agents.skip_extractor.SkipGraphExtractor` (each action's row also carries
``relu(W x(node))``) or the :class:`~schedgym.agents.candidate_extractor.CandidateAttentionExtractor`
(the skip input adds the action's candidate context features, which
:meth:`BatchJobShopState.candidate_features` computes for the batch exactly as the env's
``action_attr``, then self-attention among each graph's valid candidates, run by the checkpoint's own
attention modules on ``(b, J, d)`` rows with zero rows for the invalid actions, as in the extractor).
:func:`supports` says whether a configuration is; the solver falls back to its generic loop otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from schedgym.envs.jobshop.batch_state import BatchJobShopState
from schedgym.envs.jobshop.types import JobShopInstance, JobShopSolution

#: node-feature columns that do not change during an episode (see the env's docstring)
STATIC_COLUMNS = (2, 3, 6, 9, 10, 11)
#: the logit of an invalid action (as :func:`schedgym.agents.policies.masked_logits`)
INVALID_LOGIT = -1e8


def supports(policy: Any, env: Any) -> bool:
    """Whether :class:`BatchedJobShopSampler` computes this policy on this (unwrapped) env."""
    from schedgym.agents.candidate_extractor import CandidateAttentionExtractor
    from schedgym.agents.extractor import PaddedGraphExtractor
    from schedgym.agents.policies import GraphPointerPolicy, PointerHeads, SharedScorer
    from schedgym.agents.skip_extractor import SkipGraphExtractor
    from schedgym.envs.jobshop.env import JobShopEnv

    if type(env) is not JobShopEnv or env.scheme != "non_delay" or env.instance is None:
        return False
    if env.instance.is_flexible or env.time_origin not in ("zero", "now"):
        return False
    fe = getattr(policy, "pi_features_extractor", None)
    kinds = (PaddedGraphExtractor, SkipGraphExtractor, CandidateAttentionExtractor)
    if type(fe) not in kinds or (type(fe) is CandidateAttentionExtractor and not env.candidate_features):
        return False
    return (isinstance(policy, GraphPointerPolicy)
            and fe.gnn_kind == "gin" and not fe.use_edge_attr and not fe.pair and fe.n_globals == 4
            and isinstance(policy.mlp_extractor, PointerHeads) and isinstance(policy.action_net, SharedScorer))


@dataclass
class _Static:
    """Per-instance constants of the observation, read from a freshly reset env."""

    x: np.ndarray  # (O, F) float32, the static columns (others 0)
    time_scale: float
    log_jobs: float
    log_machines: float
    time_origin: str
    due: np.ndarray | None  # (J,) int64
    same_job: torch.Tensor  # (O - 1, 1) float32: operations o and o + 1 belong to one job


def _static_of(env: Any) -> _Static:
    inst = env.instance
    O = inst.n_ops
    x = np.zeros_like(env._x[:O])
    cols = list(STATIC_COLUMNS)
    x[:, cols] = env._x[:O, cols]
    same = torch.as_tensor((inst.op_job[:-1] == inst.op_job[1:]).astype(np.float32)).unsqueeze(1)
    return _Static(x, float(env.time_scale), float(env._log_jobs), float(env._log_machines), env.time_origin,
                   None if inst.due is None else np.asarray(inst.due, dtype=np.int64), same)


class BatchedJobShopSampler:
    """Best-of-``k`` episodes of a graph policy on one classic instance, in lock-step (module docstring).

    Args:
        policy: a loaded :class:`~schedgym.agents.policies.GraphPointerPolicy` (see :func:`supports`).
        env: an unwrapped ``JobShopEnv`` reset on the instance with the checkpoint's env kwargs (its
            static features and time scale are read once).
    """

    def __init__(self, policy: Any, env: Any):
        if not supports(policy, env):
            raise ValueError("BatchedJobShopSampler needs a GIN GraphPointerPolicy (plain, skip or candidate-attention "
                             "extractor) and a classic JobShop-v0 env with scheme='non_delay' (candidate_features=True "
                             "for a candidate-attention policy); use SampledPolicySolver's generic loop otherwise")
        self.policy = policy
        self.instance: JobShopInstance = env.instance
        #: the env's action count (its padded job count): the width of the env loop's sampling draws
        self.n_actions = int(env.n_actions)
        self.static = _static_of(env)
        fe = policy.pi_features_extractor
        self.reverse_edges = bool(fe.reverse_edges)
        self.convs = list(fe.gnn.convs)
        self.global_proj = fe.global_proj
        heads = policy.mlp_extractor
        self.first, self.rest = heads.actor[0], heads.actor[1:]
        self.per_action_dim = heads.per_action_dim
        self.scorer = policy.action_net.linear
        #: SkipGraphExtractor / CandidateAttentionExtractor: the projection of each action's raw input
        self.skip = getattr(fe, "skip", None)
        #: CandidateAttentionExtractor: the action's candidate context features join its node row
        self.candidate_features = hasattr(fe, "attention")
        self.attention = list(zip(fe.attention, fe.norms)) if self.candidate_features else []
        self._prepare_weights()

    # ------------------------------------------------------------------------------------------
    # observation
    # ------------------------------------------------------------------------------------------
    def features(self, state: BatchJobShopState, rows: np.ndarray, mask: np.ndarray,
                 now: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x (b, O, F) float32, globals (b, 4) float32)`` of episodes ``rows``: the env's
        observation (``x`` and ``globals``) for those states; ``mask`` (b, J) and ``now`` (b,) are the
        rows' action masks and decision times (:meth:`BatchJobShopState.masks`)."""
        s = self.static
        O = state.n_ops
        ts = s.time_scale
        b = rows.size
        x = np.empty((b, O, s.x.shape[1]), dtype=np.float32)
        x[:] = s.x
        lb = state.lb(rows)  # (b, O)
        start = state.start[rows]
        sched = start >= 0
        mready_abs = state.mach_ready[rows]
        max_lb = state.max_lb(rows)
        if s.time_origin == "now":
            t = now[:, None]
            x[:, :, 0] = np.maximum((lb - t) / ts, -1.0)
            x[:, :, 5] = np.where(sched, np.maximum((start - t) / ts, -1.0), 0.0)
            mready = np.maximum((mready_abs - t) / ts, 0.0)
            g1 = (max_lb - now) / ts
        else:
            np.divide(lb, ts, out=x[:, :, 0], casting="unsafe")
            np.divide(np.maximum(start, 0), ts, out=x[:, :, 5], casting="unsafe")
            mready = mready_abs / ts
            g1 = (max_lb - 0) / ts
        x[:, :, 1] = sched
        x[:, :, 7] = mready[:, state.op_machine]
        if s.due is not None:
            slack = (s.due[None, :] - lb[:, state.job_last]) / ts
            x[:, :, 8] = slack[:, state.op_job]
        x[:, :, 4] = 0.0
        bi, jobs = np.nonzero(mask)
        x[bi, state.next_op[rows[bi], jobs], 4] = 1.0
        g = np.empty((b, 4), dtype=np.float32)
        g[:, 0] = state.n_scheduled[rows] / max(1, O)
        g[:, 1] = g1
        g[:, 2] = s.log_jobs
        g[:, 3] = s.log_machines
        return x, g

    # ------------------------------------------------------------------------------------------
    # network
    # ------------------------------------------------------------------------------------------
    #: graphs are encoded in chunks of about this many nodes, so that a layer's rows stay in cache
    chunk_nodes = 2048

    def _prepare_weights(self) -> None:
        """Transposed, contiguous copies of the GIN weights (for ``addmm`` into preallocated rows); a
        snapshot: build a new sampler after the policy's weights change."""
        self._w = [[(lin.weight.detach().t().contiguous(), lin.bias.detach()) for lin in conv.nn.lins]
                   for conv in self.convs]
        self._eps = [float(conv.eps) for conv in self.convs]
        inst = self.instance
        lengths = np.diff(inst.job_ptr)
        #: every job has the same number of operations: job neighbours are shifts inside (J, L) blocks
        self._job_len = int(lengths[0]) if lengths.size and (lengths == lengths[0]).all() else None

    def _neighbour_sum(self, h: torch.Tensor, c: int, mprev: torch.Tensor, mnext: torch.Tensor, eps: float,
                       out: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
        """``(1 + eps) h_i + sum over in-neighbours j of h_j`` into ``out`` (n, w) for the ``n = c * O``
        rows ``h[:n]`` of ``c`` graphs; ``h`` (n + 1, w) ends with a zero row, the target of
        ``mprev``/``mnext`` (n,) (each node's machine predecessor/successor, ``n``: none)."""
        n, w = out.shape
        O = n // c
        torch.index_select(h, 0, mprev, out=out)  # machine predecessor -> operation
        if self.reverse_edges:
            torch.index_select(h, 0, mnext, out=tmp)  # reversed: machine successor -> operation
            out.add_(tmp)
        hn = h[:n]
        out.add_(hn, alpha=1.0 + eps) if eps != 0 else out.add_(hn)
        if self._job_len is not None and self._job_len > 1:
            L = self._job_len
            o4, h4 = out.view(c, O // L, L, w), hn.view(c, O // L, L, w)
            o4[:, :, 1:].add_(h4[:, :, :-1])  # job predecessor -> operation
            if self.reverse_edges:
                o4[:, :, :-1].add_(h4[:, :, 1:])  # reversed: job successor -> operation
        elif self._job_len is None:
            same = self.static.same_job
            o3, h3 = out.view(c, O, w), hn.view(c, O, w)
            o3[:, 1:].add_(h3[:, :-1] * same)
            if self.reverse_edges:
                o3[:, :-1].add_(h3[:, 1:] * same)
        return out

    def _encode(self, x: np.ndarray, mprev: np.ndarray, mnext: np.ndarray) -> torch.Tensor:
        """``(c, O, d)`` rows ``relu(lin_0(neighbour sum))`` of the last GIN layer (before its last
        linear layer) for the ``c`` graphs of ``x`` (c, O, F); ``mprev``/``mnext`` (c, O) are the
        machine neighbours (-1: none)."""
        c, O, F_ = x.shape
        n = c * O
        off = (np.arange(c) * O)[:, None]
        mp = torch.from_numpy(np.where(mprev >= 0, mprev + off, n).reshape(-1))
        mn = torch.from_numpy(np.where(mnext >= 0, mnext + off, n).reshape(-1))
        h = torch.zeros(n + 1, F_)
        h[:n] = torch.from_numpy(x.reshape(n, F_))
        d = self._w[0][0][0].shape[1]
        hidden = torch.zeros(n + 1, d)  # ends with the zero row of "no neighbour"
        z_in = torch.empty(n, F_)
        tmp_in = torch.empty(n, F_)
        z = torch.empty(n, d)
        tmp = torch.empty(n, d)
        u = torch.empty(n, d)
        last_layer = len(self._w) - 1
        for i, (weights, eps) in enumerate(zip(self._w, self._eps)):
            agg = self._neighbour_sum(h, c, mp, mn, eps, z_in if i == 0 else z, tmp_in if i == 0 else tmp)
            for j, (wt, bias) in enumerate(weights[:-1]):
                agg = torch.relu_(torch.addmm(bias, agg, wt, out=u) if j == 0 else torch.addmm(bias, agg, wt))
            if i < last_layer:
                wt, bias = weights[-1]
                torch.addmm(bias, agg, wt, out=hidden[:n])
                torch.relu_(hidden[:n])
                h = hidden
        return agg.view(c, O, d)

    def logits(self, state: BatchJobShopState, rows: np.ndarray, mask: np.ndarray, now: np.ndarray) -> torch.Tensor:
        """``(b, J)`` masked logits (invalid actions at -1e8) of episodes ``rows`` (float32)."""
        b = rows.size
        O = state.n_ops
        per = max(1, self.chunk_nodes // O)
        last = self.convs[-1].nn.lins[-1]
        pooled, cand, raw = [], [], []
        bi, jobs = np.nonzero(mask)
        ops = state.next_op[rows[bi], jobs]
        for lo in range(0, b, per):
            hi = min(b, lo + per)
            x, g = self.features(state, rows[lo:hi], mask[lo:hi], now[lo:hi])
            u = self._encode(x, state.mach_prev[rows[lo:hi]], state.mach_next[rows[lo:hi]])
            pooled.append(torch.cat([last(u.sum(1) / O), torch.from_numpy(g)], dim=-1))
            sel = (bi >= lo) & (bi < hi)
            cand.append(u[torch.from_numpy(bi[sel] - lo), torch.from_numpy(ops[sel])])
            if self.skip is not None:
                raw.append(torch.from_numpy(x[bi[sel] - lo, ops[sel]]))
        graph = torch.relu(self.global_proj(torch.cat(pooled)))  # (b, d)
        a = last(torch.cat(cand))  # (K, d) the valid actions' node rows
        bi_t, jobs_t = torch.from_numpy(bi), torch.from_numpy(jobs)
        if self.skip is not None:
            a = torch.cat([a, self._skip_rows(torch.cat(raw), state, rows, mask, now)], dim=-1)
        if self.attention:
            a = self._attend(a, bi_t, jobs_t, torch.from_numpy(mask), state.n_jobs)
        d = self.per_action_dim
        gz = F.linear(graph, self.first.weight[:, d:], self.first.bias)
        scores = self.scorer(self.rest(F.linear(a, self.first.weight[:, :d]) + gz.index_select(0, bi_t)))
        out = torch.full((b, state.n_jobs), INVALID_LOGIT, dtype=scores.dtype)
        out[bi_t, jobs_t] = scores.squeeze(1)
        return out

    def _skip_rows(self, x_rows: torch.Tensor, state: BatchJobShopState, rows: np.ndarray, mask: np.ndarray,
                   now: np.ndarray) -> torch.Tensor:
        """(K, skip_dim) ``relu(skip([x(node) (|| action_attr)]))`` of the valid actions (the skip part
        of :class:`~schedgym.agents.skip_extractor.SkipGraphExtractor`'s per-action features)."""
        if self.candidate_features:
            attr = state.candidate_features(rows, mask, now, self.static.time_scale)
            x_rows = torch.cat([x_rows, torch.from_numpy(attr)], dim=-1)
        return torch.relu(self.skip(x_rows))

    def _attend(self, a: torch.Tensor, bi: torch.Tensor, jobs: torch.Tensor, mask: torch.Tensor,
                n_jobs: int) -> torch.Tensor:
        """The valid actions' rows ``a`` (K, d) after the candidate attention of
        :class:`~schedgym.agents.candidate_extractor.CandidateAttentionExtractor`, computed as there on
        ``(b, J, d)`` rows with zero rows for the invalid actions (every row here has a valid action)."""
        b = mask.shape[0]
        dense = a.new_zeros(b, n_jobs, a.shape[1])
        dense[bi, jobs] = a
        ignore = ~mask
        keep = mask.unsqueeze(-1).to(a.dtype)
        for attn, norm in self.attention:
            y, _ = attn(dense, dense, dense, key_padding_mask=ignore, need_weights=False)
            dense = norm(dense + y) * keep
        return dense[bi, jobs]

    # ------------------------------------------------------------------------------------------
    # sampling
    # ------------------------------------------------------------------------------------------
    def run(self, k: int, generator: torch.Generator, greedy_first: bool = True,
            draw_all: bool = False) -> BatchJobShopState:
        """``k`` complete episodes; episode 0 is greedy when ``greedy_first`` (argmax of its logits),
        the others sample from the softmax of theirs. Returns the finished batch state.

        ``draw_all``: each step draws one ``torch.multinomial`` sample for every episode from a
        ``(k, n_actions)`` probability matrix, the episodes without a choice included (their rows
        one-hot), as :func:`schedgym.agents.self_labeling.sample_solutions` does over its envs: the
        same generator calls on the same shapes, so the same draws (the episodes with a choice still
        take the only forward pass). Otherwise only the episodes with a choice draw, as
        ``SampledPolicySolver``'s generic loop does."""
        state = BatchJobShopState(self.instance, k)
        with torch.inference_mode():
            while not state.done:
                mask, now = state.masks()
                actions = mask.argmax(axis=1)
                choose = np.flatnonzero(mask.sum(axis=1) > 1)
                logits = self.logits(state, choose, mask[choose], now[choose]) if choose.size else None
                if draw_all:
                    probs = torch.zeros(k, self.n_actions)
                    probs[torch.from_numpy(np.arange(k)), torch.from_numpy(actions)] = 1.0
                    if logits is not None:
                        probs[torch.from_numpy(choose), : state.n_jobs] = torch.softmax(logits, -1)
                    sampled = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                    if greedy_first and logits is not None and choose[0] == 0:
                        sampled[0] = torch.argmax(logits[0])
                    actions = sampled.numpy()
                elif logits is not None:
                    sampled = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(1)
                    if greedy_first and choose[0] == 0:
                        sampled[0] = torch.argmax(logits[0])
                    actions[choose] = sampled.numpy()
                state.schedule(actions)
        return state

    def best(self, state: BatchJobShopState) -> tuple[JobShopSolution, int]:
        """The complete episode with the smallest makespan (the first of equals) and its makespan."""
        makespans = state.end.max(axis=1)
        b = int(np.argmin(makespans))
        return state.solution(b), int(makespans[b])


def sample_labels(policy: Any, env: Any, instance: Any, seed: int, k: int, generator: torch.Generator,
                  objective: str) -> tuple[float, list[dict], list[np.ndarray], list[int], list[float]] | None:
    """:func:`schedgym.agents.self_labeling.sample_solutions` for ``k`` episodes of a job-shop instance,
    run by :class:`BatchedJobShopSampler` (``draw_all``: the same generator draws), or None where the
    sampler does not compute this policy on this env (any env that is not a classic non-delay
    ``JobShop-v0`` is left untouched) or the objective is not the makespan.

    Returns what ``sample_solutions`` returns: the best episode's (makespan, observations, action
    masks, actions), recorded by replaying its actions in ``env`` (reset with ``seed`` plus its
    index, as ``sample_solutions`` resets its envs), and the makespans of all ``k`` episodes. Up to
    the float rounding of the logits (a draw or argmax between near-equal probabilities could differ)
    these are the env loop's episodes."""
    from schedgym.envs.jobshop.env import JobShopEnv

    if objective != "makespan" or type(env.unwrapped) is not JobShopEnv:
        return None
    env.reset(seed=seed, options={"instance": instance})
    unwrapped = env.unwrapped
    if getattr(unwrapped, "objective_metric", None) not in (None, "makespan") or not supports(policy, unwrapped):
        return None
    sampler = BatchedJobShopSampler(policy, unwrapped)
    state = sampler.run(k, generator, greedy_first=True, draw_all=True)
    makespans = state.end.max(axis=1)
    best = int(np.argmin(makespans))
    obs, info = env.reset(seed=seed + best, options={"instance": instance})
    t_obs, t_mask, t_act = [], [], []
    for a in state.job_sequence[best].tolist():
        t_obs.append(obs)
        t_mask.append(np.asarray(info["action_mask"], dtype=bool))
        t_act.append(int(a))
        obs, _, term, trunc, info = env.step(int(a))
    if not term or float(info["metrics"]["makespan"]) != float(makespans[best]):
        raise RuntimeError(f"{instance.name}: replaying the batched sampler's best episode in the env gave "
                           f"{info.get('metrics', {}).get('makespan')}, not {makespans[best]} (the batch state "
                           "and JobShopState disagree)")
    return float(makespans[best]), t_obs, t_mask, t_act, [float(v) for v in makespans]


def greedy_metrics(policy: Any, env: Any) -> dict[str, float] | None:
    """The domain metrics (``info["metrics"]``) of the greedy episode of ``policy`` in ``env`` (a
    job-shop env reset on its instance), run by :class:`BatchedJobShopSampler`; None where the sampler
    does not compute this policy on this env (any env that is not a classic non-delay ``JobShop-v0``
    is left untouched). The episode is the env loop's argmax episode up to the float rounding of the
    logits (``tests/test_jobshop_candidate_sampling.py`` compares the makespans)."""
    from schedgym.envs.jobshop.env import JobShopEnv

    unwrapped = env.unwrapped
    if type(unwrapped) is not JobShopEnv or unwrapped.instance is None or not supports(policy, unwrapped):
        return None
    state = BatchedJobShopSampler(policy, unwrapped).run(1, torch.Generator().manual_seed(0))
    return unwrapped._metrics(state.solution(0))
