"""Output-length predictors: stand-ins for the learned length predictors of length-aware schedulers.

A predictor maps a workload to one predicted output length (tokens) per request, fixed for the
episode:

* ``oracle``: the true length.
* ``noisy``: the true length times ``exp(N(0, sigma^2))`` (log-normal error; ``sigma`` is the
  standard deviation of the log of prediction / truth).
* ``rank``: a Gaussian copula with a given Spearman rank correlation ``rho`` to the truth: the
  truth's normal scores ``z = Phi^-1((rank - 0.5) / N)`` (average ranks for ties) are mixed with
  independent noise, ``z' = r z + sqrt(1 - r^2) e`` with ``r = 2 sin(pi rho / 6)`` (the Pearson
  correlation of a bivariate normal whose Spearman correlation is ``rho``), and mapped back through
  the empirical distribution of the instance's output lengths. The predictions therefore have the
  workload's length distribution and rank correlation ``rho`` with the truth (up to sampling error
  and ties); ``rho = 1`` orders requests exactly as the truth, ``rho = 0`` is uninformative, like a
  predictor that ranks requests only as well as a learned model (e.g. the 0.5-0.8 Kendall/Spearman
  range reported for BERT-style proxies of output length).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

KINDS = ("oracle", "noisy", "rank")
_N01 = NormalDist()


def normal_scores(x: np.ndarray) -> np.ndarray:
    """``Phi^-1((average rank - 0.5) / N)`` of each entry of ``x``."""
    import pandas as pd

    n = len(x)
    ranks = pd.Series(np.asarray(x, float)).rank(method="average").to_numpy()
    return np.array([_N01.inv_cdf((r - 0.5) / n) for r in ranks])


def predict_lengths(truth: np.ndarray, kind: str = "rank", rho: float = 0.8, sigma: float = 0.5,
                    seed: int = 0) -> np.ndarray:
    """Predicted output lengths (float64, tokens, >= 1) of requests with true lengths ``truth``.
    Raises ValueError naming the bad argument."""
    if kind not in KINDS:
        raise ValueError(f"length predictor must be one of {KINDS}, got {kind!r}")
    truth = np.asarray(truth, np.float64)
    rng = np.random.default_rng(seed)
    if kind == "oracle" or len(truth) == 0:
        return truth.copy()
    if kind == "noisy":
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"predictor sigma must be a finite number >= 0, got {sigma!r}")
        return np.maximum(truth * np.exp(rng.normal(0.0, sigma, len(truth))), 1.0)
    if not (math.isfinite(rho) and -1.0 <= rho <= 1.0):
        raise ValueError(f"predictor rho (Spearman correlation to the truth) must be in [-1, 1], got {rho!r}")
    r = 2.0 * math.sin(math.pi * rho / 6.0)
    z = r * normal_scores(truth) + math.sqrt(max(1.0 - r * r, 0.0)) * rng.normal(0.0, 1.0, len(truth))
    u = np.array([_N01.cdf(v) for v in z])
    return np.maximum(np.quantile(truth, u), 1.0)
