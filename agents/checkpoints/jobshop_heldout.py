"""Greedy mean gap to the trivial lower bound (%) of a job-shop checkpoint on the 17 held-out generated
instances of ``conf/experiment/sls_jobshop.yaml`` (the recipes' selection set), overall and per size.

    python agents/checkpoints/jobshop_heldout.py agents/checkpoints/jobshop_gnn.pt [more checkpoints]

The env is built with the checkpoint's own observation settings (scheme, time_origin,
candidate_features), sized to each instance.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

EXPERIMENT = Path(__file__).resolve().parents[2] / "conf" / "experiment" / "sls_jobshop.yaml"


def heldout_gaps(checkpoint: str) -> dict[str, list[float]]:
    """{size: [gap_to_lb_pct of each instance of that size]} of greedy episodes."""
    from schedgym.agents.batched_sampler import greedy_metrics as batched_greedy_metrics
    from schedgym.agents.checkpoint import load_policy, read_checkpoint
    from schedgym.agents.policies import masked_logits
    from schedgym.agents.self_labeling import _stack
    from schedgym.envs.core.domain import get_domain

    names = yaml.safe_load(EXPERIMENT.read_text())["env"]["train"]["eval_env_kwargs"]["instance"]
    kwargs = {k: v for k, v in read_checkpoint(checkpoint)["env_kwargs"].items() if not k.startswith("max_")}
    domain = get_domain("jobshop")
    policy, out = None, {}
    for name in names:
        env = domain.make_env(domain.load(name), **kwargs)
        if policy is None:
            policy = load_policy(checkpoint, env.observation_space, env.action_space)
        obs, info = env.reset(seed=0)
        fast = batched_greedy_metrics(policy, env)  # the lock-step sampler where it applies (the same episode)
        done = fast is not None
        while not done:
            mask = np.asarray(info["action_mask"], dtype=bool)
            with torch.no_grad():
                action = int(torch.argmax(masked_logits(policy, _stack([obs]), mask[None])[0]))
            obs, _, term, trunc, info = env.step(action)
            done = term or trunc
        gap = fast["gap_to_lb_pct"] if fast is not None else info["metrics"]["gap_to_lb_pct"]
        out.setdefault(name.split(":")[2], []).append(float(gap))
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    for ckpt in sys.argv[1:] or [str(Path(__file__).with_name("jobshop_gnn.pt"))]:
        t0 = time.process_time()
        gaps = heldout_gaps(ckpt)
        every = [g for v in gaps.values() for g in v]
        sizes = " ".join(f"{s}: {np.mean(v):.2f}" for s, v in gaps.items())
        print(f"{ckpt}: mean {np.mean(every):.2f} | {sizes} | {time.process_time() - t0:.0f} CPU-s")
