"""The small Python API behind the CLI: compile, simulate, report, run, execute.

Each stage works in memory and returns what it made; `dspflight.cli` decides
which files to write (always through hwmodel.atomic.OutputSet, so a failure writes nothing).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable

from compiler.model_config import ModelConfig, load_model
from compiler.pipeline import Buckets, compile_program
from compiler.storage import compile_all_lengths, storage_report
from compiler.weights.profile import Compression, load_compression
from dspflight.execution import Execution, LayerAgreement, execute  # noqa: F401  (the API's numeric run)
from hwmodel.energy_table import load_energy_table
from hwmodel.errors import DspflightError
from hwmodel.gpu import all_gpus
from hwmodel.hwconfig import COMPILER_BLIND, HwConfig, load_hw
from hwmodel.isa import QUEUES
from hwmodel.program import (Program, instruction_bytes, listing, read_program, schedule_for,
                             to_bytes)
from hwmodel.resources import utilization
from sim.cost import cost_report
from sim.energy import energy_report
from sim.headline import format_table
from sim.report_html import write_report
from sim.roofline import roofline
from sim.roofline_plot import plot_roofline
from sim.stats import Stats, simulate, time_sections, untimed
from sim.trace import DEFAULT_DECODE_STEPS, trace_json

DEFAULT_ENERGY = "fpga-16nm"
COMPILE_INFO = "compile.json"
Progress = Callable[[int, int], None]


WORKERS_ENV = "DSPFLIGHT_WORKERS"
PARALLEL_MIN_JOBS = 16     # fewer steps or sections than this run in this process


def workers() -> int:
    """Worker processes for long compiles and simulations: one per available core,
    or $DSPFLIGHT_WORKERS (1: everything in this process, as a sweep's workers want)."""
    raw = os.environ.get(WORKERS_ENV, "")
    if not raw:
        return len(os.sched_getaffinity(0))
    if not raw.isdigit() or int(raw) < 1:
        raise DspflightError(f"environment variable {WORKERS_ENV}: expected a positive integer, got {raw!r}")
    return int(raw)


@contextmanager
def worker_pool(jobs: int):
    """A process pool's map when there is enough work and more than one core, else map."""
    n = workers()
    if n <= 1 or jobs < PARALLEL_MIN_JOBS:
        yield map
        return
    ex = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"), initializer=_worker_signals)
    try:
        yield ex.map
    except BaseException:
        ex.shutdown(cancel_futures=True)        # an error or Ctrl-C: drop the work not yet started
        raise
    ex.shutdown()


def _worker_signals() -> None:
    """Ctrl-C and SIGTERM are the parent's to handle (it cleans up); a worker
    ignores the first and dies of the second without the parent's handler."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class Compiled:
    program: Program
    hw: HwConfig
    dfp: bytes
    compile_s: float

    @property
    def asm(self) -> str:
        """The listing, made when asked for (a sweep never writes it)."""
        return listing(self.program)


def load_configs(model, hw, compression, source: str | None = None) -> tuple[HwConfig, ModelConfig, Compression]:
    """The design, the model and the compression profile (checked against the design);
    each a name, a path, a mapping (errors then name `source`) or a config object."""
    hwc = load_hw(hw, source)
    return hwc, load_model(model, source), load_compression(compression, hwc, source)


def compile_model(model: str, hw: str, compression: str, prefill: int, decode: int,
                  buckets: Buckets = Buckets(), fusion: bool = True, progress: Progress | None = None,
                  dump_after: str | None = None, dump_dir: Path | None = None, plan: str = "spread") -> Compiled:
    hwc, m, comp = load_configs(model, hw, compression)
    t0 = time.perf_counter()
    steps = -(-prefill // buckets.prefill) + -(-(prefill + decode) // buckets.decode)
    with worker_pool(steps) as pool_map:
        prog = compile_program(m, comp, hwc, prefill, decode, buckets, fusion, progress, dump_after, dump_dir,
                               plan=plan, pool_map=pool_map)
    dfp = to_bytes(prog, hwc)
    return Compiled(prog, hwc, dfp, time.perf_counter() - t0)


def load_program(path: str | Path, hw: str | None = None) -> tuple[Program, HwConfig]:
    """Read a .dfp; the hardware defaults to the one named in its header."""
    return read_program(path, load_hw(hw) if hw else None)


def compile_info(program_path: str | Path) -> dict:
    """What `compile` recorded beside a program (compile time); empty if absent.
    It is kept out of the .dfp so that a program file is reproducible byte for byte."""
    path = Path(program_path).with_name(COMPILE_INFO)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class Simulated:
    stats: Stats
    simulate_s: float
    summary: dict
    roofline: dict
    energy: dict
    cost: dict


def simulate_program(prog: Program, hw: HwConfig, program_bytes: int, compile_s: float | None,
                     progress: Progress | None = None, energy_table: str = DEFAULT_ENERGY,
                     keep_trace: bool = False, case: tuple[int, int] | None = None,
                     timings: dict | None = None) -> Simulated:
    """Time the program's own schedule, or that of `case` (prompt, generated tokens),
    then its roofline, energy, cost and summary. Sharing `timings` across calls
    times each section once."""
    t0 = time.perf_counter()
    schedule = schedule_for(prog, *case) if case else prog.schedule
    timings = {} if timings is None else timings
    with worker_pool(len(untimed(prog, schedule, timings))) as pool_map:
        time_sections(prog, hw, schedule, timings, keep_trace, pool_map)
    stats = simulate(prog, hw, progress, keep_trace=keep_trace, schedule=schedule, timings=timings)
    simulate_s = time.perf_counter() - t0
    gpus = all_gpus()
    roof = roofline(stats, hw, gpus)
    energy = energy_report(stats, hw, load_energy_table(energy_table), gpus)
    cost = cost_report(stats, hw, gpus)
    prefill = case[0] if case else prog.meta["prefill"]
    summary = make_summary(prog, hw, stats, prefill, program_bytes, compile_s, simulate_s, roof, energy, cost)
    return Simulated(stats, simulate_s, summary, roof, energy, cost)


FLIGHTLLM_CASES = [(p, d) for p in (128, 512) for d in (512, 1024, 1536)]   # FACTS: batch-1 workloads


@dataclass
class Cases:
    compiled: Compiled
    results: list[tuple[int, int, Simulated]]
    simulate_s: float


def run_cases(model: str, hw: str, compression: str, cases: list[tuple[int, int]] = FLIGHTLLM_CASES,
              buckets: Buckets = Buckets(), energy_table: str = DEFAULT_ENERGY,
              progress: Progress | None = None, fusion: bool = True, plan: str = "spread",
              source: str | None = None) -> Cases:
    """Compile one program covering every case, then time each case's schedule;
    sections shared between cases are timed once."""
    hwc, m, comp = load_configs(model, hw, compression, source)
    compiled = compile_cases(m, comp, hwc, cases, buckets, fusion, progress, plan)
    t1 = time.perf_counter()
    results = time_cases(compiled, hwc, cases, energy_table)
    return Cases(compiled, results, time.perf_counter() - t1)


def compile_cases(m: ModelConfig, comp: Compression, hwc: HwConfig, cases: list[tuple[int, int]],
                  buckets: Buckets = Buckets(), fusion: bool = True, progress: Progress | None = None,
                  plan: str = "spread") -> Compiled:
    """One program whose step library serves every case: prompts from the shortest
    case's to the longest's, contexts up to the longest case's."""
    max_prompt = max(p for p, _ in cases)
    max_context = max(p + d for p, d in cases)
    t0 = time.perf_counter()
    with worker_pool(max_context // buckets.decode) as pool_map:
        prog = compile_program(m, comp, hwc, *cases[0], buckets, fusion, progress=progress,
                               cover=(max_prompt, max_context), plan=plan, pool_map=pool_map,
                               min_prompt=min(p for p, _ in cases))
    dfp = to_bytes(prog, hwc)
    return Compiled(prog, hwc, dfp, time.perf_counter() - t0)


def time_cases(compiled: Compiled, hw: HwConfig, cases: list[tuple[int, int]],
               energy_table: str = DEFAULT_ENERGY) -> list[tuple[int, int, Simulated]]:
    """Each case of a compiled program timed on `hw`: its own design, or one that
    differs from it only in fields the compiler never reads (`HwConfig.program_key`),
    which runs the same program. Sections shared between cases are timed once."""
    if hw.program_key != compiled.hw.program_key:
        raise DspflightError(f"{hw.source}: design {hw.name} does not run the program compiled for "
                             f"{compiled.hw.name} ({compiled.hw.source}): they differ in more than "
                             f"{', '.join(COMPILER_BLIND)}")
    prog = compiled.program
    timings: dict = {}
    every = [entry for p, d in cases for entry in schedule_for(prog, p, d)]
    with worker_pool(len(prog.sections)) as pool_map:
        time_sections(prog, hw, every, timings, pool_map=pool_map)
    return [(p, d, simulate_program(prog, hw, len(compiled.dfp), compiled.compile_s, None, energy_table,
                                    case=(p, d), timings=timings)) for p, d in cases]


def cases_table(cases: Cases) -> str:
    rows = [f"{'prefill':>7} {'decode':>6} {'prefill ms':>11} {'decode ms':>10} {'decode tok/s':>12} "
            f"{'total ms':>10}"]
    for p, d, sim in cases.results:
        s = sim.summary
        rows.append(f"{p:>7} {d:>6} {s['prefill_ms']:>11.1f} {s['total_ms'] - s['prefill_ms']:>10.1f} "
                    f"{s['decode_tokens_per_s']:>12.1f} {s['total_ms']:>10.1f}")
    return "\n".join(rows)


def make_summary(prog: Program, hw: HwConfig, stats: Stats, prefill: int, program_bytes: int,
                 compile_s: float | None, simulate_s: float, roof: dict, energy: dict, cost: dict) -> dict:
    """The stable `summary.json` contract (DESIGN.md) plus the figures behind it."""
    pre = stats.phases.get("prefill")
    dec = stats.phases.get("decode")
    prefill_ms = stats.seconds(pre.cycles) * 1e3 if pre else 0.0
    decode_ms = stats.seconds(dec.cycles) * 1e3 if dec else 0.0
    decode_tokens = dec.tokens if dec else 0
    per_token = decode_ms / decode_tokens if decode_tokens else 0.0
    dec_bytes = dec.work["hbm_bytes"] * hw.slrs if dec else 0
    util = dec_bytes / (decode_ms / 1e3) / (hw.hbm.peak_gbps * 1e9) if decode_ms else 0.0
    return {
        "model": prog.model,
        "hardware": hw.name,
        "compression": prog.meta.get("compression"),
        "fusion": prog.meta.get("fusion"),
        "plan": prog.meta.get("plan"),
        "buckets": {"prefill": prog.meta.get("prefill_bucket"), "decode": prog.meta.get("decode_bucket")},
        "dspflight_version": version("dspflight"),
        "prefill_tokens": prefill,
        "decode_tokens": decode_tokens,
        "prefill_ms": prefill_ms,
        "decode_ms_per_token": per_token,
        "decode_tokens_per_s": 1e3 / per_token if per_token else 0.0,
        "total_ms": prefill_ms + decode_ms,
        "hbm_bandwidth_utilization": util,
        "instructions": prog.instruction_count,
        "instruction_bytes": instruction_bytes(prog),
        "program_bytes": program_bytes,
        "power_w": energy["power_w"],
        "tokens_per_joule": energy["tokens_per_joule"],
        "tokens_per_s_per_dollar": cost["fpga"]["tokens_per_s_per_dollar"],
        "compile_s": compile_s,
        "simulate_s": simulate_s,
        "decode_breakdown": roof.get("phases", {}).get("decode", {}),
        "sections_timed": stats.sections_timed,
        "section_calls": stats.section_calls,
        "utilization": utilization(hw),
    }


def stats_json(stats: Stats, hw: HwConfig) -> dict:
    """Everything the engine measured, device-wide where it is work."""
    def phase(ph) -> dict:
        return {
            "cycles": ph.cycles, "ms": stats.seconds(ph.cycles) * 1e3, "steps": ph.steps, "tokens": ph.tokens,
            "queue_busy": {q: b / ph.cycles if ph.cycles else 0 for q, b in zip(QUEUES, ph.busy)},
            "work_device": {k: v * hw.slrs for k, v in ph.work.items()},
            "ops": {k: {"cycles": o["cycles"], "ms": stats.seconds(o["cycles"]) * 1e3,
                        "queue_busy_cycles": dict(zip(QUEUES, o["busy"])),
                        "work_device": {w: v * hw.slrs for w, v in o["work"].items()}} for k, o in ph.ops.items()},
            "layers_ms": {str(k): stats.seconds(lay["cycles"]) * 1e3 for k, lay in sorted(ph.layers.items())},
        }
    return {"hardware": stats.hw, "model": stats.model, "cores": stats.cores, "clock_hz": stats.clock_hz,
            "sections_timed": stats.sections_timed, "section_calls": stats.section_calls,
            "phases": {k: phase(v) for k, v in stats.phases.items()}, "steps": stats.steps}


def instruction_storage(model: str, hw: str, compression: str, max_prompt: int, max_context: int,
                        buckets: Buckets = Buckets(), progress: Progress | None = None) -> dict:
    """Compile one program for every length and report its instruction storage."""
    if not 1 <= max_prompt <= max_context:
        raise DspflightError(f"instruction storage: expected 1 <= max_prompt <= max_context (a context holds its "
                             f"prompt), got max_prompt={max_prompt}, max_context={max_context}")
    hwc, m, comp = load_configs(model, hw, compression)
    prog = compile_all_lengths(m, comp, hwc, max_prompt, max_context, buckets, progress)
    return storage_report(prog, hwc, max_prompt, max_context)


def render_reports(sim: Simulated, hw: HwConfig,
                   trace_decode_steps: int | None = DEFAULT_DECODE_STEPS) -> dict[str, bytes]:
    """roofline.json/png, energy.json, trace.json (prefill and `trace_decode_steps`
    decode steps; None: the whole run) and report.html, as file contents."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plot_roofline(sim.roofline, tmp / "roofline.png")
        write_report(sim.summary, sim.roofline, sim.energy, sim.cost, tmp / "report.html", sim.stats)
        files = {name: (tmp / name).read_bytes() for name in ("roofline.png", "report.html")}
    files["trace.json"] = trace_json(sim.stats, trace_decode_steps)
    files["roofline.json"] = (json.dumps(sim.roofline, indent=2) + "\n").encode()
    files["energy.json"] = (json.dumps({"energy": sim.energy, "cost": sim.cost}, indent=2) + "\n").encode()
    return files


def headline(sim: Simulated) -> str:
    return format_table(sim.summary, sim.roofline, sim.energy, sim.cost)
