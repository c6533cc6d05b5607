"""GPU presets: roofline-only devices the FPGA design is compared with.

A preset holds only what a roofline, an energy and a cost comparison need —
peak compute, memory bandwidth, TDP, price — plus the decode HBM bandwidth
utilization FlightLLM measured on that GPU, so a GPU's decode speed can be
estimated from the same bytes per token the simulator counts. Files live in
`configs/hardware/gpu/`, each number with its source.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hwmodel.configio import Fields, config_root, load_mapping, resolve_config

_FIELDS = {"name", "description", "peak_fp16_tflops", "peak_int8_tops", "memory_gbps", "tdp_w", "price_usd",
           "decode_hbm_utilization"}


@dataclass(frozen=True)
class GpuPreset:
    name: str
    source: str
    description: str
    peak_fp16_tflops: float
    peak_int8_tops: float | None
    memory_gbps: float
    tdp_w: float
    price_usd: float | None
    decode_hbm_utilization: dict[str, float] = field(default_factory=dict)   # e.g. {"naive": .., "vllm": ..}

    @property
    def peak_fp16_ops(self) -> float:
        """FP16 operations per second (a MAC is two operations)."""
        return self.peak_fp16_tflops * 1e12

    @property
    def memory_bytes_per_s(self) -> float:
        return self.memory_gbps * 1e9


def _optional_number(f: Fields, key: str) -> float | None:
    """A number that may be absent or null (FACTS.md does not give every figure)."""
    return None if f.raw(key, None) is None else f.number(key, lo=0.001)


def load_gpu(name_or_path: str | Path) -> GpuPreset:
    """Load a GPU preset (`v100s`, `a100`, `h100` or a YAML path)."""
    path = resolve_config("hardware", str(name_or_path))
    f = Fields(load_mapping(path), path)
    f.check_known(_FIELDS)
    util = f.sub("decode_hbm_utilization", {})
    for key in util.data:
        if not isinstance(key, str):      # names a serving stack in the reports
            raise util.error(key, "expected a name such as naive or vllm")
    utilization = {key: util.number(key, lo=0.001, hi=1.0) for key in util.data}
    return GpuPreset(
        name=f.text("name"),
        source=str(path),
        description=f.text("description", ""),
        peak_fp16_tflops=f.number("peak_fp16_tflops", lo=0.001),
        peak_int8_tops=_optional_number(f, "peak_int8_tops"),
        memory_gbps=f.number("memory_gbps", lo=0.001),
        tdp_w=f.number("tdp_w", lo=0.001),
        price_usd=_optional_number(f, "price_usd"),
        decode_hbm_utilization=utilization,
    )


def all_gpus() -> list[GpuPreset]:
    """Every built-in preset in `configs/hardware/gpu/`, by name."""
    return [load_gpu(p) for p in sorted((config_root() / "hardware" / "gpu").glob("*.yaml"))]
