"""The roofline plot (matplotlib): roofs, one labelled point per op and phase.

Ops of a phase whose points nearly coincide share one label; labels are then
moved apart vertically where their boxes would overlap, with a thin leader
line back to the point, so every label stays readable.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

from hwmodel.atomic import write_atomic

COLOURS = {"prefill": "tab:blue", "decode": "tab:red"}
GPU_COLOURS = ("tab:green", "tab:orange", "tab:gray", "tab:brown")
LABEL_GAP_PX = 2


def _merge_close(points: list[tuple[str, str, float, float]]) -> dict[tuple[str, float, float], list[str]]:
    """One label per cluster of a phase's points that lie within 5 % of each other on both axes."""
    merged: dict[tuple[str, float, float], list[str]] = {}
    for phase, label, x, y in points:
        key = next((k for k in merged if k[0] == phase and abs(math.log(k[1] / x)) < 0.05
                    and abs(math.log(k[2] / y)) < 0.05), (phase, x, y))
        merged.setdefault(key, []).append(label)
    return merged


def _clashes(box, placed: list) -> list:
    """The placed boxes that `box` overlaps (or comes within LABEL_GAP_PX of, vertically)."""
    return [b for b in placed if b.x0 < box.x1 and box.x0 < b.x1
            and b.y0 - LABEL_GAP_PX < box.y1 and box.y0 < b.y1 + LABEL_GAP_PX]


def _separate(fig, texts: list) -> None:
    """Move texts (top to bottom) down until no two boxes overlap."""
    from matplotlib.text import Text
    renderer = fig.canvas.get_renderer()
    extent = lambda t: Text.get_window_extent(t, renderer)     # the text alone, not its leader line
    placed = []
    for t in sorted(texts, key=lambda t: -extent(t).y1):
        box = extent(t)
        clash = _clashes(box, placed)
        while clash:
            shift = box.y1 - (min(b.y0 for b in clash) - LABEL_GAP_PX)
            x, y = t.get_position()
            t.set_position((x, y - shift * 72 / fig.dpi))     # offset points
            box = extent(t)
            clash = _clashes(box, placed)
        placed.append(box)


def roofline_figure(data: dict):
    """Log-log roofline: FPGA roofs per phase (effective and raw-peak bandwidth),
    GPU roofs, one labelled point per FPGA op per phase. Returns (figure, labels)."""
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
    for phase, peak in fpga["peak_ops_per_s"].items():
        c = COLOURS.get(phase, "tab:purple")
        ax.plot(grid, [min(peak, fpga["bandwidth_effective_bytes_per_s"] * x) for x in grid], color=c, lw=2,
                label=f"{data['hardware']} {phase} roof ({peak / 1e12:.2f} TOPS, "
                      f"{fpga['bandwidth_effective_bytes_per_s'] / 1e9:.0f} GB/s effective)")
        ax.plot(grid, [min(peak, fpga["bandwidth_peak_bytes_per_s"] * x) for x in grid], color=c, lw=1, ls=":")
    for (name, g), c in zip(data["gpus"].items(), GPU_COLOURS):
        ax.plot(grid, [min(g["peak_fp16_ops_per_s"], g["memory_bytes_per_s"] * x) for x in grid], color=c, lw=1.2,
                ls="--", label=f"{name} FP16 roof ({g['peak_fp16_ops_per_s'] / 1e12:.0f} TFLOPS, "
                               f"{g['memory_bytes_per_s'] / 1e9:.0f} GB/s)")
    labels = []
    for (phase, x, y), names in _merge_close(points).items():
        ax.scatter([x], [y], color=COLOURS.get(phase, "tab:purple"), marker="o" if phase == "decode" else "s",
                   zorder=5)
        labels.append(ax.annotate(f"{phase}: {', '.join(names)}", (x, y), textcoords="offset points",
                                  xytext=(7, -3), fontsize=7, zorder=4,
                                  bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
                                  arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5", "shrinkA": 0,
                                              "shrinkB": 3}))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("arithmetic intensity (ops / HBM byte)")
    ax.set_ylabel("ops / s (1 MAC = 2 ops)")
    ax.set_title(f"Roofline: {data['model']} on {data['hardware']} (dotted: raw HBM peak)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2, frameon=False)
    fig.tight_layout()
    _separate(fig, labels)
    return fig, labels


def roofline_png(data: dict) -> bytes:
    """The roofline figure as PNG bytes."""
    import matplotlib.pyplot as plt
    fig, _ = roofline_figure(data)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_roofline(data: dict, path: str | Path) -> None:
    """Write the roofline PNG (atomically)."""
    write_atomic(path, roofline_png(data))
