"""Compression profiles: per-op N:16 sparsity and weight bits, attention mask density."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from compiler.model_config import ModelConfig
from hwmodel.configio import Fields, config_fields
from hwmodel.errors import ConfigError
from hwmodel.hwconfig import HwConfig
from hwmodel.weight_record import LINEAR_OPS



@dataclass(frozen=True)
class WeightFormat:
    n: int        # non-zeros per 16 (16 = dense)
    bits: int     # stored bits per non-zero weight


@dataclass(frozen=True)
class Compression:
    name: str
    source: str
    activation_bits: int
    kv_bits: int
    scale_group: int
    attn_block: int
    attn_density: float | tuple[float, ...]   # kept fraction of causal blocks: every layer, or one per layer
    attn_density_default: float | None         # every layer's, when the list does not match the model's depth
    default: WeightFormat
    ops: dict[str, WeightFormat] = field(default_factory=dict)
    overrides: tuple[tuple[frozenset, frozenset, dict], ...] = ()   # (layers, ops, {n/bits})

    def weight_format(self, op: str, layer: int) -> WeightFormat:
        fmt = self.ops.get(op, self.default)
        for layers, ops, values in self.overrides:
            if layer in layers and (not ops or op in ops):
                fmt = WeightFormat(values.get("n", fmt.n), values.get("bits", fmt.bits))
        return fmt

    def attn_densities(self, model: ModelConfig) -> tuple[float, ...]:
        """Each decoder layer's kept fraction of causal attention blocks. A list holds
        for a model of its length only (masks are measured per layer of one model);
        another depth gets `density_default` on every layer, or an error."""
        if isinstance(self.attn_density, float):
            return (self.attn_density,) * model.layers
        if len(self.attn_density) == model.layers:
            return self.attn_density
        if self.attn_density_default is not None:
            return (self.attn_density_default,) * model.layers
        raise ConfigError(f"{self.source}: field attention.density: {len(self.attn_density)} values, one per "
                          f"decoder layer, but {model.name} has {model.layers} layers (give one value per "
                          f"layer, or attention.density_default for models of another depth)")


def _format(f: Fields, key: str, hw: HwConfig, base: WeightFormat | None = None) -> WeightFormat:
    sub = f.sub(key)
    sub.check_known({"n", "bits"})
    n = sub.integer("n", base.n if base else ..., lo=1)
    bits = sub.integer("bits", base.bits if base else ..., lo=1)
    _check_supported(sub, n, bits, hw)
    return WeightFormat(n, bits)


def _check_supported(f: Fields, n: int, bits: int, hw: HwConfig) -> None:
    if n not in hw.sparsity_n:
        raise f.error("n", f"N={n} is not supported by {hw.name} (mpe.sparsity_n = {list(hw.sparsity_n)})")
    if bits not in hw.weight_bits:
        raise f.error("bits", f"{bits}-bit weights are not supported by {hw.name} "
                              f"(mpe.weight_bits = {list(hw.weight_bits)})")


def load_compression(spec: "str | Path | dict | Compression", hw: HwConfig, source: str | None = None) -> Compression:
    """A profile (`flightllm`, `dense-int8`, a path, its mapping as data with errors
    naming `source`, or a Compression), checked against the hardware."""
    if isinstance(spec, Compression):
        return spec
    f, file = config_fields("compression", spec, source)
    path = file or f.source
    f.check_known({"name", "activation_bits", "kv_bits", "scale_group", "weights", "attention"})
    w = f.sub("weights")
    w.check_known({"default", "ops", "layers"})
    default = _format(w, "default", hw)
    ops_f = w.sub("ops", {})
    ops_f.check_known(LINEAR_OPS)
    ops = {k: _format(ops_f, k, hw, default) for k in LINEAR_OPS if ops_f.has(k)}
    overrides = []
    raw_layers = w.raw("layers", [])
    if not isinstance(raw_layers, list):
        raise w.error("layers", "expected a list of overrides")
    for i, item in enumerate(raw_layers):
        if not isinstance(item, dict):
            raise w.error(f"layers[{i}]", "expected a mapping")
        o = Fields(item, path, f"weights.layers[{i}].")
        o.check_known({"layers", "ops", "n", "bits"})
        layers = o.int_list("layers", lo=0)
        kinds = o.raw("ops", [])
        if not isinstance(kinds, list) or any(k not in LINEAR_OPS for k in kinds):
            raise o.error("ops", f"expected a list of {', '.join(LINEAR_OPS)}")
        values = {k: o.integer(k, lo=1) for k in ("n", "bits") if o.has(k)}
        _check_supported(o, values.get("n", hw.sparsity_n[-1]), values.get("bits", hw.weight_bits[-1]), hw)
        overrides.append((frozenset(layers), frozenset(kinds), values))
    att = f.sub("attention")
    att.check_known({"block", "density", "density_default"})
    density, density_default = _attn_density(att)
    act_bits = f.integer("activation_bits", lo=8, hi=8)
    return Compression(
        name=f.text("name"), source=str(path), activation_bits=act_bits,
        kv_bits=f.integer("kv_bits", lo=8, hi=8), scale_group=f.integer("scale_group", lo=16),
        attn_block=att.integer("block", lo=16), attn_density=density, attn_density_default=density_default,
        default=default, ops=ops, overrides=tuple(overrides),
    )


def _attn_density(att: Fields) -> tuple[float | tuple[float, ...], float | None]:
    """`density`: one fraction for every layer or a list with one per decoder layer;
    `density_default` stands in for a list on a model of another depth."""
    lo, hi = 0.01, 1.0
    per_layer = isinstance(att.raw("density"), list)
    density = att.number_list("density", lo=lo, hi=hi) if per_layer else att.number("density", lo=lo, hi=hi)
    if not att.has("density_default"):
        return density, None
    if not per_layer:
        raise att.error("density_default", "applies only when density is a per-layer list")
    return density, att.number("density_default", lo=lo, hi=hi)
