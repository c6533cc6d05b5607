"""`dspflight`: compile, simulate, report, run, disasm, list (and the RTL tools).

Bad input of any kind prints one line naming the file and field and exits 2;
`--debug` (anywhere on the line) shows the traceback instead. Every command
writes its directory all or nothing (hwmodel.atomic.OutputSet); Ctrl-C prints
one line and exits 130, SIGTERM 143, and neither leaves a temporary file.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from compiler.passes.place_hbm import PLANS
from compiler.pipeline import PIPELINE, Buckets
from compiler.storage import format_storage
from dspflight import __version__, api
from dspflight.catalog import listing as catalog_listing
from dspflight.cliargs import Parser, design, energy_table, non_negative, positive
from dspflight.execute_cli import register as register_execute
from dspflight.perplexity_cli import register as register_perplexity
from dspflight.progress import progress_bar
from hwmodel.atomic import OutputSet
from hwmodel.errors import DspflightError
from hwmodel.hwconfig import load_hw
from hwmodel.program import listing
from rtl.cli import register as register_rtl
from sim.hbm_bench import format_bench, hbm_bench
from sim.roofline import explain_decode
from sim.trace import DEFAULT_DECODE_STEPS, parse_window

PREFILL, DECODE = 128, 512          # one workload's default lengths (run --cases has its own six)
HW_HELP = "hardware design: u280, vhk158 or a YAML path (see dspflight list)"


def _compile_args(p: argparse.ArgumentParser, cases: bool = False) -> None:
    """The model, design and compilation options; `cases`: lengths are refused with --cases."""
    p.add_argument("--model", default="llama2-7b", help="built-in model, model YAML or HF config.json")
    p.add_argument("--hw", type=design, default="u280", help=HW_HELP)
    p.add_argument("--compression", default="flightllm", help="compression profile: flightllm, dense-int8 or a path")
    not_cases = "; not with --cases" if cases else ""
    p.add_argument("--prefill", type=positive, default=None if cases else PREFILL,
                   help=f"prompt tokens (default: {PREFILL}{not_cases})")
    p.add_argument("--decode", type=non_negative, default=None if cases else DECODE,
                   help=f"generated tokens (default: {DECODE}{not_cases})")
    p.add_argument("--prefill-bucket", type=positive, default=128, help="prefill lengths share a section per bucket")
    p.add_argument("--decode-bucket", type=positive, default=16, help="decode contexts share a section per bucket")
    p.add_argument("--no-fusion", action="store_true",
                   help="disable always-on-chip decode: spill activations (default: fused)")
    p.add_argument("--plan", default="spread", choices=sorted(PLANS),
                   help="HBM data placement (compiler/passes/place_hbm.py)")
    p.add_argument("--dump-after", choices=[n for n, _, _ in PIPELINE],
                   help=f"write the graph after this pass into the output directory (default: none{not_cases})")


def _trace_window(text: str) -> int | None:
    try:
        return parse_window(text)
    except DspflightError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _trace_window_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace-window", type=_trace_window, default=DEFAULT_DECODE_STEPS, metavar="N|all",
                   help="trace.json covers the prefill and the first N decode steps, or the whole run "
                        f"(large: every instruction of every token); default: {DEFAULT_DECODE_STEPS}")


def _out_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-o", "--out", default="out", help=f"output directory for {what}; written only if all succeeds")


def _energy_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--energy", type=energy_table, default=api.DEFAULT_ENERGY,
                   help="energy-per-action table (name or YAML path)")


def _do_compile(args, out: OutputSet) -> api.Compiled:
    return api.compile_model(args.model, args.hw, args.compression, args.prefill, args.decode,
                             Buckets(args.prefill_bucket, args.decode_bucket), not args.no_fusion,
                             progress_bar("compile"), args.dump_after, out.stage, args.plan)


def _program_files(out: OutputSet, c: api.Compiled) -> None:
    out.add_bytes("program.dfp", c.dfp)
    out.add_text("program.asm", c.asm)


def cmd_compile(args) -> int:
    with OutputSet(args.out) as out:
        c = _do_compile(args, out)
        _program_files(out, c)
        out.add_json(api.COMPILE_INFO, {"compile_s": c.compile_s})
        out.commit()
    print(f"compiled {c.program.model} for {c.hw.name}: {c.program.instruction_count} instructions in "
          f"{len(c.program.sections)} sections, {len(c.dfp)} bytes, {c.compile_s:.2f} s -> {args.out}/program.dfp")
    return 0


def _simulate(prog, hw, program_bytes: int, compile_s: float | None, args, keep_trace: bool) -> api.Simulated:
    return api.simulate_program(prog, hw, program_bytes, compile_s, progress_bar("simulate"), args.energy,
                                keep_trace)


def _sim_files(out: OutputSet, sim: api.Simulated, hw) -> None:
    out.add_json("stats.json", api.stats_json(sim.stats, hw))
    out.add_json("summary.json", sim.summary)


def _report_files(out: OutputSet, sim: api.Simulated, hw, args) -> None:
    for name, data in api.render_reports(sim, hw, args.trace_window).items():
        out.add_bytes(name, data)


def cmd_simulate(args) -> int:
    with OutputSet(args.out) as out:
        prog, hw = api.load_program(args.program, args.hw)
        sim = _simulate(prog, hw, Path(args.program).stat().st_size,
                        api.compile_info(args.program).get("compile_s"), args, keep_trace=False)
        _sim_files(out, sim, hw)
        out.commit()
    print(api.headline(sim))
    return 0


def cmd_report(args) -> int:
    path = Path(args.dir) / "program.dfp"
    with OutputSet(args.dir) as out:
        prog, hw = api.load_program(path, args.hw)
        sim = _simulate(prog, hw, path.stat().st_size, api.compile_info(path).get("compile_s"), args,
                        keep_trace=True)
        _report_files(out, sim, hw, args)
        out.commit()
    print(api.headline(sim))
    print(f"reports in {args.dir}/: roofline.json roofline.png energy.json trace.json report.html")
    return 0


def cmd_cases(args) -> int:
    given = [flag for flag, value in (("--prefill", args.prefill), ("--decode", args.decode),
                                      ("--dump-after", args.dump_after)) if value is not None]
    if given:
        raise DspflightError(f"run --cases: {', '.join(given)} cannot be honoured: the six cases have their "
                             f"own lengths ({', '.join(f'{p}+{d}' for p, d in api.FLIGHTLLM_CASES)})")
    with OutputSet(args.out) as out:
        cases = api.run_cases(args.model, args.hw, args.compression,
                              buckets=Buckets(args.prefill_bucket, args.decode_bucket), energy_table=args.energy,
                              progress=progress_bar("compile"), fusion=not args.no_fusion, plan=args.plan)
        _program_files(out, cases.compiled)
        for p, d, sim in cases.results:
            out.add_json(f"case-p{p}-d{d}/summary.json", sim.summary)
        out.add_json("cases.json", [sim.summary for _, _, sim in cases.results])
        out.commit()
    print(f"{cases.compiled.program.model} on {cases.compiled.hw.name}: one program for all six cases "
          f"({cases.compiled.program.instruction_count} instructions, {len(cases.compiled.dfp)} bytes)")
    print(api.cases_table(cases))
    p, d, first = cases.results[0]
    print(f"How the decode figure arises (prefill {p}, decode {d}):")
    print("\n".join(f"  {line}" for line in explain_decode(first.roofline)))
    print(f"compile {cases.compiled.compile_s:.2f} s, simulate {cases.simulate_s:.2f} s; summaries in "
          f"{args.out}/case-*/summary.json")
    return 0


def cmd_run(args) -> int:
    if args.cases:
        return cmd_cases(args)
    args.prefill = PREFILL if args.prefill is None else args.prefill
    args.decode = DECODE if args.decode is None else args.decode
    with OutputSet(args.out) as out:
        c = _do_compile(args, out)
        sim = _simulate(c.program, c.hw, len(c.dfp), c.compile_s, args, keep_trace=True)
        _program_files(out, c)
        _sim_files(out, sim, c.hw)
        _report_files(out, sim, c.hw, args)
        names = out.commit()
    print(api.headline(sim))
    print(f"outputs in {args.out}/: {' '.join(names)}")
    return 0


def cmd_hbm_bench(args) -> int:
    points = hbm_bench(load_hw(args.hw))
    if args.out:
        with OutputSet(args.out) as out:
            out.add_json("hbm-bench.json", points)
            out.commit()
    print(format_bench(points))
    return 0


def cmd_sweep(args) -> int:
    from dspflight import sweep as dse
    spec = dse.load_sweep(args.spec)
    table = dse.run_sweep(spec, args.out, args.scheduler, args.workers, progress_bar("sweep"))
    errors = int((table["error"] != "").sum()) if "error" in table else 0
    print(f"{len(table)} rows ({errors} with an error) in {args.out}/: results.parquet results.csv "
          f"pareto.csv pareto.png pareto.html")
    print("\n".join(dse.best_lines(table, spec)))
    return 0


def cmd_storage(args) -> int:
    with OutputSet(args.out) as out:
        report = api.instruction_storage(args.model, args.hw, args.compression, args.max_prompt, args.max_context,
                                         Buckets(args.prefill_bucket, args.decode_bucket), progress_bar("compile"))
        out.add_json("storage.json", report)
        out.commit()
    print(format_storage(report))
    return 0


def cmd_disasm(args) -> int:
    prog, _ = api.load_program(args.program, args.hw)
    sys.stdout.write(listing(prog))
    return 0


def cmd_list(args) -> int:
    print(catalog_listing())
    return 0


def register_compile(sub) -> None:
    p = sub.add_parser("compile", help="compile a model to program.dfp + program.asm")
    _compile_args(p)
    _out_arg(p, "program.dfp, program.asm and compile.json")
    p.set_defaults(func=cmd_compile)


def register_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="cycle-simulate a program; writes stats.json and summary.json")
    p.add_argument("program", help="the .dfp file")
    p.add_argument("--hw", type=design, help="hardware design (default: the one the program names)")
    _energy_arg(p)
    _out_arg(p, "stats.json and summary.json")
    p.set_defaults(func=cmd_simulate)


def register_report(sub) -> None:
    p = sub.add_parser("report", help="roofline, energy, trace and HTML report for a compiled directory")
    p.add_argument("dir", nargs="?", default="out", help="directory holding program.dfp; the reports go there too")
    p.add_argument("--hw", type=design, help="hardware design (default: the one the program names)")
    _energy_arg(p)
    _trace_window_arg(p)
    p.set_defaults(func=cmd_report)


def register_run(sub) -> None:
    p = sub.add_parser("run", help="compile + simulate + report (default: LLaMA2-7B on the U280 design)")
    _compile_args(p, cases=True)
    p.add_argument("--cases", action="store_true",
                   help="FlightLLM's six workloads (prefill 128/512 x decode 512/1024/1536) from one program")
    _energy_arg(p)
    _trace_window_arg(p)
    _out_arg(p, "the program, statistics and reports")
    p.set_defaults(func=cmd_run)


def register_storage(sub) -> None:
    p = sub.add_parser("storage", help="instruction storage for all lengths: separate, bucketed, shared")
    p.add_argument("--model", default="llama2-7b", help="built-in model, model YAML or HF config.json")
    p.add_argument("--hw", type=design, default="u280", help=HW_HELP)
    p.add_argument("--compression", default="flightllm", help="compression profile: flightllm, dense-int8 or a path")
    p.add_argument("--max-prompt", type=positive, default=2048, help="longest prompt the program serves")
    p.add_argument("--max-context", type=positive, default=2048,
                   help="longest context (prompt + generated) the program serves; at least --max-prompt")
    p.add_argument("--prefill-bucket", type=positive, default=128, help="prefill lengths share a section per bucket")
    p.add_argument("--decode-bucket", type=positive, default=16, help="decode contexts share a section per bucket")
    _out_arg(p, "storage.json")
    p.set_defaults(func=cmd_storage)


def register_hbm_bench(sub) -> None:
    p = sub.add_parser("hbm-bench", help="the vendors' HBM experiments on the memory model: published vs model")
    p.add_argument("--hw", type=design, default="u280", help=HW_HELP)
    p.add_argument("-o", "--out", help="also write hbm-bench.json into this directory (default: print only)")
    p.set_defaults(func=cmd_hbm_bench)


def register_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="design-space exploration on Dask: one row per point and workload, "
                                     "Pareto fronts")
    p.add_argument("spec", help="sweep spec YAML (see configs/sweeps/u280-mpe.yaml)")
    p.add_argument("-o", "--out", default="sweep", help="output directory (re-running skips finished points)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler (default: a LocalCluster)")
    p.add_argument("--workers", type=positive, help="LocalCluster worker processes (default: one per core)")
    p.set_defaults(func=cmd_sweep)


def register_disasm(sub) -> None:
    p = sub.add_parser("disasm", help="print the .asm listing of a .dfp program")
    p.add_argument("program", help="the .dfp file")
    p.add_argument("--hw", type=design, help="hardware design (default: the one the program names)")
    p.set_defaults(func=cmd_disasm)


def register_list(sub) -> None:
    p = sub.add_parser("list", help="the built-in models, designs, compression profiles, GPU presets and "
                                    "energy tables, one line each")
    p.set_defaults(func=cmd_list)


COMMANDS = (register_compile, register_simulate, register_report, register_run, register_storage,
            register_hbm_bench, register_sweep, register_disasm, register_list, register_rtl, register_execute,
            register_perplexity)


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="dspflight", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"dspflight {__version__}",
                    help="print the version and exit")
    sub = ap.add_subparsers(dest="command", required=True, metavar="command")
    for register in COMMANDS:
        register(sub)
    return ap


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every `with` block cleans up."""


def _terminate(signum: int, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except (KeyboardInterrupt, Terminated) as exc:
        if debug:
            raise
        term = isinstance(exc, Terminated)
        print(f"dspflight: {'terminated' if term else 'interrupted'} (no partial output)", file=sys.stderr)
        return 128 + (signal.SIGTERM if term else signal.SIGINT)
    except DspflightError as exc:
        if debug:
            raise
        print(f"dspflight: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if debug:
            raise
        print(f"dspflight: error: {f'{exc.filename}: ' if exc.filename else ''}{exc.strerror}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
