"""The vendors' HBM characterization experiments, run on the memory model.

Each point states the condition of a published figure (FACTS.md, "HBM on
AMD/Xilinx FPGAs"), the figure, what hwmodel.hbm predicts for it, and the
error. Two points per platform set a parameter of the model (`row_miss_ns`,
`latency_ns`: see the hardware YAML); they are marked `calibration`, every
other point is a prediction from the same parameter set.
"""
from __future__ import annotations

from hwmodel.hbm import parse_address_map
from hwmodel.hwconfig import HwConfig

SIZES = (64, 128, 256, 512, 1024)
# U50 tutorial "BW Explorations" (UltraScale+ HBM, the U280's subsystem), GB/s per transaction size
U280_SEQUENTIAL = {1: (13.0996, 13.0704, 13.1032, 13.0747, 13.0432), 2: (13.1244, 13.1142, 13.1285, 13.1089, 13.1097),
                   4: (13.148, 13.1435, 13.1506, 13.1539, 13.1454)}
U280_RANDOM = {1: (4.75379, 9.59893, 12.6164, 13.1338, 13.155), 2: (0.760776, 1.49869, 2.71119, 4.4994, 6.54655),
               4: (0.553107, 1.07469, 1.99473, 3.49935, 5.5307)}
U280_CALIBRATION = {("random read, 1 PC", 64), ("random read, 2 PCs", 64)}
VERSAL_MAPS = {"16R-2B-1BG-7C-1BG-3C": 0.95, "16R-2B-2BG-10C": 0.54}   # PG313 Table 1, single-thread linear read


def _point(experiment: str, point: str, published: float, model: float, role: str = "prediction",
           source: str = "") -> dict:
    return {"experiment": experiment, "point": point, "published": published, "model": round(model, 4),
            "error": round(model / published - 1, 4), "role": role, "source": source}


def u280_points(hw: HwConfig) -> list[dict]:
    h = hw.hbm
    out = []
    src = "AMD Vitis-Tutorials 07-using-hbm, BW Explorations (Alveo U50)"
    for pcs, figures in U280_SEQUENTIAL.items():
        for size, pub in zip(SIZES, figures):
            # one master, one PC at a time: a linear read stays in one 256 MB PC
            out.append(_point(f"sequential read, {pcs} PC{'s' * (pcs > 1)}", f"{size} B", pub,
                              min(h.stream_gbps(), h.port_gbps), source=src))
    for pcs, figures in U280_RANDOM.items():
        name = f"random read, {pcs} PC{'s' * (pcs > 1)}"
        for size, pub in zip(SIZES, figures):
            role = "calibration" if (name, size) in U280_CALIBRATION else "prediction"
            out.append(_point(name, f"{size} B", pub, size / h.ordered_random_ns(size, pcs), role, src))
    total = h.channels * h.pc_link_gbps()
    out.append(_point("all ports on their own PCs", "total", 425.0, total, source="Shuhai (FCCM 2020), U280"))
    out.append(_point("all ports on their own PCs", "total (AMD)", 420.0, total, source="AMD, about 90 % of peak"))
    out.append(_point("lateral switch access", "one port, PC in another segment", 0.5 * h.port_gbps,
                      min(h.stream_gbps(), h.lateral_share * h.port_gbps),
                      source="PG276: traffic leaving a segment gets at most 50 % of a port"))
    out.append(_point("raw throughput", "one PC", 14.4, h.pc_gbps, source="PG276"))
    out.append(_point("raw throughput", "32 PCs", 460.8, h.peak_gbps, source="PG276"))
    return out


def versal_points(hw: HwConfig) -> list[dict]:
    h = hw.hbm
    src = "PG313"
    out = []
    for spec, pub in VERSAL_MAPS.items():
        amap = parse_address_map(spec)
        out.append(_point("linear read efficiency by address map", spec, pub,
                          h.stream_gbps(amap) / h.pc_gbps, source=src + " Table 1"))
    out.append(_point("random 64 B reads", "efficiency", 0.40, 64 / h.random_access_ns(64) / h.pc_gbps,
                      "calibration", src + " Random Addressing"))
    out.append(_point("raw throughput", "one PC", 25.6, h.pc_gbps, source=src))
    out.append(_point("raw throughput", "one stack", 409.6, h.pc_gbps * h.pcs_per_stack, source=src))
    out.append(_point("raw throughput", "two stacks", 819.2, h.peak_gbps, source=src))
    return out


def hbm_bench(hw: HwConfig) -> list[dict]:
    """Every reproducible published point for the design's memory system."""
    return versal_points(hw) if hw.hbm.interconnect == "noc" else u280_points(hw)


def format_bench(points: list[dict]) -> str:
    rows = [f"{'experiment':<40} {'point':<32} {'published':>9} {'model':>9} {'error':>7}  role"]
    for p in points:
        rows.append(f"{p['experiment']:<40} {p['point']:<32} {p['published']:>9.4g} {p['model']:>9.4g} "
                    f"{p['error']:>+7.1%}  {p['role']}")
    worst = max(points, key=lambda p: abs(p["error"]))
    rows.append(f"{len(points)} points, worst {worst['error']:+.1%} ({worst['experiment']}, {worst['point']})")
    return "\n".join(rows)
