"""Model checkpoints: Hugging Face LLaMA- and OPT-style directories (config.json +
*.safetensors, through the `safetensors` package), GGUF files and the built-in
`smollm2` (compiler.weights.gguf), checked tensor by tensor, so a missing
tensor, a wrong shape or a NaN is one clear line naming it. Also writes the
seeded random tiny checkpoint the numerics tests use.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler.model_config import ModelConfig, load_model
from hwmodel.configio import Fields, load_mapping
from hwmodel.errors import CheckpointError, ConfigError

# the Hugging Face module of each linear op, by our short name
HF_LINEARS = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
              "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
ROPE_THETA_DEFAULT = 10000.0
NORM_EPS_DEFAULT = 1e-5
# The norm parameter record holds eps as FP32 (hwmodel.isa.PARAM_HEADER_BYTES),
# so it must be a normal FP32 number; above 1 it would swamp the mean square.
NORM_EPS_RANGE = (float(np.finfo(np.float32).tiny), 1.0)


def expected_shapes(m: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of this architecture must hold, with its shape (HF names)."""
    d, hd, ffn = m.hidden, m.head_dim, m.ffn
    kvd = m.kv_heads * hd
    out: dict[str, tuple[int, ...]] = {}
    if m.positional == "rope":      # LLaMA family
        out["model.embed_tokens.weight"] = (m.vocab, d)
        for i in range(m.layers):
            p = f"model.layers.{i}."
            out.update({p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
                        p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kvd, d),
                        p + "self_attn.v_proj.weight": (kvd, d), p + "self_attn.o_proj.weight": (d, d),
                        p + "mlp.gate_proj.weight": (ffn, d), p + "mlp.up_proj.weight": (ffn, d),
                        p + "mlp.down_proj.weight": (d, ffn)})
        out["model.norm.weight"] = (d,)
        out["lm_head.weight"] = (m.vocab, d)
        return out
    p0 = "model.decoder."            # OPT family
    out[p0 + "embed_tokens.weight"] = (m.vocab, d)
    out[p0 + "embed_positions.weight"] = (m.max_context + 2, d)
    for i in range(m.layers):
        p = f"{p0}layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[p + f"self_attn.{proj}.weight"] = (d, d)
            out[p + f"self_attn.{proj}.bias"] = (d,)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            out[p + f"{ln}.weight"] = (d,)
            out[p + f"{ln}.bias"] = (d,)
        out.update({p + "fc1.weight": (ffn, d), p + "fc1.bias": (ffn,), p + "fc2.weight": (d, ffn),
                    p + "fc2.bias": (d,)})
    out[p0 + "final_layer_norm.weight"] = (d,)
    out[p0 + "final_layer_norm.bias"] = (d,)
    out["lm_head.weight"] = (m.vocab, d)
    return out


@dataclass
class Checkpoint:
    model: ModelConfig
    weights: dict[str, np.ndarray]     # float32, by Hugging Face name
    rope_theta: float
    norm_eps: float
    tokenizer: Any = None              # a `tokenizers.Tokenizer` when the checkpoint carries one


TIED = {"lm_head.weight": ("model.embed_tokens.weight", "model.decoder.embed_tokens.weight")}


