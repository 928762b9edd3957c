"""Training workloads for the learned LLM-serving policies (self-labeling, ``conf/experiment/sls_llm_*.yaml``).

:class:`LLMLoadMixture` draws, from the trainer's generator, one workload name per training episode:
a template (trace, cluster, SLOs, scheduler) at a request rate drawn from ``rates`` (requests/s) with
a seed drawn in ``[min_seed, max_seed)``, by default 2 to 999: the evaluation sets use seed 0 and the
held-out selection workloads seeds 1000 and up, so training overlaps neither.
:class:`LLMWorkloadMix` draws one of several such mixtures per episode (e.g. single-class and mixed-class
workloads, each at rates around its own capacity knee).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from schedgym.envs.llmserve.types import LLMServeInstance
from schedgym.envs.llmserve.workload import build_workload


class LLMLoadMixture:
    """A workload per call (built; its name is ``template`` with ``rate=<one of rates>:n=<n>:seed=<drawn>``).

    Args:
        template: workload options without ``rate``, ``n`` or ``seed``, e.g.
            ``azure_conv:replicas=4:ttft=0.5:tpot=0.05:scheduler=vllm_v1``.
        rates: request rates to draw from uniformly, requests/s.
        n: requests per training workload.
        min_seed, max_seed: seeds are drawn in ``[min_seed, max_seed)``; keep them clear of the
            evaluation (0) and held-out (1000+) seeds.
    """

    def __init__(self, template: str, rates: Sequence[float], n: int = 300, min_seed: int = 2,
                 max_seed: int = 1000):
        if not rates:
            raise ValueError("LLMLoadMixture: rates must list at least one request rate (requests/s)")
        for key in ("rate=", "n=", "seed="):
            if f":{key}" in f":{template.split(':', 1)[-1]}":
                raise ValueError(f"LLMLoadMixture: template {template!r} must not set {key[:-1]} (drawn per workload)")
        if not 0 < min_seed < max_seed <= 1000:
            raise ValueError(f"LLMLoadMixture: need 0 < min_seed < max_seed <= 1000 (seed 0 is the evaluation sets', "
                             f"1000+ the held-out ones), got {min_seed}, {max_seed}")
        self.template = template
        self.rates = [float(r) for r in rates]
        self.n = int(n)
        self.min_seed, self.max_seed = int(min_seed), int(max_seed)

    def name(self, rng: np.random.Generator) -> str:
        """The next workload's name (draws a rate, then a seed, from ``rng``)."""
        rate = self.rates[int(rng.integers(len(self.rates)))]
        seed = int(rng.integers(self.min_seed, self.max_seed))
        return f"{self.template}:rate={rate:g}:n={self.n}:seed={seed}"

    def __call__(self, rng: np.random.Generator) -> LLMServeInstance:
        return build_workload(self.name(rng))


class LLMWorkloadMix:
    """A workload per call from one of ``components`` (each an :class:`LLMLoadMixture`), drawn uniformly.

    Args:
        components: the mixtures to draw from, e.g. a single-class and a mixed-class template, each with
            rates (requests/s) at multiples of its own capacity knee.
    """

    def __init__(self, components: Sequence[LLMLoadMixture]):
        components = list(components)
        if not components or not all(isinstance(c, LLMLoadMixture) for c in components):
            raise ValueError("LLMWorkloadMix: components must list at least one LLMLoadMixture "
                             "(_target_: schedgym.agents.llm_workloads.LLMLoadMixture)")
        self.components = components

    def name(self, rng: np.random.Generator) -> str:
        """The next workload's name (draws a component, then its rate and seed, from ``rng``)."""
        return self.components[int(rng.integers(len(self.components)))].name(rng)

    def __call__(self, rng: np.random.Generator) -> LLMServeInstance:
        return build_workload(self.name(rng))
