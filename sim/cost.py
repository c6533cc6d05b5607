"""Cost efficiency: decode tokens/s per dollar of device price.

The FPGA's tokens/s is the simulated decode speed and its price is
`HwConfig.price_usd`; a GPU's tokens/s is `sim.roofline.gpu_decode` at each of
its published HBM utilizations (and at the roofline bound). GPUs without a
price are left out. FlightLLM reported 1.8x vs V100S on average; ours is
reported next to it, not fitted to it.
"""
from __future__ import annotations

from hwmodel.gpu import GpuPreset
from hwmodel.hwconfig import HwConfig
from hwmodel.published import COST, REFERENCE_GPU
from sim.roofline import gpu_decode
from sim.stats import Stats



def cost_report(stats: Stats, hw: HwConfig, gpus: list[GpuPreset]) -> dict:
    """`fpga` and `gpus` tokens/s per dollar, and the FPGA's ratio to V100S per utilization."""
    dec = stats.phases.get("decode")
    seconds = stats.seconds(dec.cycles) if dec else 0.0
    tps = dec.tokens / seconds if dec and seconds else 0.0
    per_dollar = tps / hw.price_usd if hw.price_usd else None
    out = {"fpga": {"name": hw.name, "price_usd": hw.price_usd, "tokens_per_s": tps,
                    "tokens_per_s_per_dollar": per_dollar},
           "gpus": {}, "vs_v100s": None, "vs_v100s_mean": None, "published": COST}
    if not tps:
        return out
    for g in gpus:
        if g.price_usd is None:
            continue
        speeds = gpu_decode(stats, hw, g)["tokens_per_s"]
        out["gpus"][g.name] = {"price_usd": g.price_usd, "tokens_per_s": speeds,
                               "tokens_per_s_per_dollar": {k: v / g.price_usd for k, v in speeds.items()}}
    ref = out["gpus"].get(REFERENCE_GPU)
    if ref and per_dollar is not None:
        out["vs_v100s"] = {k: per_dollar / v for k, v in ref["tokens_per_s_per_dollar"].items()}
        published = [v for k, v in out["vs_v100s"].items() if k != "roofline"]
        # FlightLLM's "1.8x on average" is set against the mean over the published utilizations.
        out["vs_v100s_mean"] = sum(published) / len(published) if published else None
    return out
