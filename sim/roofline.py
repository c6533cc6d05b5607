"""Roofline per op, per layer and per phase, for the FPGA design and GPU presets.

For the FPGA the operations are the useful (non-zero) INT8 MACs x 2 and the
bytes are what the simulator moved over HBM, so each point says how close an
op came to its roof and which roof it is under. The compute peak depends on
the phase: batch-1 decode runs matrix-vector products, which cannot use the
second MAC of a packed DSP (`mv_macs_per_cycle`); prefill packs two tokens
(`mm_macs_per_cycle`). The bandwidth roof is what the placement's weight
PCs sustain on a linear read (hwmodel.transfer.streaming_gbps: refresh,
column spacing, ports); the raw peak is recorded next to it.

The GPUs run the same ops dense at FP16: 2 x dense MACs operations and 2 bytes
per dense weight (for attention, per K/V element the design reads), which is
what an FP16 GPU implementation streams at batch 1.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

from hwmodel.atomic import write_atomic
from hwmodel.gpu import GpuPreset
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import QUEUES, Op
from hwmodel.placement import Placement
from hwmodel.published import DECODE as PUBLISHED_DECODE
from hwmodel.transfer import streaming_gbps
from sim.stats import Stats

FP16_BYTES = 2
_KIND = {Op.LD: "memory", Op.ST: "memory", Op.MISC: "sfu", Op.SYS: "sync"}


def fpga_peak_ops(hw: HwConfig, phase: str) -> float:
    """Device INT8 operations per second: MV lanes for batch-1 decode, packed MM lanes otherwise."""
    macs = hw.mv_macs_per_cycle if phase == "decode" else hw.mm_macs_per_cycle
    return 2.0 * macs * hw.slrs * hw.clock_hz


def hbm_bandwidth(hw: HwConfig, placement: Placement) -> tuple[float, float]:
    """(peak, effective) HBM bytes per second; effective = what the weight PCs sustain."""
    return hw.hbm.peak_gbps * 1e9, streaming_gbps(hw, placement)[1] * 1e9


def bandwidth_basis(hw: HwConfig, placement: Placement) -> dict:
    """Where the effective bandwidth comes from, for reports."""
    pcs, total = streaming_gbps(hw, placement)
    return {"plan": placement.name, "weight_pcs": pcs, "pc_peak_gbps": hw.hbm.pc_gbps,
            "pc_sustained_gbps": total / pcs if pcs else 0.0, "refresh_duty": hw.hbm.refresh_duty}


def dense_weights(work: dict[str, int]) -> float:
    """Weights (or K/V elements) a dense implementation reads: the non-zeros scaled by dense/useful MACs."""
    return work["weights"] * work["dense_macs"] / work["macs"] if work["macs"] else 0.0


def _roof(peak: float, bandwidth: float, intensity: float | None) -> float:
    return peak if intensity is None else min(peak, bandwidth * intensity)


def _bound(peak: float, bandwidth: float, intensity: float | None) -> str:
    return "compute" if intensity is None or intensity >= peak / bandwidth else "memory"


def _gpu_op(gpu: GpuPreset, work: dict[str, int], cores: int) -> dict:
    ops = 2.0 * work["dense_macs"] * cores
    nbytes = FP16_BYTES * dense_weights(work) * cores
    intensity = ops / nbytes if nbytes else None
    roof = _roof(gpu.peak_fp16_ops, gpu.memory_bytes_per_s, intensity)
    return {"ops": ops, "hbm_bytes": nbytes, "intensity": intensity, "roof_ops_per_s": roof,
            "time_s": ops / roof, "bound": _bound(gpu.peak_fp16_ops, gpu.memory_bytes_per_s, intensity)}


def _fpga_op(stats: Stats, hw: HwConfig, phase: str, o: dict, gpus: list[GpuPreset]) -> dict:
    w, cores = o["work"], hw.slrs
    peak = fpga_peak_ops(hw, phase)
    bw_peak, bw_eff = hbm_bandwidth(hw, stats.placement)
    ops = 2.0 * w["macs"] * cores
    nbytes = w["hbm_bytes"] * cores
    time_s = stats.seconds(o["cycles"])
    entry = {"cycles": o["cycles"], "time_s": time_s, "ops": ops, "hbm_bytes": nbytes,
             "queue_busy_s": {QUEUES[q]: stats.seconds(b) for q, b in enumerate(o["busy"]) if b}}
    if not w["macs"]:
        # No MACs: not a roofline point; say which unit its time went to.
        busiest = max(range(len(QUEUES)), key=lambda q: o["busy"][q])
        kind = _KIND.get(Op(busiest), "compute") if o["busy"][busiest] else "idle"
        return entry | {"intensity": None, "attained_ops_per_s": 0.0, "roof_ops_per_s": None, "bound": kind}
    intensity = ops / nbytes if nbytes else None
    roof = _roof(peak, bw_eff, intensity)
    attained = ops / time_s if time_s else 0.0
    return entry | {"intensity": intensity, "attained_ops_per_s": attained, "roof_ops_per_s": roof,
                    "roof_at_peak_bandwidth_ops_per_s": _roof(peak, bw_peak, intensity),
                    "fraction_of_roof": attained / roof, "bound": _bound(peak, bw_eff, intensity),
                    "gpus": {g.name: _gpu_op(g, w, cores) for g in gpus}}


def _overlap(memory_s: float, compute_s: float, total_s: float) -> float | None:
    """Fraction of the shorter of memory and compute time hidden under the longer."""
    shorter = min(memory_s, compute_s)
    if shorter <= 0:
        return None
    return min(1.0, max(0.0, (memory_s + compute_s - total_s) / shorter))


def _phase_summary(stats: Stats, hw: HwConfig, phase: str) -> dict:
    ph = stats.phases[phase]
    bw_peak, bw_eff = hbm_bandwidth(hw, stats.placement)
    time_s = stats.seconds(ph.cycles)
    nbytes = ph.work["hbm_bytes"] * hw.slrs
    ops = 2.0 * ph.work["macs"] * hw.slrs
    busy = {QUEUES[q]: stats.seconds(b) for q, b in enumerate(ph.busy)}
    memory_s = busy["LD"] + busy["ST"]
    compute_s = busy["MM"] + busy["MV"] + busy["MISC"]
    attained_bw = nbytes / time_s if time_s else 0.0
    return {
        "tokens": ph.tokens, "steps": ph.steps, "cycles": ph.cycles, "time_s": time_s,
        "time_per_token_s": time_s / ph.tokens if ph.tokens else 0.0,
        "tokens_per_s": ph.tokens / time_s if time_s else 0.0,
        "ops": ops, "attained_ops_per_s": ops / time_s if time_s else 0.0,
        "compute_peak_ops_per_s": fpga_peak_ops(hw, phase),
        "hbm_bytes": nbytes, "bytes_per_token": nbytes / ph.tokens if ph.tokens else 0.0,
        "bandwidth_attained_bytes_per_s": attained_bw,
        "bandwidth_effective_bytes_per_s": bw_eff, "bandwidth_peak_bytes_per_s": bw_peak,
        "bandwidth_basis": bandwidth_basis(hw, stats.placement),
        "hbm_utilization": attained_bw / bw_peak,
        "fraction_of_effective_bandwidth": attained_bw / bw_eff,
        "memory_floor_s": nbytes / bw_eff,
        "memory_time_s": memory_s, "compute_time_s": compute_s, "sync_time_s": busy["SYS"],
        "queue_busy_s": busy,
        "overlap": _overlap(memory_s, compute_s, time_s),
    }


def gpu_decode(stats: Stats, hw: HwConfig, gpu: GpuPreset) -> dict:
    """A GPU's batch-1 decode speed from the same work at FP16: bytes per token
    (dense weights x 2 + K/V x 2) over bandwidth x utilization, for the
    published utilizations and for the roofline bound (utilization 1)."""
    ph = stats.phases["decode"]
    per_token = sum(FP16_BYTES * dense_weights(o["work"]) for o in ph.ops.values()) * hw.slrs / ph.tokens
    utils = {"roofline": 1.0} | gpu.decode_hbm_utilization
    return {"bytes_per_token": per_token, "utilization": utils,
            "tokens_per_s": {k: u * gpu.memory_bytes_per_s / per_token for k, u in utils.items()}}


def roofline(stats: Stats, hw: HwConfig, gpus: list[GpuPreset]) -> dict:
    """Per phase: a breakdown (`phases`), per-op points (`ops`), per-layer points
    (`layers`; negative layers are the sections outside the decoder layers:
    embedding, LM head), and the GPU presets' roofs and estimates (`gpus`)."""
    bw_peak, bw_eff = hbm_bandwidth(hw, stats.placement)
    out = {"hardware": hw.name, "model": stats.model, "cores": hw.slrs, "clock_hz": hw.clock_hz,
           "fpga": {"bandwidth_peak_bytes_per_s": bw_peak, "bandwidth_effective_bytes_per_s": bw_eff,
                    "bandwidth_basis": bandwidth_basis(hw, stats.placement),
                    "peak_ops_per_s": {p: fpga_peak_ops(hw, p) for p in stats.phases},
                    "ridge_ops_per_byte": {p: fpga_peak_ops(hw, p) / bw_eff for p in stats.phases}},
           "phases": {}, "ops": {}, "layers": {}, "gpus": {}, "published": PUBLISHED_DECODE}
    for phase, ph in stats.phases.items():
        out["phases"][phase] = _phase_summary(stats, hw, phase)
        out["ops"][phase] = {label: _fpga_op(stats, hw, phase, o, gpus) for label, o in ph.ops.items()}
        out["layers"][phase] = {str(layer): _fpga_op(stats, hw, phase, lay, gpus) | {
                                    "share": lay["cycles"] / ph.cycles if ph.cycles else 0.0}
                                for layer, lay in sorted(ph.layers.items())}
    for g in gpus:
        entry = {"peak_fp16_ops_per_s": g.peak_fp16_ops, "memory_bytes_per_s": g.memory_bytes_per_s,
                 "ridge_ops_per_byte": g.peak_fp16_ops / g.memory_bytes_per_s, "tdp_w": g.tdp_w,
                 "price_usd": g.price_usd,
                 "phases": {p: {"time_s_at_roof": sum(o["gpus"][g.name]["time_s"] for o in ops.values() if "gpus" in o)}
                            for p, ops in out["ops"].items()}}
        if "decode" in stats.phases and stats.phases["decode"].tokens:
            entry["decode"] = gpu_decode(stats, hw, g)
        out["gpus"][g.name] = entry
    return out


