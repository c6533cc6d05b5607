"""Whole-program timing: run the schedule, time each distinct section once.

Every call of a section starts with all queues idle (sections end with a
barrier), and all cores run the same section in lockstep, so a step's time
is the sum of its calls' section times, whatever ran before it, and a step
that stands for `repeat` real steps counts `repeat` times. Work (MACs, bytes) is per core and is
multiplied by the core count for device totals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from hwmodel.errors import SimulationError
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import BASE_REGIONS, BASE_REGISTERS, QUEUES
from hwmodel.placement import Placement
from hwmodel.program import Call, Program
from sim.engine import WORK_FIELDS, SectionTiming, time_section


@dataclass
class PhaseStats:
    cycles: int = 0
    steps: int = 0
    tokens: int = 0
    busy: list[int] = field(default_factory=lambda: [0] * len(QUEUES))
    work: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WORK_FIELDS, 0))
    ops: dict[str, dict] = field(default_factory=dict)      # op label -> {cycles, busy, work}
    layers: dict[int, dict] = field(default_factory=dict)   # layer -> {cycles, busy, work} like ops


@dataclass
class Stats:
    hw: str
    model: str
    cores: int
    clock_hz: float
    phases: dict[str, PhaseStats]
    steps: list[dict]
    sections_timed: int
    section_calls: int
    timings: dict[int, SectionTiming]
    placement: Placement
    step_sections: list[tuple[int, ...]] = field(default_factory=list)   # per entry of `steps`: its calls, in order

    def seconds(self, cycles: float) -> float:
        return cycles / self.clock_hz


def simulate(prog: Program, hw: HwConfig, progress: Callable[[int, int], None] | None = None,
             keep_trace: bool = False, schedule: list[tuple[int, int]] | None = None,
             timings: dict[int, SectionTiming] | None = None) -> Stats:
    """Time `schedule` (default: the program's own). Pass the same `timings`
    dict to several calls on one program to time each section only once."""
    schedule = prog.schedule if schedule is None else schedule
    timings = {} if timings is None else timings
    placement = program_placement(prog, hw)
    phases: dict[str, PhaseStats] = {}
    steps, calls = [], 0
    step_sections: list[tuple[int, ...]] = []
    for si, (index, repeat) in enumerate(schedule):
        step = prog.steps[index]
        phase = "prefill" if step.phase == "logits" else step.phase    # the prompt's logits end its prefill
        ph = phases.setdefault(phase, PhaseStats())
        cycles = 0
        for call in step.calls:
            t = timings.get(call.section)
            if t is None:
                t = timings[call.section] = _time(prog, hw, call.section, placement, keep_trace)
            calls += 1
            cycles += t.cycles
            _accumulate(ph, t, call.layer, repeat)
        ph.cycles += cycles * repeat
        ph.steps += repeat if step.phase != "logits" else 0
        ph.tokens += {"prefill": step.tokens, "decode": 1}.get(step.phase, 0) * repeat
        steps.append({"phase": step.phase, "tokens": step.tokens, "context": step.context,
                      "repeat": repeat, "cycles": cycles})
        step_sections.append(tuple(c.section for c in step.calls))
        if progress:
            progress(si + 1, len(schedule))
    return Stats(hw.name, prog.model, hw.slrs, hw.clock_hz, phases, steps, len(timings), calls, timings, placement,
                 step_sections)


def time_sections(prog: Program, hw: HwConfig, schedule: list[tuple[int, int]], timings: dict[int, SectionTiming],
                  keep_trace: bool = False, pool_map: Callable = map) -> None:
    """Time the sections `schedule` calls that `timings` lacks, in chunks through
    `pool_map` (the builtin map, or the map of a fork-started process pool whose
    workers start on its first task, so they inherit the program), into `timings`."""
    placement = program_placement(prog, hw)
    needed = untimed(prog, schedule, timings)
    size = max(1, min(64, len(needed) // 8))
    chunks = [needed[i:i + size] for i in range(0, len(needed), size)]
    key = id(prog)
    _SHARED[key] = (prog, hw, placement, keep_trace)     # forked workers see it without pickling
    try:
        for chunk, result in zip(chunks, pool_map(_time_chunk, [(key, c) for c in chunks])):
            timings.update(zip(chunk, result))
    finally:
        del _SHARED[key]


_SHARED: dict[int, tuple] = {}


def untimed(prog: Program, schedule: list[tuple[int, int]], timings: dict[int, SectionTiming]) -> list[int]:
    """The sections `schedule` calls that `timings` does not hold yet."""
    return sorted({c.section for i, _ in schedule for c in prog.steps[i].calls} - set(timings))


def _time_chunk(job: tuple[int, list[int]]) -> list[SectionTiming]:
    prog, hw, placement, keep_trace = _SHARED[job[0]]
    return [_time(prog, hw, k, placement, keep_trace) for k in job[1]]


def _time(prog: Program, hw: HwConfig, k: int, placement: Placement, keep_trace: bool) -> SectionTiming:
    """Time section `k`; an error names the program's file as well as the section."""
    try:
        return time_section(hw, prog.sections[k], placement, keep_trace)
    except SimulationError as exc:
        raise SimulationError(f"{prog.where}: {exc}") from None


def program_placement(prog: Program, hw: HwConfig) -> Placement:
    """The program's data placement, with every call's base registers checked
    against it (a section is timed once for all its calls only if they are aligned)."""
    placement = Placement.from_json(prog.meta.get("placement"), hw, prog.where)
    seen: set[tuple[int, ...]] = set()
    for step in prog.steps:
        for call in step.calls:
            if tuple(call.base) not in seen:
                _check_bases(prog, hw, placement, call)
                seen.add(tuple(call.base))
    return placement


def _check_bases(prog: Program, hw: HwConfig, placement: Placement, call: Call) -> None:
    row = hw.hbm.address_map.row_bytes // hw.hbm.burst_bytes
    for core in range(hw.slrs):
        for reg, region in enumerate(BASE_REGIONS):
            base = call.base[BASE_REGISTERS * core + reg]
            space = placement.space_of(core, *placement.group(region))
            if space is None or not space.start <= base <= space.start + space.bursts \
                    or (base - space.start) % (len(space.pcs) * row):
                raise SimulationError(f"{prog.where}: section {call.section} (layer {call.layer}), core "
                                      f"{core}: base register {reg} = {base} is not a row-aligned address of its "
                                      f"{region} space")


def _accumulate(ph: PhaseStats, t: SectionTiming, layer: int, repeat: int) -> None:
    for q, b in enumerate(t.busy):
        ph.busy[q] += b * repeat
    for k, v in t.work.items():
        ph.work[k] += v * repeat
    _add(ph.layers, layer, t.cycles, t.busy, t.work, repeat)
    for label, o in t.ops.items():
        _add(ph.ops, label, o.end - o.start, o.busy, o.work, repeat)


def _add(table: dict, key, cycles: int, busy: list[int], work: dict[str, int], repeat: int) -> None:
    agg = table.setdefault(key, {"cycles": 0, "busy": [0] * len(QUEUES), "work": dict.fromkeys(WORK_FIELDS, 0)})
    agg["cycles"] += cycles * repeat
    for q, b in enumerate(busy):
        agg["busy"][q] += b * repeat
    for k, v in work.items():
        agg["work"][k] += v * repeat
