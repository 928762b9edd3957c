"""The validator recomputes what moves latencies: each planted violation in a real episode's trace
(wrong iteration duration, batch over its cap, tokens over the budget, KV over capacity, swap time
without a swap) is rejected for the right reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from schedgym.envs.core.errors import InfeasibleSolution
from schedgym.envs.llmserve.cluster import kv_capacity_blocks
from schedgym.envs.llmserve.sim import simulate
from schedgym.envs.llmserve.validate import replay, validate
from schedgym.envs.llmserve.workload import build_workload


@pytest.fixture(scope="module")
def episode():
    inst = build_workload("azure_conv:rate=6:n=80:seed=3:scheduler=vllm_v0")  # the v0 rules (v1: test_llmserve_vllm_v1)
    sol = simulate(inst)
    validate(inst, sol)
    return inst, sol


def _with_spec(inst, **kw):
    return dataclasses.replace(inst, replicas=tuple(dataclasses.replace(s, **kw) for s in inst.replicas))


def _batch_sizes(sol) -> np.ndarray:
    return np.diff(sol.it_ptr)


def test_wrong_duration_rejected(episode):
    inst, sol = episode
    end = sol.it_end.copy()
    k = len(end) // 2
    end[k] -= 1e-6 * (end[k] - sol.it_start[k])  # one part in a million shorter
    with pytest.raises(InfeasibleSolution, match=rf"iteration {k} .*duration .*but the profile gives"):
        validate(inst, dataclasses.replace(sol, it_end=end))


def test_duration_ignoring_cpu_overhead_rejected(episode):
    # the same trace claimed for replicas with 1 ms of CPU overhead per iteration
    inst, sol = episode
    with pytest.raises(InfeasibleSolution, match=r"iteration 0 .*duration"):
        validate(_with_spec(inst, cpu_overhead_ms=1.0), sol)


def test_batch_over_cap_rejected(episode):
    inst, sol = episode
    biggest = int(_batch_sizes(sol).max())
    assert biggest > 1
    with pytest.raises(InfeasibleSolution, match=rf"a batch of {biggest} requests, over its batch cap of {biggest - 1}"):
        validate(_with_spec(inst, batch_cap=biggest - 1), sol)


def test_tokens_over_budget_rejected_vllm(episode):
    inst, sol = episode
    # vLLM v0: the largest batch size x longest prefill of a prefill batch
    worst = max(int(np.diff(sol.it_ptr)[i]) * int(sol.it_tokens[sol.it_ptr[i]:sol.it_ptr[i + 1]].max())
                for i in range(sol.n_iterations) if sol.it_tokens[sol.it_ptr[i]:sol.it_ptr[i + 1]].max() > 1)
    with pytest.raises(InfeasibleSolution, match=rf"= {worst} tokens, over the token budget "
                                                 rf"max_tokens_in_batch={worst - 1}"):
        validate(_with_spec(inst, max_tokens_in_batch=worst - 1), sol)


def test_tokens_over_chunk_size_rejected_sarathi():
    inst = build_workload("azure_conv:rate=6:n=60:seed=3:scheduler=sarathi:chunk_size=512")
    sol = simulate(inst)
    validate(inst, sol)
    most = int(np.add.reduceat(sol.it_tokens, sol.it_ptr[:-1]).max())
    assert most > 256
    with pytest.raises(InfeasibleSolution, match=r"tokens with a prefill chunk, over the token budget chunk_size=256"):
        validate(_with_spec(inst, chunk_size=256), sol)


def test_kv_over_capacity_rejected(episode):
    inst, sol = episode
    peak = int(replay(inst, sol, check=False)["kv_blocks"].max())
    with pytest.raises(InfeasibleSolution, match=rf"KV needs {peak} blocks of 16 tokens, more than its {peak - 1} blocks"):
        validate(inst, dataclasses.replace(sol, num_blocks=np.array([peak - 1])))


def test_kv_capacity_counts_the_activation_reserve():
    inst = build_workload("azure_conv:rate=6:n=40:seed=3")
    reserved = _with_spec(inst, activation_reserve_gb=8.0)
    sol = simulate(reserved)
    validate(reserved, sol)
    without = kv_capacity_blocks(inst.replicas[0])  # what the memory holds if no activation were reserved
    assert without > sol.num_blocks[0]
    claimed = dataclasses.replace(sol, num_blocks=np.array([without]))
    validate(inst, claimed)  # fine for replicas that reserve nothing
    with pytest.raises(InfeasibleSolution, match=rf"claims {without} KV blocks .*activation reserve 8.0 GiB"):
        validate(reserved, claimed)


def test_swap_time_without_a_swap_rejected(episode):
    inst, sol = episode
    swaps = sol.it_swap_blocks.copy()
    swaps[3] = 2
    with pytest.raises(InfeasibleSolution, match=r"iteration 3 on replica 0: 2 swapped KV blocks, .*at most 0"):
        validate(inst, dataclasses.replace(sol, it_swap_blocks=swaps))


def test_swap_episode_validates_with_its_copy_time():
    inst = build_workload("synthetic:prompt_mean=200:output_mean=800:rate=8:n=60:seed=1:num_blocks=300:preemption=swap:"
                          "scheduler=vllm_v0")
    sol = simulate(inst)
    validate(inst, sol)
    k = int(np.flatnonzero(sol.it_swap_blocks)[0])
    swaps = sol.it_swap_blocks.copy()
    swaps[k] -= 1  # the trace's duration then includes one block of copy time the swaps do not explain
    with pytest.raises(InfeasibleSolution, match=rf"iteration {k} .*duration .*swapped blocks"):
        validate(inst, dataclasses.replace(sol, it_swap_blocks=swaps))
