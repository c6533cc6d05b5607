"""The run's timeline as Chrome/Perfetto trace JSON (open in ui.perfetto.dev).

Time runs from the start of the run, step after step as the schedule runs
them (a decode step standing for several real steps is repeated). One core is
drawn: every core runs the same section in lockstep. Tracks: the steps with
their section calls nested inside, then one track per instruction queue with
one slice per instruction. A queue issues its next transfer when the previous
one has moved its data, while that one's latency tail is still running, so
transfers can overlap; an overlapping one goes on the queue's next lane
("LD +1"), keeping every track properly nested as Perfetto requires.

The window is the prefill and the first `decode_steps` decode steps (default
1: 2 MB for LLaMA2-7B at prefill 128); None is the whole run (every
instruction of every token: about 1 MB per LLaMA2-7B decode step).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator

from hwmodel.errors import DspflightError, SimulationError
from hwmodel.isa import QUEUES
from sim.stats import Stats

DEFAULT_DECODE_STEPS = 1
STEP_TRACK, CALL_TRACK = "steps", "calls"   # calls nest inside steps on one track


@dataclass(frozen=True)
class Slice:
    """One slice of the timeline, in cycles from the start of the run."""
    track: str      # STEP_TRACK, CALL_TRACK or a queue name
    lane: int       # 0, or the overlap lane of a transfer
    name: str
    start: int
    end: int


def parse_window(text: str) -> int | None:
    """`--trace-window`: "all" (None) or how many decode steps follow the prefill."""
    if text == "all":
        return None
    if not text.isdigit():
        raise DspflightError(f"trace window: expected 'all' or a number of decode steps >= 0, got {text!r}")
    return int(text)


def run_steps(stats: Stats, decode_steps: int | None) -> Iterator[tuple[int, str, int]]:
    """(entry of stats.steps, step name, start cycle) for each real step in the window."""
    start, token, chunk = 0, 0, 0
    for i, step in enumerate(stats.steps):
        for _ in range(step["repeat"]):
            if step["phase"] == "decode":
                if decode_steps is not None and token >= decode_steps:
                    return
                token += 1
                name = f"decode token {token} (context bucket {step['context']})"
            elif step["phase"] == "prefill":
                chunk += 1
                name = f"prefill chunk {chunk} (bucket {step['tokens']} tokens)"
            else:
                name = "prompt logits"
            yield i, name, start
            start += step["cycles"]


def step_slices(stats: Stats, entry: int, name: str, start: int = 0) -> list[Slice]:
    """The slices of one run of `stats.steps[entry]` starting at cycle `start`."""
    out = [Slice(STEP_TRACK, 0, name, start, start + stats.steps[entry]["cycles"])]
    t0 = start
    for key in stats.step_sections[entry]:
        t = stats.timings[key]
        if t.instructions and not t.trace:
            raise SimulationError("trace: the simulation kept no per-instruction trace (simulate with keep_trace=True)")
        out.append(Slice(CALL_TRACK, 0, t.name, t0, t0 + t.cycles))
        lane_free: dict[int, list[int]] = {}
        for q, s, e, label in t.trace:
            lanes = lane_free.setdefault(q, [])
            lane = next((k for k, free in enumerate(lanes) if free <= s), len(lanes))
            lanes[lane:lane + 1] = [e]
            out.append(Slice(QUEUES[q], lane, label, t0 + s, t0 + e))
        t0 += t.cycles
    return out


def timeline(stats: Stats, decode_steps: int | None = DEFAULT_DECODE_STEPS) -> list[Slice]:
    """Every slice of the window (see the module docstring)."""
    return [s for entry, name, start in run_steps(stats, decode_steps)
            for s in step_slices(stats, entry, name, start)]


def _tid(track: str, lane: int) -> int:
    return 0 if track in (STEP_TRACK, CALL_TRACK) else 1 + QUEUES.index(track) * 100 + lane


def _track_name(track: str, lane: int) -> str:
    if track in (STEP_TRACK, CALL_TRACK):
        return "steps / section calls"
    return track if lane == 0 else f"{track} +{lane}"


def trace_events(stats: Stats, decode_steps: int | None = DEFAULT_DECODE_STEPS) -> dict:
    """The trace as a JSON-ready dict; times in microseconds from cycles."""
    slices = timeline(stats, decode_steps)
    us = 1e6 / stats.clock_hz
    events: list[dict] = [{"name": "process_name", "ph": "M", "pid": 1,
                           "args": {"name": f"{stats.hw} core 0 (all {stats.cores} cores in lockstep)"}}]
    for track, lane in sorted({(s.track, s.lane) for s in slices}, key=lambda tl: _tid(*tl)):
        tid = _tid(track, lane)
        if track != CALL_TRACK:
            events.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                           "args": {"name": _track_name(track, lane)}})
            events.append({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": {"sort_index": tid}})
    events += [{"name": s.name, "cat": s.track, "ph": "X", "pid": 1, "tid": _tid(s.track, s.lane),
                "ts": s.start * us, "dur": (s.end - s.start) * us} for s in slices]
    window = "the whole run" if decode_steps is None else f"prefill and {decode_steps} decode step(s)"
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"hardware": stats.hw, "model": stats.model, "clock_hz": stats.clock_hz,
                          "window": window, "steps": sum(s.track == STEP_TRACK for s in slices),
                          "run_ms": sum(s["cycles"] * s["repeat"] for s in stats.steps) / stats.clock_hz * 1e3}}


def trace_json(stats: Stats, decode_steps: int | None = DEFAULT_DECODE_STEPS) -> bytes:
    """The trace file's contents."""
    return json.dumps(trace_events(stats, decode_steps), separators=(",", ":")).encode()
