"""Verilog export of the gateware, one file per design, with no source paths
(`emit_src=False`) so the output is the same on every machine."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from hwmodel.errors import ConfigError
from hwmodel.gateware.dequantizer import Dequantizer
from hwmodel.gateware.dsp48 import Dsp48Geometry, Dsp48Slice, geometry_for
from hwmodel.gateware.mv_tile import MatrixVectorTile
from hwmodel.gateware.sparse_chain import SparseDspChain
from hwmodel.hwconfig import HwConfig

DEFAULT_OUT = Path("build/rtl")


@dataclass(frozen=True)
class Design:
    """A gateware top level to export: its module name and a builder."""
    name: str
    component: wiring.Component


def to_verilog(component: wiring.Component, name: str) -> str:
    text = verilog.convert(component, name=name, emit_src=False)
    if "/" in "".join(line for line in text.splitlines() if "src =" in line):
        raise RuntimeError(f"{name}: exported Verilog still names a source path")
    return text


def write_verilog(component: wiring.Component, name: str, out_dir: Path) -> Path:
    """Write `<out_dir>/<name>.v` atomically (temporary name, then rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    tmp = path.with_suffix(".v.tmp")
    tmp.write_text(to_verilog(component, name))
    os.replace(tmp, path)
    return path


def tile_for(hw: HwConfig, *, chains: int = 1, chain_length: int | None = None,
             geometry: Dsp48Geometry) -> MatrixVectorTile:
    """The MV tile of `hw` with `chains` chains (a core has `hw.chains`) and,
    if given, another chain length than the design's."""
    if chains < 1:
        raise ConfigError(f"field chains: expected >= 1, got {chains}")
    length = hw.chain_length if chain_length is None else chain_length
    if length < 2 or length & (length - 1):
        raise ConfigError(f"field chain_length: expected a power of two >= 2, got {length}")
    return MatrixVectorTile.from_hw(replace(hw, chains=chains, chain_length=length), geometry=geometry)


def designs(hw: HwConfig, *, family: str = "xcup", chain_length: int | None = None,
            chains: int = 1) -> list[Design]:
    """The exported top levels of `hw` for one FPGA family."""
    geometry = geometry_for(family)
    tile = tile_for(hw, chains=chains, chain_length=chain_length, geometry=geometry)
    length = tile.chain_length
    return [
        Design("dsp48_slice", Dsp48Slice(geometry=geometry)),
        Design(f"dequantizer_{length}", Dequantizer(lanes=length, weight_bits=tile.weight_bits)),
        Design(f"sparse_dsp_chain_{length}", SparseDspChain(length=length, patterns=tile.patterns,
                                                             block=tile.block, geometry=geometry)),
        Design(f"mv_tile_{chains}x{length}", tile),
    ]


def export(hw: HwConfig, out_dir: Path = DEFAULT_OUT, *, family: str = "xcup",
           chain_length: int | None = None, chains: int = 1) -> list[Path]:
    """Write every design of `hw` as Verilog into `out_dir`."""
    return [write_verilog(d.component, d.name, out_dir)
            for d in designs(hw, family=family, chain_length=chain_length, chains=chains)]
