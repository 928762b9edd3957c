"""Policy checkpoints that load into any padded size.

A checkpoint is a small ``torch.save`` file holding the policy class, its constructor keywords, its
``state_dict``, the env it was trained on and that env's domain (:func:`checkpoint_domain`). :func:`load_policy` rebuilds the policy for the
observation and action spaces of the env at hand (for example a 30x20 job-shop for a policy trained
on 10x10) and loads the weights with ``strict=True``: no parameter of the graph policies depends on
the number of nodes or actions.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

FORMAT = "schedgym-policy-v1"
SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _serialisable_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in kwargs.items():
        if isinstance(v, type):
            out[k] = {"__class__": _class_path(v)}
        elif isinstance(v, dict):
            out[k] = _serialisable_kwargs(v)
        else:
            out[k] = v
    return out


def _restore_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in kwargs.items():
        if isinstance(v, dict) and set(v) == {"__class__"}:
            out[k] = _import(v["__class__"])
        elif isinstance(v, dict):
            out[k] = _restore_kwargs(v)
        else:
            out[k] = v
    return out


def domain_of_env_id(env_id: str) -> str | None:
    """The name of the domain whose ``env_ids`` include ``env_id`` (None for an env of no domain)."""
    from schedgym.envs.core.domain import DOMAINS, get_domain

    for name in DOMAINS:
        if env_id in get_domain(name).env_ids:
            return name
    return None


def payload_domain(payload: dict[str, Any]) -> str | None:
    """The domain a checkpoint's policy was trained on: the recorded ``domain``, else (checkpoints
    written before it was recorded) the domain of its ``env_id``; None when neither is known."""
    return payload.get("domain") or domain_of_env_id(str(payload.get("env_id", "")))


def checkpoint_domain(path: str | Path | None) -> str | None:
    """:func:`payload_domain` of the checkpoint at ``path`` (a path or shipped name)."""
    return payload_domain(read_checkpoint(path))


def save_policy(policy: torch.nn.Module, path: str | Path, env_id: str, env_kwargs: dict[str, Any] | None = None,
                meta: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint of ``policy`` atomically, with the domain of ``env_id``; returns the path."""
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

    if not isinstance(policy, MaskableActorCriticPolicy):
        raise TypeError(f"expected a MaskableActorCriticPolicy, got {type(policy).__name__}")
    ctor = policy._get_constructor_parameters()
    for k in ("observation_space", "action_space", "lr_schedule", "use_sde"):
        ctor.pop(k, None)
    # optimizer settings are training state, not part of the policy
    ctor.pop("optimizer_class", None)
    ctor.pop("optimizer_kwargs", None)
    payload = {
        "format": FORMAT,
        "policy_class": _class_path(type(policy)),
        "policy_kwargs": _serialisable_kwargs(ctor),
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
        "env_id": env_id,
        "domain": domain_of_env_id(env_id),
        "env_kwargs": env_kwargs or {},
        "meta": meta or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's payload; a clear error for files that are not schedgym checkpoints."""
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a schedgym policy checkpoint (expected format {FORMAT!r}); "
                         "SB3 .zip training checkpoints load with MaskablePPO.load")
    return payload


def shipped_name(domain: str | None, env: str | None = None) -> str:
    """Name of the shipped checkpoint for an env config: its own ``<env>_gnn`` when one is shipped
    (``fjsp_gnn`` for ``env=fjsp``), else its domain's ``<domain>_gnn`` (``None``: the job-shop one)."""
    if env and (SHIPPED_DIR / f"{env}_gnn.pt").is_file():
        return f"{env}_gnn"
    return f"{domain or 'jobshop'}_gnn"


def resolve_checkpoint(path: str | Path | None, domain: str | None = None) -> Path:
    """A path, or the name of a shipped checkpoint in ``agents/checkpoints`` (``None``: the shipped
    checkpoint of ``domain``, :func:`shipped_name`)."""
    if path is None:
        path = shipped_name(domain)
    p = Path(path)
    if p.is_file():
        return p
    shipped = SHIPPED_DIR / f"{path}.pt"
    if shipped.is_file():
        return shipped
    names = sorted(q.stem for q in SHIPPED_DIR.glob("*.pt")) if SHIPPED_DIR.is_dir() else []
    raise FileNotFoundError(f"{path}: no such checkpoint file, and not a shipped checkpoint ({names})")


def load_policy(path: str | Path | None, observation_space: gym.spaces.Space, action_space: gym.spaces.Space,
                device: str = "cpu"):
    """Rebuild the checkpoint's policy for these spaces and load its weights (``strict=True``)."""
    payload = read_checkpoint(path)
    cls = _import(payload["policy_class"])
    kwargs = _restore_kwargs(payload["policy_kwargs"])
    # built on the meta device (no memory, no initialisation), then allocated and filled from the
    # checkpoint: SB3 first builds a Linear(A * h, A) action net that the graph policies replace,
    # which at A = 3,000 actions would take GBs and minutes of orthogonal initialisation
    with torch.device("meta"):
        policy = cls(observation_space, action_space, lambda _: 0.0, **kwargs)
    policy = policy.to_empty(device="cpu")
    try:
        policy.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{resolve_checkpoint(path)}: weights do not fit this env's spaces ({exc}); "
                         "only graph policies transfer across padded sizes") from exc
    policy.set_training_mode(False)
    return policy.to(device)
