"""Independent check of the admission decisions of a serving trace (the ``adm_*`` log of a solution).

Written from the problem definition of admission control (not from the simulator): every arriving
request is admitted, deferred (decided again later, before a deadline) or rejected. From the log
alone this module checks:

* every request has decisions, the first at its arrival time, taken in time order; all but its
  last decision are defers and its last one admits or rejects it (a request cannot stay deferred);
* a deferred request is decided again no later than its deadline, every defer of a request names
  the same deadline (set at its first deferral, after the decision time), and an ``expire`` (the
  rejection at the deadline) happens exactly at that deadline;
* ``shed`` (rejected by admission) holds exactly for the requests whose last decision rejects them,
  and is a subset of ``rejected``;
* a rejected request is never served: no replica, no first token or completion, no iteration
  entry, no preemption event, no KV transfer;
* an admitted request is not processed before the decision that admitted it.

Times are in seconds.
"""

from __future__ import annotations

import math

import numpy as np

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.llmserve.types import LLMServeInstance, LLMServeSolution

EPS = 1e-9
ADMIT, DEFER, REJECT, EXPIRE = 0, 1, 2, 3
KIND_NAMES = {ADMIT: "admit", DEFER: "defer", REJECT: "reject", EXPIRE: "expire"}


def check_admission(inst: LLMServeInstance, sol: LLMServeSolution) -> None:
    """Raise :class:`InfeasibleSolution` when the admission log of ``sol`` breaks a rule above. A
    solution without admission control (``shed`` None) must have an empty log."""
    n = inst.n_requests
    req, t, kind, dl = sol.adm_req, sol.adm_time, sol.adm_kind, sol.adm_deadline
    if sol.shed is None:
        if len(req):
            raise InfeasibleSolution(f"the solution logs {len(req)} admission decisions but has no shed array")
        return
    if sol.shed.shape != (n,):
        raise InfeasibleSolution(f"solution.shed has shape {sol.shed.shape}, expected ({n},)")
    d = len(req)
    for name in ("adm_time", "adm_kind", "adm_deadline"):
        if getattr(sol, name).shape != (d,):
            raise InfeasibleSolution(f"solution.{name} has shape {getattr(sol, name).shape}, expected ({d},)")
    if d and (req.min() < 0 or req.max() >= n):
        raise InfeasibleSolution("an admission decision names a request out of range")
    bad = np.flatnonzero(~np.isin(kind, list(KIND_NAMES)))
    if len(bad):
        raise InfeasibleSolution(f"admission decision {bad[0]} has kind {kind[bad[0]]} (valid: 0 admit, 1 defer, "
                                 f"2 reject, 3 expire)")
    if not np.all(np.isfinite(t)):
        raise InfeasibleSolution("an admission decision has a non-finite time")
    back = np.flatnonzero(np.diff(t) < -EPS)
    if len(back):
        raise InfeasibleSolution(f"admission decision {back[0] + 1} at {t[back[0] + 1]:.6f} is logged after one at "
                                 f"{t[back[0]]:.6f} (decisions are taken in time order)")
    final = np.full(n, -1, np.int64)
    final_t = np.full(n, math.nan)
    seen = np.zeros(n, bool)
    pending = [math.nan] * n  # deadline of a request's open deferral
    for i, (r, ti, k, di) in enumerate(zip(req.tolist(), t.tolist(), kind.tolist(), dl.tolist())):
        what = f"admission decision {i} ({KIND_NAMES[k]} request {r} at {ti:.6f})"
        if final[r] >= 0:
            raise InfeasibleSolution(f"{what}: request {r} was already {KIND_NAMES[int(final[r])]}ed at "
                                     f"{final_t[r]:.6f}")
        if not seen[r] and abs(ti - inst.arrival[r]) > EPS * max(1.0, inst.arrival[r]):
            raise InfeasibleSolution(f"{what}: the first decision on a request is taken at its arrival "
                                     f"({inst.arrival[r]:.6f})")
        seen[r] = True
        open_dl = pending[r]
        if open_dl == open_dl and ti > open_dl + EPS * max(1.0, open_dl):
            raise InfeasibleSolution(f"{what}: the request was deferred until {open_dl:.6f} and decided again "
                                     f"only after that deadline")
        if k == DEFER:
            if not (math.isfinite(di) and di > ti):
                raise InfeasibleSolution(f"{what}: a deferral needs a finite deadline after the decision, got {di}")
            if open_dl == open_dl and abs(di - open_dl) > EPS * max(1.0, open_dl):
                raise InfeasibleSolution(f"{what}: deadline {di:.6f} differs from the {open_dl:.6f} of its first "
                                         f"deferral (a deadline is not extended)")
            pending[r] = di
            continue
        if k == EXPIRE and not (open_dl == open_dl and abs(ti - open_dl) <= EPS * max(1.0, open_dl)):
            raise InfeasibleSolution(f"{what}: a request expires only at the deadline of its deferral "
                                     f"({open_dl})")
        final[r] = k
        final_t[r] = ti
    missing = np.flatnonzero(final < 0)
    if len(missing):
        r = int(missing[0])
        state = "is still deferred at the end" if seen[r] else "has no admission decision"
        raise InfeasibleSolution(f"request {r} {state} ({len(missing)} requests without a final admit or reject)")
    rej = (final == REJECT) | (final == EXPIRE)
    wrong = np.flatnonzero(rej != sol.shed)
    if len(wrong):
        r = int(wrong[0])
        raise InfeasibleSolution(f"request {r}: shed={bool(sol.shed[r])} but its last admission decision is "
                                 f"{KIND_NAMES[int(final[r])]}")
    if np.any(sol.shed & ~sol.rejected):
        r = int(np.flatnonzero(sol.shed & ~sol.rejected)[0])
        raise InfeasibleSolution(f"request {r} was rejected by admission (shed) but is not marked rejected")
    _check_never_served(sol, np.flatnonzero(rej))
    _check_after_admission(sol, final, final_t)


def _check_never_served(sol: LLMServeSolution, shed: np.ndarray) -> None:
    if not len(shed):
        return
    s = set(shed.tolist())
    for r in shed.tolist():
        if sol.replica[r] != -1:
            raise InfeasibleSolution(f"request {r} was rejected by admission but is routed to replica {sol.replica[r]}")
        if sol.first_token[r] == sol.first_token[r] or sol.completion[r] == sol.completion[r]:
            raise InfeasibleSolution(f"request {r} was rejected by admission but has a first token or completion time")
    for name in ("it_req", "ev_req", "tx_req"):
        hit = [int(r) for r in getattr(sol, name).tolist() if r in s]
        if hit:
            where = {"it_req": "is processed in an iteration", "ev_req": "has a preemption event",
                     "tx_req": "has a KV transfer"}[name]
            raise InfeasibleSolution(f"request {hit[0]} was rejected by admission but {where} (a rejected request "
                                     f"is never served)")


def _check_after_admission(sol: LLMServeSolution, final: np.ndarray, final_t: np.ndarray) -> None:
    if not len(sol.it_req):
        return
    it_of = np.repeat(np.arange(sol.n_iterations), np.diff(sol.it_ptr))
    first = np.full(len(final), np.inf)
    np.minimum.at(first, sol.it_req, sol.it_start[it_of])
    early = np.flatnonzero((final == ADMIT) & (first < final_t - EPS * np.maximum(1.0, np.abs(final_t))))
    if len(early):
        r = int(early[0])
        raise InfeasibleSolution(f"request {r} is processed at {first[r]:.6f}, before it was admitted at "
                                 f"{final_t[r]:.6f}")
