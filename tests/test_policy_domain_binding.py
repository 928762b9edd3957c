"""``policy=ppo_gnn`` takes the env's domain: one policy name loads each domain's shipped checkpoint."""

from __future__ import annotations

import pytest

from schedgym.agents.checkpoint import resolve_checkpoint, shipped_name
from schedgym.agents.trained import trained_agent_domains
from schedgym.baselines.base import bind_env_domain


def test_null_domain_is_bound_to_the_env_domain():
    cfg = {"_target_": "schedgym.agents.trained.load_trained_agent", "checkpoint": None, "domain": None}
    assert bind_env_domain(cfg, "gpudag")["domain"] == "gpudag"
    assert cfg["domain"] is None  # a copy
    assert bind_env_domain({**cfg, "domain": "jobshop"}, "gpudag")["domain"] == "jobshop"
    assert "domain" not in bind_env_domain({"_target_": "x.y"}, "gpudag")


def test_shipped_checkpoint_follows_the_domain():
    assert shipped_name("vmsched") == "vmsched_gnn"
    assert shipped_name(None) == "jobshop_gnn"
    assert resolve_checkpoint(None).name == "jobshop_gnn.pt"
    assert resolve_checkpoint(None, "jobshop").name == "jobshop_gnn.pt"
    with pytest.raises(FileNotFoundError, match="nosuch_gnn: no such checkpoint"):
        resolve_checkpoint(None, "nosuch")


def test_unbound_trained_agent_defaults_to_job_shop():
    assert trained_agent_domains(None) == ("jobshop",)
    assert trained_agent_domains(None, samples=4) == ("jobshop",)
    assert trained_agent_domains(None, domain="jobshop") == ("jobshop",)
