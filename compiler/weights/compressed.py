"""The compressed model: what compression produces and both the packer and the
reference read (docs/numerics.md), and its file (safetensors with a JSON header).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from compiler.model_config import ModelConfig
from compiler.weights.quantize import QuantLinear
from hwmodel.errors import CheckpointError
from hwmodel.isa import SCORE_DIVISOR


@dataclass
class CompressedModel:
    """A compressed model: INT8 embeddings, quantized linear ops, smoothed norm
    gains and the activation scales calibration chose."""
    model: ModelConfig
    compression: str
    scale_group: int
    attn_block: int
    attn_density: tuple[float, ...]                     # kept fraction of causal blocks, per decoder layer
    rope_theta: float
    norm_eps: float
    scales: dict[str, float]                            # activation scales by name (docs/numerics.md)
    embed: np.ndarray                                   # FP16 [vocab, hidden], real values (the residual stream)
    norms: dict[str, np.ndarray]                        # smoothed gains, float32 [hidden]
    linears: dict[str, QuantLinear] = field(default_factory=dict)   # "L0.q", ..., "lm_head"


def score_scale(cm: CompressedModel, layer: int) -> np.float32:
    """Softmax input = FP16(q.k / SCORE_DIVISOR) times this (docs/numerics.md)."""
    s = cm.scales
    return np.float32(s[f"L{layer}.q"] * s[f"L{layer}.k"] / math.sqrt(cm.model.head_dim) * SCORE_DIVISOR)


def save_compressed(cm: CompressedModel, path: str | Path) -> Path:
    from safetensors.numpy import save_file

    tensors = {"embed": cm.embed}
    tensors.update({f"norm.{k}": v for k, v in cm.norms.items()})
    for name, q in cm.linears.items():
        for part in ("codes", "scales", "zeros", "row_scale", "requant", "order"):
            tensors[f"{name}.{part}"] = np.ascontiguousarray(getattr(q, part))
        tensors[f"{name}.mask"] = q.mask.astype(np.uint8)
    meta = {"model": asdict(cm.model), "compression": cm.compression, "scale_group": cm.scale_group,
            "attn_block": cm.attn_block, "attn_density": cm.attn_density, "rope_theta": cm.rope_theta,
            "norm_eps": cm.norm_eps, "scales": cm.scales,
            "formats": {k: [q.n, q.bits] for k, q in cm.linears.items()}}
    path = Path(path)
    save_file(tensors, str(path), metadata={"dspflight": json.dumps(meta)})
    return path


def load_compressed(path: str | Path) -> CompressedModel:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        with safe_open(str(path), "np") as f:
            meta = json.loads(f.metadata()["dspflight"])
        t = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: not a compressed dspflight checkpoint ({exc})") from None
    model = ModelConfig(**meta["model"])
    linears = {}
    for name, (n, bits) in meta["formats"].items():
        parts = ("codes", "mask", "scales", "zeros", "row_scale", "requant", "order")
        missing = [p for p in parts if f"{name}.{p}" not in t]
        if missing:
            raise CheckpointError(f"{path}: tensor {name}.{missing[0]} is missing")
        linears[name] = QuantLinear(t[f"{name}.codes"], t[f"{name}.mask"].astype(bool), t[f"{name}.scales"],
                                    t[f"{name}.zeros"], t[f"{name}.row_scale"], t[f"{name}.requant"], n, bits,
                                    t[f"{name}.order"])
    if t.get("embed") is None or t["embed"].dtype != np.float16:
        raise CheckpointError(f"{path}: tensor embed is not FP16 (the residual stream's format; a file written "
                              f"before it became FP16 must be compressed again)")
    norms = {k[5:]: v for k, v in t.items() if k.startswith("norm.")}
    return CompressedModel(model, meta["compression"], meta["scale_group"], meta["attn_block"],
                           tuple(meta["attn_density"]), meta["rope_theta"], meta["norm_eps"], meta["scales"],
                           t["embed"], norms, linears)
