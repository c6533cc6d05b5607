"""`dspflight rtl fit`: synthesize the MV tile's blocks at several chain
lengths and write the resource model's data (`hwmodel/resources.py`).

Per family and chain length L: the block router, the block skew, a routed
chain, the dequantizer and the one-chain tile. The tile's glue is what it
has beyond those blocks and its stage-0 block register (whose flip-flops are the width
of the routed blocks). A two-chain tile at the shortest length checks the
split into per-core and per-chain parts: it is predicted from the blocks and
compared with its own synthesis.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from hwmodel.atomic import write_atomic
from hwmodel.gateware.sparse_chain import BlockRouter
from hwmodel.hwconfig import HwConfig
from hwmodel.resources import FABRIC, FIT_FILE, PER_CHAIN, PER_CORE, fit_lines
from rtl.export import designs
from rtl.synth import SYNTH_RETRIES, SYNTH_SCRIPT, resources, synth_design
from rtl.yosys import yosys_version

FIT_LENGTHS = (4, 8, 16)
BLOCK_DESIGNS = {"block_router": "block_router_{L}", "block_skew": "block_skew_{L}",
                 "chain": "sparse_dsp_chain_{L}_routed", "dequantizer": "dequantizer_{L}", "tile": "mv_tile_{C}x{L}"}
SYNTHESIZED_BLOCKS = ("block_router", "block_skew", "chain", "dequantizer")   # the tile's parts, each on its own


def fabric_of(cells: dict[str, int]) -> dict[str, int]:
    """LUT (logic and SRL), FF and DSP of a cell count."""
    r = resources(cells, macs_per_dsp=2)
    return {"lut": r["lut"] + r["srl"], "ff": r["ff"], "dsp": r["dsp"]}


def block_register_bits(hw: HwConfig, length: int) -> int:
    """Flip-flops of the tile's stage-0 register of routed blocks."""
    return BlockRouter.pairs_layout(length, hw.sparsity_m).size


def synthesized(hw: HwConfig, family: str, length: int, chains: int, wanted: str,
                log: Callable[[str], None]) -> dict[str, int]:
    name = BLOCK_DESIGNS[wanted].format(L=length, C=chains)
    design = next(d for d in designs(hw, family=family, chain_length=length, chains=chains) if d.name == name)
    start = time.monotonic()
    cells, _, built = synth_design(design, family, on_build=lambda: log(f"{family} {name}: synth_xilinx ..."))
    log(f"{family} {name}: {'done' if built else 'from the cache'} in {time.monotonic() - start:.0f} s")
    return fabric_of(cells)


def predict(points: dict, length: int, chains: int) -> dict[str, int]:
    return {res: sum(points[b][str(length)][res] * (1 if b in PER_CORE else chains) for b in PER_CORE + PER_CHAIN)
            for res in FABRIC}


def fit_family(hw: HwConfig, family: str, log: Callable[[str], None]) -> dict:
    """Points, fitted lines and the two-chain check of one family."""
    points: dict[str, dict[str, dict[str, int]]] = {b: {} for b in PER_CORE + PER_CHAIN}
    tiles = {}
    for length in FIT_LENGTHS:
        got = {b: synthesized(hw, family, length, 1, b, log) for b in BLOCK_DESIGNS}
        register = {"lut": 0, "ff": block_register_bits(hw, length), "dsp": 0}
        L = str(length)
        for block in SYNTHESIZED_BLOCKS:
            points[block][L] = got[block]
        points["tile_register"][L] = register
        points["glue"][L] = {res: got["tile"][res] - sum(got[b][res] for b in SYNTHESIZED_BLOCKS) - register[res]
                             for res in FABRIC}
        tiles[L] = got["tile"]
    length = FIT_LENGTHS[0]
    check = {"design": BLOCK_DESIGNS["tile"].format(L=length, C=2),
             "measured": synthesized(hw, family, length, 2, "tile", log),
             "predicted": predict(points, length, 2)}
    return {"points": points, "fit": fit_lines(points), "tiles": tiles, "check": check}


def fit_report(hw: HwConfig, families: tuple[str, ...], *, out: Path = FIT_FILE,
               log: Callable[[str], None] = lambda line: None) -> dict:
    """Synthesize (or take from the cache) every point and write `out`."""
    report = {"about": "written by `dspflight rtl fit`; read by hwmodel/resources.py",
              "hw": hw.name, "yosys": yosys_version(), "synth_script": SYNTH_SCRIPT,
              "synth_flags": list(SYNTH_RETRIES), "lengths": list(FIT_LENGTHS),
              "families": {family: fit_family(hw, family, log) for family in families}}
    write_atomic(out, json.dumps(report, indent=1, sort_keys=True) + "\n")
    return report