def explain_decode(data: dict) -> list[str]:
    """How the decode figure arises, one line per step of the argument."""
    d = data["phases"].get("decode")
    if not d or not d["tokens"]:
        return []
    n = d["tokens"]
    bw_eff = _gbps(d["bandwidth_effective_bytes_per_s"])
    return [
        f"HBM bytes per token: {_size(d['bytes_per_token'])} (weights, indices, scales, KV cache)",
        _basis_line(d["bandwidth_basis"], bw_eff),
        f"memory floor per token: {_size(d['bytes_per_token'])} / {bw_eff} = {_ms(d['memory_floor_s'] / n)}",
        f"per token, queues busy: memory {_ms(d['memory_time_s'] / n)}, compute (MM+MV+MISC) "
        f"{_ms(d['compute_time_s'] / n)}, sync {_ms(d['sync_time_s'] / n)}; "
        f"overlap {_pct(d['overlap'])} of the shorter hidden under the longer",
        f"simulated: {_ms(d['time_per_token_s'])} per token = {d['tokens_per_s']:.4g} tokens/s; "
        f"attained {_gbps(d['bandwidth_attained_bytes_per_s'])} = {d['hbm_utilization']:.1%} of peak, "
        f"{d['fraction_of_effective_bandwidth']:.1%} of effective",
        f"FlightLLM on the U280 board: {PUBLISHED_DECODE['decode_tokens_per_s']:g} tokens/s, HBM utilization "
        f"{PUBLISHED_DECODE['hbm_bandwidth_utilization']:.1%} ({PUBLISHED_DECODE['hbm_bandwidth_utilization_unfused']:.1%} "
        f"without always-on-chip decode; compare `--no-fusion`); docs/performance-model.md explains the gap",
    ]


