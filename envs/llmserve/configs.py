"""Model and device configurations (small YAML files) and the derived memory arithmetic.

The configs are ``envs/data/llmserve/{models,devices}/*.yaml`` (shipped inside the package). A name
is looked up there; a path to a YAML file is read directly.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from functools import cache
from pathlib import Path

import yaml

from schedgym.envs.core.errors import InstanceFormatError, UnknownNameError

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "llmserve"


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer (Llama style).

    Attributes:
        name: short name (``llama2-7b``).
        num_layers: transformer blocks.
        num_q_heads, num_kv_heads: attention heads (KV heads < Q heads: grouped-query attention).
        embedding_dim: hidden size.
        mlp_hidden_dim: MLP intermediate size.
        vocab_size: vocabulary size.
        use_gated_mlp: SwiGLU-style gated MLP (3 weight matrices) or plain (2).
        post_attn_norm: a norm before the MLP.
        max_model_len: longest context (prompt + output tokens).
        dtype_bytes: bytes per weight and per KV element (2 for fp16/bf16).
        hf_name: Hugging Face id, informational.
        attn_head_dim: attention head size when it is not ``embedding_dim / num_q_heads`` (Qwen3:
            128), else 0.
        num_experts: routed experts per MoE layer (0: a dense model; ``mlp_hidden_dim`` is then unused
            by the MLP part of the weight count).
        experts_per_token: experts each token is routed to (top-k).
        expert_mlp_dim: intermediate size of one routed expert.
        shared_expert_mlp_dim: intermediate size of the always-active shared expert(s) (0: none).
        kv_lora_rank: multi-head latent attention (MLA, DeepSeek-V2/V3): rank of the compressed KV
            latent cached per token and layer (0: plain grouped-query attention).
        qk_rope_head_dim: MLA: the decoupled RoPE key dimension cached beside the latent.
    """

    name: str
    num_layers: int
    num_q_heads: int
    num_kv_heads: int
    embedding_dim: int
    mlp_hidden_dim: int
    vocab_size: int
    use_gated_mlp: bool = True
    post_attn_norm: bool = True
    max_model_len: int = 4096
    dtype_bytes: int = 2
    hf_name: str | None = None
    attn_head_dim: int = 0
    num_experts: int = 0
    experts_per_token: int = 0
    expert_mlp_dim: int = 0
    shared_expert_mlp_dim: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0

    def __post_init__(self):
        if self.num_experts and not (1 <= self.experts_per_token <= self.num_experts and self.expert_mlp_dim > 0):
            raise InstanceFormatError(f"model {self.name}", f"MoE fields: experts_per_token="
                                      f"{self.experts_per_token}, expert_mlp_dim={self.expert_mlp_dim} with "
                                      f"num_experts={self.num_experts}",
                                      fix="1 <= experts_per_token <= num_experts and expert_mlp_dim > 0")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def head_dim(self) -> int:
        return self.attn_head_dim or self.embedding_dim // self.num_q_heads

    def kv_bytes_per_token(self, tp: int = 1, pp: int = 1) -> int:
        """KV-cache bytes one token occupies on one device: 2 (K and V) x layers per stage x KV heads
        per tensor-parallel worker x head dim x bytes per element; with MLA, layers per stage x
        (kv_lora_rank + qk_rope_head_dim) x bytes per element (the latent is not split over TP workers:
        every worker caches it whole)."""
        if self.kv_lora_rank:
            return (self.num_layers // pp) * (self.kv_lora_rank + self.qk_rope_head_dim) * self.dtype_bytes
        return (2 * (self.num_layers // pp) * math.ceil(self.num_kv_heads / tp) * self.head_dim
                * self.dtype_bytes)

    def params_per_device(self, tp: int = 1, pp: int = 1) -> int:
        """Weights on one device (Vidur's count: attention and MLP matrices, no embeddings)."""
        h, hd = self.embedding_dim, self.head_dim
        q = self.num_q_heads // tp
        kv = math.ceil(self.num_kv_heads / tp)
        per_layer = h * hd * (q + 2 * kv) + h * hd * q
        mats = 3 if self.use_gated_mlp else 2
        if self.is_moe:  # every expert's weights are resident (sharded over the TP group)
            per_layer += mats * h * (self.num_experts * self.expert_mlp_dim + self.shared_expert_mlp_dim) // tp
            per_layer += h * self.num_experts  # router
        else:
            per_layer += mats * h * self.mlp_hidden_dim // tp
        return per_layer * (self.num_layers // pp)


@dataclass(frozen=True)
class DeviceConfig:
    """An accelerator (or the CPU) that hosts one tensor-parallel shard.

    Attributes:
        name: short name (``a100``).
        memory_gb: device memory, GiB.
        fp16_tflops: peak dense fp16 TFLOP/s (informational).
        hbm_gbps: memory bandwidth, GB/s (informational).
        pcie_gbps: host link bandwidth used for KV swap, GB/s.
    """

    name: str
    memory_gb: float
    fp16_tflops: float = 0.0
    hbm_gbps: float = 0.0
    pcie_gbps: float = 32.0


def _read_yaml(path: Path, cls):
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InstanceFormatError(str(path), f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InstanceFormatError(str(path), "expected a mapping of fields", fix=f"see {DATA_DIR}")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise InstanceFormatError(str(path), f"unknown fields {sorted(unknown)}",
                                  fix=f"valid fields: {sorted(known)}")
    missing = {f.name for f in fields(cls) if f.name not in data and f.default is MISSING}
    if missing:
        raise InstanceFormatError(str(path), f"missing fields {sorted(missing)}",
                                  fix="add them (see the shipped files for examples)")
    try:
        return cls(**data)
    except TypeError as exc:
        raise InstanceFormatError(str(path), str(exc)) from exc


def _catalogue(kind: str) -> dict[str, Path]:
    return {p.stem: p for p in sorted((DATA_DIR / kind).glob("*.yaml"))}


@cache
def load_model(name_or_path: str) -> ModelConfig:
    """A :class:`ModelConfig` by shipped name (``llama2-7b``) or YAML path."""
    p = Path(str(name_or_path))
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return _read_yaml(p, ModelConfig)
    cat = _catalogue("models")
    if name_or_path not in cat:
        raise UnknownNameError("model config", str(name_or_path), cat)
    return _read_yaml(cat[name_or_path], ModelConfig)


@cache
def load_device(name_or_path: str) -> DeviceConfig:
    """A :class:`DeviceConfig` by shipped name (``a100``) or YAML path."""
    p = Path(str(name_or_path))
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return _read_yaml(p, DeviceConfig)
    cat = _catalogue("devices")
    if name_or_path not in cat:
        raise UnknownNameError("device config", str(name_or_path), cat)
    return _read_yaml(cat[name_or_path], DeviceConfig)


def model_names() -> list[str]:
    return list(_catalogue("models"))


def device_names() -> list[str]:
    return list(_catalogue("devices"))
