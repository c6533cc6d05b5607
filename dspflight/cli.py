"""`dspflight`: compile, simulate, report, run, disasm (and the RTL tools).

Bad input of any kind prints one line naming the file and field and exits 2;
`--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from compiler.passes.place_hbm import PLANS
from compiler.pipeline import PIPELINE, Buckets
from compiler.storage import format_storage
from dspflight import api
from dspflight.output import OutputSet
from dspflight.progress import progress_bar
from hwmodel.errors import DspflightError
from hwmodel.hwconfig import load_hw
from hwmodel.program import listing
from sim.hbm_bench import format_bench, hbm_bench
from sim.roofline import explain_decode
from sim.trace import DEFAULT_DECODE_STEPS, parse_window
from dspflight.execute_cli import register as register_execute
from rtl.cli import register as register_rtl


def _compile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="llama2-7b", help="built-in model, model YAML or HF config.json")
    p.add_argument("--hw", default="u280", help="hardware design: u280, vhk158 or a YAML path")
    p.add_argument("--compression", default="flightllm", help="compression profile: flightllm, dense-int8 or a path")
    p.add_argument("--prefill", type=int, default=128, help="prompt tokens")
    p.add_argument("--decode", type=int, default=512, help="generated tokens")
    p.add_argument("--prefill-bucket", type=int, default=128, help="prefill lengths share a section per bucket")
    p.add_argument("--decode-bucket", type=int, default=16, help="decode contexts share a section per bucket")
    p.add_argument("--no-fusion", action="store_true", help="disable always-on-chip decode (spill activations)")
    p.add_argument("--plan", default="spread", choices=sorted(PLANS),
                   help="HBM data placement (compiler/passes/place_hbm.py; default: spread)")
    p.add_argument("--dump-after", choices=[n for n, _ in PIPELINE], help="dump the graph after this pass")


def _trace_window(text: str) -> int | None:
    try:
        return parse_window(text)
    except DspflightError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _trace_window_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace-window", type=_trace_window, default=DEFAULT_DECODE_STEPS, metavar="N|all",
                   help="trace.json covers the prefill and the first N decode steps, or the whole run "
                        f"(large: every instruction of every token); default: {DEFAULT_DECODE_STEPS}")


def _do_compile(args) -> api.Compiled:
    if args.prefill_bucket < 1 or args.decode_bucket < 1:
        raise DspflightError("--prefill-bucket and --decode-bucket must be >= 1")
    return api.compile_model(args.model, args.hw, args.compression, args.prefill, args.decode,
                             Buckets(args.prefill_bucket, args.decode_bucket), not args.no_fusion,
                             progress_bar("compile"), args.dump_after, Path(args.out), args.plan)


def cmd_compile(args) -> int:
    c = _do_compile(args)
    out = OutputSet(args.out)
    out.add_bytes("program.dfp", c.dfp)
    out.add_text("program.asm", c.asm)
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
    prog, hw = api.load_program(args.program, args.hw)
    sim = _simulate(prog, hw, Path(args.program).stat().st_size, api.compile_info(args.program).get("compile_s"),
                    args, keep_trace=False)
    out = OutputSet(args.out)
    _sim_files(out, sim, hw)
    out.commit()
    print(api.headline(sim))
    return 0


def cmd_report(args) -> int:
    path = Path(args.dir) / "program.dfp"
    prog, hw = api.load_program(path, args.hw)
    sim = _simulate(prog, hw, path.stat().st_size, api.compile_info(path).get("compile_s"), args, keep_trace=True)
    out = OutputSet(args.dir)
    _report_files(out, sim, hw, args)
    out.commit()
    print(api.headline(sim))
    print(f"reports in {args.dir}/: roofline.json roofline.png energy.json trace.json report.html")
    return 0


def cmd_cases(args) -> int:
    cases = api.run_cases(args.model, args.hw, args.compression,
                          buckets=Buckets(args.prefill_bucket, args.decode_bucket), energy_table=args.energy,
                          progress=progress_bar("compile"), fusion=not args.no_fusion, plan=args.plan)
    out = OutputSet(args.out)
    out.add_bytes("program.dfp", cases.compiled.dfp)
    out.add_text("program.asm", cases.compiled.asm)
    table = []
    for p, d, sim in cases.results:
        out.add_json(f"case-p{p}-d{d}/summary.json", sim.summary)
        table.append(sim.summary)
    out.add_json("cases.json", table)
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


def cmd_hbm_bench(args) -> int:
    points = hbm_bench(load_hw(args.hw))
    if args.out:
        out = OutputSet(args.out)
        out.add_json("hbm-bench.json", points)
        out.commit()
    print(format_bench(points))
    return 0


def cmd_sweep(args) -> int:
    from dspflight import sweep as dse
    spec = dse.load_sweep(args.spec)
    if args.workers is not None and args.workers < 1:
        raise DspflightError(f"--workers must be >= 1, got {args.workers}")
    table = dse.run_sweep(spec, args.out, args.scheduler, args.workers, progress_bar("sweep"))
    errors = int((table["error"] != "").sum()) if "error" in table else 0
    print(f"{len(table)} rows ({errors} with an error) in {args.out}/: results.parquet results.csv "
          f"pareto.csv pareto.png pareto.html")
    print("\n".join(dse.best_lines(table, spec)))
    return 0


def cmd_run(args) -> int:
    if args.cases:
        return cmd_cases(args)
    c = _do_compile(args)
    sim = _simulate(c.program, c.hw, len(c.dfp), c.compile_s, args, keep_trace=True)
    out = OutputSet(args.out)
    out.add_bytes("program.dfp", c.dfp)
    out.add_text("program.asm", c.asm)
    _sim_files(out, sim, c.hw)
    _report_files(out, sim, c.hw, args)
    out.commit()
    print(api.headline(sim))
    print(f"outputs in {args.out}/: {' '.join(sorted(out.files))}")
    return 0


def cmd_storage(args) -> int:
    report = api.instruction_storage(args.model, args.hw, args.compression, args.max_prompt, args.max_context,
                                     Buckets(args.prefill_bucket, args.decode_bucket), progress_bar("compile"))
    out = OutputSet(args.out)
    out.add_json("storage.json", report)
    out.commit()
    print(format_storage(report))
    return 0


def cmd_disasm(args) -> int:
    prog, _ = api.load_program(args.program, args.hw)
    sys.stdout.write(listing(prog))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dspflight", description=__doc__.splitlines()[0])
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile a model to program.dfp + program.asm")
    _compile_args(p)
    p.add_argument("-o", "--out", default="out")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("simulate", help="cycle-simulate a program; writes stats.json and summary.json")
    p.add_argument("program")
    p.add_argument("--hw", help="hardware design (default: the one the program names)")
    p.add_argument("--energy", default=api.DEFAULT_ENERGY, help="energy-per-action table")
    p.add_argument("-o", "--out", default="out")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("report", help="roofline, energy, trace and HTML report for a compiled directory")
    p.add_argument("dir", nargs="?", default="out")
    p.add_argument("--hw")
    p.add_argument("--energy", default=api.DEFAULT_ENERGY)
    _trace_window_arg(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("run", help="compile + simulate + report (default: LLaMA2-7B on the U280 design)")
    _compile_args(p)
    p.add_argument("--cases", action="store_true",
                   help="FlightLLM's six workloads (prefill 128/512 x decode 512/1024/1536) from one program")
    p.add_argument("--energy", default=api.DEFAULT_ENERGY)
    _trace_window_arg(p)
    p.add_argument("-o", "--out", default="out")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("storage", help="instruction storage for all lengths: separate, bucketed, shared")
    p.add_argument("--model", default="llama2-7b")
    p.add_argument("--hw", default="u280")
    p.add_argument("--compression", default="flightllm")
    p.add_argument("--max-prompt", type=int, default=2048)
    p.add_argument("--max-context", type=int, default=2048)
    p.add_argument("--prefill-bucket", type=int, default=128)
    p.add_argument("--decode-bucket", type=int, default=16)
    p.add_argument("-o", "--out", default="out")
    p.set_defaults(func=cmd_storage)

    p = sub.add_parser("hbm-bench", help="the vendors' HBM experiments on the memory model: published vs model")
    p.add_argument("--hw", default="u280", help="hardware design: u280, vhk158 or a YAML path (default: u280)")
    p.add_argument("-o", "--out", help="also write hbm-bench.json into this directory")
    p.set_defaults(func=cmd_hbm_bench)

    p = sub.add_parser("sweep", help="design-space exploration on Dask: one row per point and workload, "
                                     "Pareto fronts")
    p.add_argument("spec", help="sweep spec YAML (see configs/sweeps/u280-mpe.yaml)")
    p.add_argument("-o", "--out", default="sweep", help="output directory (re-running skips finished points; "
                                                         "default: sweep)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler (default: a LocalCluster)")
    p.add_argument("--workers", type=int, help="LocalCluster worker processes (default: one per core)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("disasm", help="print the .asm listing of a .dfp program")
    p.add_argument("program")
    p.add_argument("--hw")
    p.set_defaults(func=cmd_disasm)

    register_rtl(sub)
    register_execute(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DspflightError as exc:
        if args.debug:
            raise
        print(f"dspflight: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if args.debug:
            raise
        print(f"dspflight: error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