def _basis_line(b: dict, bw_eff: str) -> str:
    return (f"effective HBM bandwidth: {b['weight_pcs']} PCs streaming weights (plan {b['plan']}) x "
            f"{b['pc_sustained_gbps']:.4g} GB/s sustained per PC ({b['pc_peak_gbps']:.4g} GB/s peak, "
            f"{b['refresh_duty']:.1%} lost to refresh) = {bw_eff}")


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.4g} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.4g} MB"


def _gbps(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1e9:.4g} GB/s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _merge_close(points: list[tuple[str, str, float, float]]) -> dict[tuple[str, float, float], list[str]]:
    """One label per cluster of a phase's points that lie within 5 % of each other on both axes."""
    merged: dict[tuple[str, float, float], list[str]] = {}
    for phase, label, x, y in points:
        key = next((k for k in merged if k[0] == phase and abs(math.log(k[1] / x)) < 0.05
                    and abs(math.log(k[2] / y)) < 0.05), (phase, x, y))
        merged.setdefault(key, []).append(label)
    return merged


def roofline_png(data: dict) -> bytes:
    """Log-log roofline: FPGA roofs per phase (effective and raw-peak bandwidth),
    GPU roofs, one labelled point per FPGA op per phase."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(p, label, o["intensity"], o["attained_ops_per_s"]) for p, ops in data["ops"].items()
              for label, o in ops.items() if o["intensity"] and o["attained_ops_per_s"]]
    xs = [x for *_, x, _ in points] + list(data["fpga"]["ridge_ops_per_byte"].values()) + \
         [g["ridge_ops_per_byte"] for g in data["gpus"].values()]
    lo = 10 ** math.floor(math.log10(min(xs + [1.0]) / 2))
    hi = 10 ** math.ceil(math.log10(max(xs + [1.0]) * 2))
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]

    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    fpga = data["fpga"]
    colors = {"prefill": "tab:blue", "decode": "tab:red"}
    for phase, peak in fpga["peak_ops_per_s"].items():
        c = colors.get(phase, "tab:purple")
        ax.plot(grid, [min(peak, fpga["bandwidth_effective_bytes_per_s"] * x) for x in grid], color=c, lw=2,
                label=f"{data['hardware']} {phase} roof ({peak / 1e12:.2f} TOPS, "
                      f"{fpga['bandwidth_effective_bytes_per_s'] / 1e9:.0f} GB/s effective)")
        ax.plot(grid, [min(peak, fpga["bandwidth_peak_bytes_per_s"] * x) for x in grid], color=c, lw=1, ls=":")
    for (name, g), c in zip(data["gpus"].items(), ("tab:green", "tab:orange", "tab:gray", "tab:brown")):
        ax.plot(grid, [min(g["peak_fp16_ops_per_s"], g["memory_bytes_per_s"] * x) for x in grid], color=c, lw=1.2,
                ls="--", label=f"{name} FP16 roof ({g['peak_fp16_ops_per_s'] / 1e12:.0f} TFLOPS, "
                               f"{g['memory_bytes_per_s'] / 1e9:.0f} GB/s)")
    for i, ((phase, x, y), labels) in enumerate(sorted(_merge_close(points).items(), key=lambda kv: kv[0][1])):  # x-neighbours alternate
        ax.scatter([x], [y], color=colors.get(phase, "tab:purple"), marker="o" if phase == "decode" else "s", zorder=3)
        ax.annotate(f"{phase}: {', '.join(labels)}", (x, y), textcoords="offset points",
                    xytext=(6, 6 if i % 2 else -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("arithmetic intensity (ops / HBM byte)")
    ax.set_ylabel("ops / s (1 MAC = 2 ops)")
    ax.set_title(f"Roofline: {data['model']} on {data['hardware']} (dotted: raw HBM peak)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_roofline(data: dict, path: str | Path) -> None:
    """Write the roofline PNG (atomically)."""
    write_atomic(path, roofline_png(data))
