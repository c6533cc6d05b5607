"""The timeline as Chrome/Perfetto trace JSON (open in ui.perfetto.dev).

One process per timed section, laid end to end; one thread per instruction
queue (LD/ST/MM/MV/MISC/SYS); one complete ("X") event per instruction,
named by its op label. Only a few sections are written — every section of a
phase has the same shape, so the longest of each phase shows how the queues
overlap without a trace of gigabytes.
"""
from __future__ import annotations

import json
from pathlib import Path

from hwmodel.atomic import write_atomic
from hwmodel.errors import SimulationError
from hwmodel.isa import QUEUES
from sim.stats import Stats


def pick_sections(stats: Stats, max_sections: int) -> list[int]:
    """The longest sections of each phase, taken in turn across phases, in schedule order.

    A section's name begins with its phase (`decode-t1-c144-layer0`), which is
    how a section is matched to a phase here.
    """
    by_phase: dict[str, list[int]] = {}
    for key, t in stats.timings.items():
        if t.trace:
            phase = t.name.split("-", 1)[0]
            by_phase.setdefault(phase if phase in stats.phases else "other", []).append(key)
    ranked = [sorted(keys, key=lambda k: -stats.timings[k].cycles) for keys in by_phase.values()]
    chosen: list[int] = []
    for rank in range(max(map(len, ranked), default=0)):
        chosen += [keys[rank] for keys in ranked if rank < len(keys)]
    return sorted(chosen[:max_sections])


def trace_events(stats: Stats, max_sections: int = 4) -> dict:
    """The trace as a JSON-ready dict; times in microseconds from cycles."""
    sections = pick_sections(stats, max_sections)
    if not sections:
        raise SimulationError("trace: the simulation kept no per-instruction trace (simulate with keep_trace=True)")
    us = 1e6 / stats.clock_hz
    events: list[dict] = []
    offset = 0
    for pid, key in enumerate(sections, start=1):
        t = stats.timings[key]
        events.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": t.name}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": pid}})
        for q, name in enumerate(QUEUES):
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": q, "args": {"name": name}})
            events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": q, "args": {"sort_index": q}})
        for q, start, end, label in t.trace:
            events.append({"name": label, "cat": QUEUES[q], "ph": "X", "pid": pid, "tid": q,
                           "ts": (offset + start) * us, "dur": (end - start) * us})
        offset += t.cycles
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"hardware": stats.hw, "model": stats.model, "clock_hz": stats.clock_hz,
                          "sections": [stats.timings[k].name for k in sections]}}


def write_trace(stats: Stats, path: str | Path, max_sections: int = 4) -> None:
    """Write the trace JSON of up to `max_sections` sections (see `pick_sections`)."""
    write_atomic(path, json.dumps(trace_events(stats, max_sections)).encode())
