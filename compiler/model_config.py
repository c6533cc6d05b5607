"""Model architecture: from our YAML or a Hugging Face `config.json`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hwmodel.configio import Fields, config_fields
from hwmodel.isa import WORD_BITS

# A dimension no instruction word can count (2**32) is refused when the model
# is read; whether the model fits a design is compiler.budget's question.
MAX_DIM = 2**WORD_BITS


@dataclass(frozen=True)
class ModelConfig:
    name: str
    source: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    max_context: int
    norm: str          # rmsnorm | layernorm
    activation: str    # silu | gelu | relu
    gated_ffn: bool
    positional: str    # rope | learned

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def group(self) -> int:
        """Query heads per KV head (grouped-query attention)."""
        return self.heads // self.kv_heads

    @property
    def linear_params(self) -> int:
        """Weights of all linear layers of the decoder and the LM head."""
        d, kvd = self.hidden, self.kv_heads * self.head_dim
        ffn = (3 if self.gated_ffn else 2) * d * self.ffn
        return self.layers * (d * (d + 2 * kvd) + d * d + ffn) + self.vocab * d


_KEYS = {"name", "layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "max_context", "norm", "activation",
         "gated_ffn", "positional"}

# Hugging Face config.json keys per model family -> our fields.
_HF_FAMILIES = {
    "llama": dict(norm="rmsnorm", activation="silu", gated_ffn=True, positional="rope", ffn_key="intermediate_size"),
    "mistral": dict(norm="rmsnorm", activation="silu", gated_ffn=True, positional="rope",
                    ffn_key="intermediate_size"),
    "opt": dict(norm="layernorm", activation="relu", gated_ffn=False, positional="learned", ffn_key="ffn_dim"),
}


# Our field -> its key in a Hugging Face config.json (the FFN width's key is the family's).
_HF_KEYS = {"layers": "num_hidden_layers", "hidden": "hidden_size", "heads": "num_attention_heads",
            "kv_heads": "num_key_value_heads", "vocab": "vocab_size", "max_context": "max_position_embeddings"}


def field_key(m: ModelConfig, name: str) -> str:
    """How field `name` of our ModelConfig is spelled in the file it came from."""
    if not m.source.endswith(".json"):
        return name
    if name == "ffn":
        return next(fam["ffn_key"] for fam in _HF_FAMILIES.values()
                    if (fam["norm"], fam["positional"]) == (m.norm, m.positional))
    return _HF_KEYS.get(name, name)


def load_model(spec: "str | Path | dict | ModelConfig", source: str | None = None) -> ModelConfig:
    """A built-in model (`llama2-7b`, `opt-6.7b`, `tiny`), a YAML file, a HF config.json,
    the YAML's mapping as data (errors name `source`), or a ModelConfig (returned as it is)."""
    if isinstance(spec, ModelConfig):
        return spec
    f, file = config_fields("models", spec, source, (".yaml", ".json"))
    path = file or f.source
    if file is not None and file.suffix == ".json":
        return _from_hf(f, file)
    f.check_known(_KEYS)
    m = ModelConfig(
        name=f.text("name"), source=str(path),
        layers=_dim(f, "layers", 1), hidden=_dim(f, "hidden", 16), heads=_dim(f, "heads", 1),
        kv_heads=_dim(f, "kv_heads", 1), ffn=_dim(f, "ffn", 16), vocab=_dim(f, "vocab", 2),
        max_context=_dim(f, "max_context", 1),
        norm=f.text("norm", choices=("rmsnorm", "layernorm")),
        activation=f.text("activation", choices=("silu", "gelu", "relu")),
        gated_ffn=f.boolean("gated_ffn"), positional=f.text("positional", choices=("rope", "learned")),
    )
    _check(m, f)
    return m


def _dim(f: Fields, key: str, lo: int, default=...) -> int:
    return f.integer(key, default, lo=lo, hi=MAX_DIM)


def _from_hf(f: Fields, path: Path) -> ModelConfig:
    family = f.text("model_type", choices=_HF_FAMILIES)
    fam = _HF_FAMILIES[family]
    heads = _dim(f, "num_attention_heads", 1)
    act = f.text("hidden_act", "silu" if family != "opt" else f.text("activation_function", "relu"))
    m = ModelConfig(
        name=_hf_name(f, path) or family,
        source=str(path),
        layers=_dim(f, "num_hidden_layers", 1), hidden=_dim(f, "hidden_size", 16), heads=heads,
        kv_heads=_dim(f, "num_key_value_heads", 1, heads), ffn=_dim(f, fam["ffn_key"], 16),
        vocab=_dim(f, "vocab_size", 2), max_context=_dim(f, "max_position_embeddings", 1),
        norm=fam["norm"], activation={"gelu_new": "gelu"}.get(act, act), gated_ffn=fam["gated_ffn"],
        positional=fam["positional"],
    )
    if m.activation not in ("silu", "gelu", "relu"):
        raise f.error("hidden_act", f"expected silu, gelu or relu, got {act!r}")
    _check(m, f)
    return m


def _hf_name(f: Fields, path: Path) -> str:
    """The last part of `_name_or_path` (null in some exported configs: then the folder's name)."""
    folder = path.parent.name or path.stem
    return (folder if f.raw("_name_or_path", None) is None else f.text("_name_or_path")).split("/")[-1].lower()


def _check(m: ModelConfig, f: Fields) -> None:
    """Shapes that must agree, each error naming the field as its file spells it."""
    heads_key, kv_key, hidden_key, ffn_key = (field_key(m, k) for k in ("heads", "kv_heads", "hidden", "ffn"))
    if m.hidden % m.heads:
        raise f.error(hidden_key, f"{m.hidden} is not a multiple of {heads_key}={m.heads}")
    if m.heads % m.kv_heads:
        raise f.error(kv_key, f"{m.kv_heads} does not divide {heads_key}={m.heads}")
    if m.head_dim % 16:
        raise f.error(hidden_key, f"head dimension {m.head_dim} must be a multiple of 16 (N:16 blocks)")
    for key, value in ((hidden_key, m.hidden), (ffn_key, m.ffn)):
        if value % 16:
            raise f.error(key, f"{value} must be a multiple of 16 (N:16 blocks)")
