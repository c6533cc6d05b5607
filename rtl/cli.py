"""`dspflight rtl export|synth`: Verilog of the gateware and its Yosys resources."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hwmodel.atomic import OutputSet
from hwmodel.hwconfig import load_hw
from rtl.cache import ROOT
from hwmodel.resources import FIT_FILE
from rtl.export import DEFAULT_OUT, export
from rtl.fit import fit_report
from rtl.synth import FAMILIES, SYNTH_CACHE, families_of, format_table, synth_report

SYNTH_CHAINS = 16     # a tile of 16 chains shares its block router, register and skew as a core does
SYNTH_DESCRIPTION = (
    f"Synthesize the sparse DSP chain and an MV tile of {SYNTH_CHAINS} chains with Yosys synth_xilinx for each "
    "family and report their cells, with the resource model's estimate of a whole core; progress (design, "
    "family, elapsed) goes to stderr. A cold run of the defaults (u280: L = 16, both families, 6 designs) takes "
    "about 11 min on the 2-core development machine with other work on the other core: 30-60 s per chain, "
    "3.5-6.5 min per MV tile of 16 chains (about 1 min with --chains 1). Each design's result is cached by its "
    "RTLIL, the Yosys version and the flags (in "
    f"{SYNTH_CACHE.relative_to(ROOT)} of the checkout), so a repeat with nothing changed takes about 25 s, "
    "the time to elaborate the designs it hashes.")
FIT_DESCRIPTION = (
    "Synthesize the MV tile's blocks (block router, routed chain, dequantizer, one-chain tile) at chain lengths "
    "4, 8 and 16, and a two-chain tile at 4 as a check, for each family; write the points and a least-squares "
    "line per block and resource to the JSON that hwmodel/resources.py reads. Designs come from the synthesis "
    "cache when unchanged. Cold, one family takes about 5 min on the 2-core development machine, most of it "
    "in the tiles.")


def register(subparsers) -> None:
    """Add the `rtl` subcommand to the top-level CLI's subparsers."""
    rtl = subparsers.add_parser("rtl", help="export the gateware as Verilog, synthesize it with Yosys")
    sub = rtl.add_subparsers(dest="rtl_command", required=True)

    ex = sub.add_parser("export", help="write the gateware as Verilog (one file per design)")
    ex.add_argument("--hw", default="u280", help="hardware design: a built-in name or a YAML path")
    ex.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help="output folder (default build/rtl)")
    ex.add_argument("--family", default="xcup", choices=FAMILIES, help="DSP48 primitive to build for")
    ex.add_argument("--chains", type=int, default=1, help="chains in the exported MV tile (default 1)")
    ex.set_defaults(func=run_export)

    sy = sub.add_parser("synth", help="synth_xilinx the chain and an MV tile; JSON report and table",
                        description=SYNTH_DESCRIPTION)
    sy.add_argument("--hw", default="u280", help="hardware design: a built-in name or a YAML path")
    sy.add_argument("--family", default="both", help="xc7, xcup or both (default)")
    sy.add_argument("--chain-length", type=int, default=None, help="DSPs per chain (default: the design's)")
    sy.add_argument("--chains", type=int, default=None,
                    help=f"chains in the synthesized MV tile, at most a core's (default {SYNTH_CHAINS}, or a "
                         "core's if fewer)")
    sy.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT / "synth", help="output folder")
    sy.set_defaults(func=run_synth)

    fi = sub.add_parser("fit", help="synthesize the tile's blocks at L = 4, 8, 16 and write the resource model's data",
                        description=FIT_DESCRIPTION)
    fi.add_argument("--hw", default="u280", help="hardware design whose patterns and widths the blocks take")
    fi.add_argument("--family", default="both", help="xc7, xcup or both (default)")
    fi.add_argument("-o", "--out", type=Path, default=FIT_FILE, help=f"output JSON (default {FIT_FILE.name} "
                                                                     "in hwmodel, which the model reads)")
    fi.set_defaults(func=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    report = fit_report(load_hw(args.hw, fabric_estimate=False), families_of(args.family), out=args.out,
                        log=lambda line: print(line, file=sys.stderr, flush=True))
    for family, fam in report["families"].items():
        check = fam["check"]
        print(f"{family}: {check['design']} measured {check['measured']}, predicted from blocks {check['predicted']}")
    print(f"fit: {args.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    with OutputSet(args.out) as out:
        export(load_hw(args.hw), out.stage, family=args.family, chains=args.chains)
        names = out.commit()
    for name in names:
        print(args.out / name)
    return 0


def run_synth(args: argparse.Namespace) -> int:
    families = families_of(args.family)
    hw = load_hw(args.hw)
    chains = min(SYNTH_CHAINS, hw.chains) if args.chains is None else args.chains
    with OutputSet(args.out) as out:        # the Verilog and resources.json arrive together, or nothing does
        report = synth_report(hw, families=families, chain_length=args.chain_length, chains=chains,
                              out_dir=out.stage, log=lambda line: print(line, file=sys.stderr, flush=True))
        out.commit()
    print(format_table(report))
    print(f"report: {args.out / 'resources.json'}")
    return 0