def load_checkpoint(path: str | Path) -> Checkpoint:
    """The architecture, float32 tensors and constants of a checkpoint: a Hugging
    Face directory, a .gguf file, or a built-in name (`smollm2`)."""
    from safetensors.numpy import load_file

    from compiler.weights import gguf
    if str(path) in gguf.BUILTIN or str(path).endswith(".gguf"):
        return gguf.load_gguf(gguf.builtin_path(str(path)) if str(path) in gguf.BUILTIN else Path(path))
    root = Path(path)
    config = root / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{root}: no config.json (expected a Hugging Face checkpoint directory)")
    try:
        model = load_model(config)
        theta, eps = hf_constants(config)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    files = sorted(root.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{root}: no *.safetensors file")
    tensors: dict[str, np.ndarray] = {}
    for f in files:
        try:
            for name, value in load_file(str(f)).items():
                tensors[name] = value
        except Exception as exc:        # the package raises several types for a damaged file
            raise CheckpointError(f"{f}: cannot read safetensors: {exc}") from None
    held = sum(v.nbytes for v in tensors.values())
    if model.linear_params > held:      # every weight takes at least a byte: refuse before listing the tensors
        raise CheckpointError(f"{config}: fields num_hidden_layers={model.layers}, hidden_size={model.hidden}, "
                              f"vocab_size={model.vocab}: {model.linear_params} weights, more than the {held} bytes of "
                              f"tensors in its *.safetensors files")
    return Checkpoint(model, checked_weights(model, tensors, root), theta, eps)


def checked_weights(model: ModelConfig, tensors: dict[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    """The tensors `model` needs (a tied LM head filled in), each of its shape and
    finite, as float32; anything else is one CheckpointError naming the tensor."""
    for name, tied in TIED.items():
        if name not in tensors:
            src = next((t for t in tied if t in tensors), None)
            if src is not None:
                tensors[name] = tensors[src]
    weights = {}
    for name, shape in expected_shapes(model).items():
        if name not in tensors:
            raise CheckpointError(f"{source}: tensor {name} is missing (expected shape {list(shape)})")
        value = tensors[name]
        if tuple(value.shape) != shape:
            raise CheckpointError(f"{source}: tensor {name} has shape {list(value.shape)}, expected {list(shape)}")
        value = np.asarray(value, dtype=np.float32)
        if not np.isfinite(value).all():
            raise CheckpointError(f"{source}: tensor {name} contains NaN or infinite values")
        weights[name] = value
    return weights


def hf_constants(config: str | Path) -> tuple[float, float]:
    """RoPE base and norm epsilon of a config.json (defaults where absent)."""
    f = Fields(load_mapping(config), config)
    theta = f.number("rope_theta", ROPE_THETA_DEFAULT)
    if theta <= 1:      # the RoPE frequencies theta**(-2i/d) must fall with i
        raise f.error("rope_theta", f"expected a number > 1, got {theta:g}")
    key = "rms_norm_eps" if f.has("rms_norm_eps") or not f.has("layer_norm_eps") else "layer_norm_eps"
    lo, hi = NORM_EPS_RANGE
    return theta, f.number(key, NORM_EPS_DEFAULT, lo=lo, hi=hi)


def write_random_llama(path: str | Path, model: ModelConfig, seed: int = 0, theta: float = ROPE_THETA_DEFAULT) -> Path:
    """A LLaMA-style checkpoint of `model`'s shape with seeded random weights."""
    from safetensors.numpy import save_file

    if model.positional != "rope":
        raise CheckpointError(f"{model.source}: write_random_llama needs a LLaMA-style (RoPE) model")
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_shapes(model).items():
        if name.endswith("norm.weight"):
            tensors[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif "embed" in name:
            tensors[name] = rng.standard_normal(shape).astype(np.float32)
        else:
            tensors[name] = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
    save_file(tensors, str(root / "model.safetensors"))
    config = {"model_type": "llama", "_name_or_path": model.name, "hidden_size": model.hidden,
              "num_hidden_layers": model.layers, "num_attention_heads": model.heads,
              "num_key_value_heads": model.kv_heads, "intermediate_size": model.ffn, "vocab_size": model.vocab,
              "max_position_embeddings": model.max_context, "hidden_act": "silu", "rms_norm_eps": 1e-5,
              "rope_theta": theta}
    (root / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    return root


def float_weights(ck: Checkpoint) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A LLaMA-style checkpoint's float weights and norm gains under our short names
    (`L0.q`, `L0.attn_norm`, ...), as compression and the float model use them."""
    m, t = ck.model, ck.weights
    w = {"embed": t["model.embed_tokens.weight"], "lm_head": t["lm_head.weight"]}
    norms = {"final_norm": t["model.norm.weight"]}
    for i in range(m.layers):
        p = f"model.layers.{i}."
        for op, hf in HF_LINEARS.items():
            w[f"L{i}.{op}"] = t[p + hf + ".weight"].astype(np.float64)
        norms[f"L{i}.attn_norm"] = t[p + "input_layernorm.weight"].astype(np.float64)
        norms[f"L{i}.ffn_norm"] = t[p + "post_attention_layernorm.weight"].astype(np.float64)
    return w, norms
