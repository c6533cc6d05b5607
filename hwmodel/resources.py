"""Fabric the design needs, estimated from Yosys runs of its own gateware.

`dspflight rtl fit` synthesizes the blocks of the MV tile (`hwmodel/gateware`)
at several chain lengths L with Yosys `synth_xilinx` and writes their cell
counts to `resource_fit.json` beside this module. Each block's count of each
resource is fitted as a line in L (least squares over the points). One core's
MPE is

    block router + stage-0 block register + block skew          (once per core)
    + chains x (routed chain + dequantizer + per-chain glue)    (per chain)

where the glue (48-bit accumulators and group scaling, stage-0 index register, adders) is what
the one-chain tile has beyond its blocks and the block register. The design
is `slrs` cores plus the SFU DSPs of the hardware config; BRAM36 and URAM
follow from the buffers (`HwConfig.buffers`). Not modelled: the SFU's fabric,
the HBM and DDR controllers, instruction decode and control; FlightLLM's
whole U280 design is printed beside the estimate to show what that leaves out.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hwmodel.published import UTILIZATION as PUBLISHED

if TYPE_CHECKING:
    from hwmodel.hwconfig import HwConfig

FIT_FILE = Path(__file__).with_name("resource_fit.json")
FAMILIES = ("xc7", "xcup")              # Yosys synth_xilinx families the gateware is built for (DSP48E1, DSP48E2)
PER_CORE = ("block_router", "tile_register", "block_skew")
PER_CHAIN = ("chain", "dequantizer", "glue")
FABRIC = ("lut", "ff", "dsp")           # lut counts LUTs as logic and as shift registers (SRL)


@functools.cache
def fit_data(path: Path = FIT_FILE) -> dict:
    """The committed synthesis points and fits (`dspflight rtl fit` writes them)."""
    return json.loads(path.read_text())


def fit_lines(points: dict[str, dict[str, dict[str, int]]]) -> dict[str, dict[str, list[float]]]:
    """Per block and resource, (slope, intercept) in L of the points
    {block: {L: {resource: count}}}, by least squares."""
    lines: dict[str, dict[str, list[float]]] = {}
    for block, by_length in points.items():
        lengths = np.array([int(n) for n in by_length], dtype=float)
        lines[block] = {}
        for res in FABRIC:
            counts = np.array([by_length[n][res] for n in by_length], dtype=float)
            slope, intercept = np.polyfit(lengths, counts, 1) if len(lengths) > 1 else (0.0, counts[0])
            lines[block][res] = [round(float(slope), 4), round(float(intercept), 4)]
    return lines


def block_cost(family: str, block: str, chain_length: int) -> dict[str, float]:
    """One block's resources at chain length L: the measured point if there is
    one, else the fitted line."""
    fam = fit_data()["families"][family]
    measured = fam["points"][block].get(str(chain_length))
    if measured is not None:
        return {res: float(measured[res]) for res in FABRIC}
    return {res: max(0.0, a * chain_length + b) for res, (a, b) in fam["fit"][block].items()}


def mpe_estimate(family: str, *, chains: int, chain_length: int, cores: int) -> dict[str, float]:
    """LUT, FF and DSP of `cores` MPEs of `chains` chains of `chain_length` DSPs."""
    core = {res: 0.0 for res in FABRIC}
    for block in PER_CORE + PER_CHAIN:
        times = 1 if block in PER_CORE else chains
        for res, value in block_cost(family, block, chain_length).items():
            core[res] += times * value
    return {res: cores * value for res, value in core.items()}


def utilization(hw: "HwConfig") -> dict:
    """The design's estimated DSP, LUT, FF, BRAM36 and URAM, next to its device
    (when the hardware config gives it) and FlightLLM's published U280 design."""
    need: dict[str, float] = {"dsp": hw.dsp_total}
    if hw.fabric_family:
        mpe = mpe_estimate(hw.fabric_family, chains=hw.chains, chain_length=hw.chain_length, cores=hw.slrs)
        need |= {"lut": mpe["lut"], "ff": mpe["ff"]}
    for kind in ("bram36", "uram"):
        need[kind] = hw.slrs * sum(b.blocks for b in hw.buffers.values() if b.kind == kind)
    rows = {}
    for kind, value in need.items():
        device = hw.fabric.get(kind)
        rows[kind] = {"estimate": value, "device": device, "fraction": value / device if device else None,
                      "flightllm_u280": PUBLISHED.get(kind)}
    return {"resources": rows, "family": hw.fabric_family,
            "modelled": "DSP: MPE and SFU; LUT and FF: the MPE's gateware only (hwmodel/resources.py); "
                        "BRAM36 and URAM: the buffers", "published_source": PUBLISHED["source"]}
