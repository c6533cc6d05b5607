"""Energy: action counts x energy per action + static power x time.

Counts are the simulator's device-wide work (per-core work x cores), the
energy per action comes from an `EnergyTable` whose entries say where each
number came from, and the board's static power from HwConfig. The GPU side is
a TDP estimate: decode tokens/s from `sim.roofline.gpu_decode` at the GPU's
published HBM utilization, divided by TDP — the same basis FlightLLM used, so
our ratio can be set next to its published 6.0x without being forced to it.
"""
from __future__ import annotations

from hwmodel.energy_table import ACTIONS, EnergyTable
from hwmodel.gpu import GpuPreset
from hwmodel.hwconfig import HwConfig
from hwmodel.published import ENERGY, REFERENCE_GPU
from sim.roofline import gpu_decode
from sim.stats import Stats



def _phase_energy(stats: Stats, hw: HwConfig, table: EnergyTable, phase: str) -> dict:
    ph = stats.phases[phase]
    seconds = stats.seconds(ph.cycles)
    actions = {}
    for name, (_, field) in ACTIONS.items():
        count = ph.work[field] * hw.slrs
        entry = table.actions[name]
        actions[name] = {"count": count, "pj": entry.pj, "per": entry.per, "joules": count * entry.joules}
    dynamic = sum(a["joules"] for a in actions.values())
    static = hw.static_power_w * seconds
    total = dynamic + static
    return {"seconds": seconds, "tokens": ph.tokens, "actions": actions, "dynamic_j": dynamic, "static_j": static,
            "total_j": total, "power_w": total / seconds if seconds else 0.0,
            "dynamic_power_w": dynamic / seconds if seconds else 0.0,
            "joules_per_token": total / ph.tokens if ph.tokens else 0.0,
            "tokens_per_joule": ph.tokens / total if total else 0.0}


def _gpu_energy(stats: Stats, hw: HwConfig, gpu: GpuPreset) -> dict:
    dec = gpu_decode(stats, hw, gpu)
    return {"tdp_w": gpu.tdp_w, "bytes_per_token": dec["bytes_per_token"],
            "decode_tokens_per_s": dec["tokens_per_s"],
            "tokens_per_joule": {k: tps / gpu.tdp_w for k, tps in dec["tokens_per_s"].items()}}


def energy_report(stats: Stats, hw: HwConfig, table: EnergyTable, gpus: list[GpuPreset]) -> dict:
    """Joules per phase and action; `power_w` and `tokens_per_joule` are those of decode
    (of prefill when there is no decode); GPU estimates and the ratio vs V100S."""
    phases = {p: _phase_energy(stats, hw, table, p) for p in stats.phases}
    main_phase = "decode" if phases.get("decode", {}).get("tokens") else "prefill"
    main = phases[main_phase]
    total_j = sum(p["total_j"] for p in phases.values())
    total_s = sum(p["seconds"] for p in phases.values())
    out = {"table": table.name, "table_source": table.source, "technology_scale": table.technology_scale,
           "sources": {k: e.source for k, e in table.actions.items()},
           "static_power_w": hw.static_power_w, "phases": phases,
           "run": {"total_j": total_j, "seconds": total_s, "power_w": total_j / total_s if total_s else 0.0},
           "phase": main_phase, "power_w": main["power_w"], "tokens_per_joule": main["tokens_per_joule"],
           "gpus": {}, "vs_v100s": None, "published": ENERGY}
    if "decode" in phases and phases["decode"]["tokens"]:
        out["gpus"] = {g.name: _gpu_energy(stats, hw, g) for g in gpus}
        ref = out["gpus"].get(REFERENCE_GPU)
        if ref:
            out["vs_v100s"] = {k: main["tokens_per_joule"] / v for k, v in ref["tokens_per_joule"].items()}
    return out
