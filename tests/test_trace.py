"""Chrome/Perfetto trace: loads as JSON, properly nested on every track, covers its stated window."""
from __future__ import annotations

import json

import pytest

from hwmodel.errors import DspflightError, SimulationError
from hwmodel.isa import QUEUES
from sim.stats import simulate
from sim.trace import parse_window, timeline, trace_events


@pytest.fixture(scope="module")
def tiny_stats(tiny_program, u280):
    return simulate(tiny_program, u280, keep_trace=True)


def load(stats, decode_steps=1):
    """The trace as its file holds it, and its slices."""
    data = json.loads(json.dumps(trace_events(stats, decode_steps)))
    return data, [e for e in data["traceEvents"] if e["ph"] == "X"]


def partial_overlaps(events: list[dict]) -> list[tuple[str, str]]:
    """Pairs of slices on one track that overlap without one containing the other."""
    tracks: dict[tuple, list[dict]] = {}
    for e in events:
        tracks.setdefault((e["pid"], e["tid"]), []).append(e)
    bad = []
    for slices in tracks.values():
        slices.sort(key=lambda e: (e["ts"], -e["dur"]))
        open_: list[dict] = []
        for e in slices:
            while open_ and open_[-1]["ts"] + open_[-1]["dur"] <= e["ts"] + 1e-9:
                open_.pop()
            if open_ and e["ts"] + e["dur"] > open_[-1]["ts"] + open_[-1]["dur"] + 1e-9:
                bad.append((open_[-1]["name"], e["name"]))
            open_.append(e)
    return bad


def test_whole_run_is_nested_on_every_track(tiny_stats):
    data, events = load(tiny_stats, None)
    assert partial_overlaps(events) == []
    names = {e["args"]["name"] for e in data["traceEvents"] if e["name"] == "thread_name"}
    assert {"LD", "LD +1"} <= names        # transfers do overlap in this run: the second lane holds them
    assert set(QUEUES) <= names
    us = 1e6 / tiny_stats.clock_hz
    run_cycles = sum(s["cycles"] * s["repeat"] for s in tiny_stats.steps)
    assert max(e["ts"] + e["dur"] for e in events) == pytest.approx(run_cycles * us)
    decode = [e["name"] for e in events if e["cat"] == "steps" and e["name"].startswith("decode")]
    assert len(decode) == tiny_stats.phases["decode"].tokens == 8
    assert data["otherData"]["window"] == "the whole run"


def test_default_window_is_the_prefill_and_one_decode_step(tiny_stats):
    data, events = load(tiny_stats)
    steps = [e["name"] for e in events if e["cat"] == "steps"]
    assert steps == ["prefill chunk 1 (bucket 128 tokens)", "prompt logits", "decode token 1 (context bucket 48)"]
    assert data["otherData"]["window"] == "prefill and 1 decode step(s)"
    assert partial_overlaps(events) == []


def test_every_instruction_of_every_call_is_a_slice(tiny_stats):
    slices = timeline(tiny_stats, 2)
    calls = [s for s in slices if s.track == "calls"]
    by_name = {t.name: t for t in tiny_stats.timings.values()}
    assert sum(s.track in QUEUES for s in slices) == sum(by_name[c.name].instructions for c in calls)
    for a, b in zip(calls, calls[1:]):
        assert a.end == b.start                # calls laid end to end, as the schedule runs them
    for s in slices:
        if s.track in QUEUES:
            assert any(c.start <= s.start <= s.end <= c.end for c in calls)


def test_times_are_microseconds_from_cycles(tiny_stats):
    _, events = load(tiny_stats, 0)
    first_call = tiny_stats.timings[tiny_stats.step_sections[0][0]]
    q, start, end, label = first_call.trace[0]
    first = next(e for e in events if e["cat"] == QUEUES[q])
    us = 1e6 / tiny_stats.clock_hz
    assert first["name"] == label
    assert first["ts"] == pytest.approx(start * us) and first["dur"] == pytest.approx((end - start) * us)


def test_window_parsing():
    assert parse_window("all") is None
    assert parse_window("3") == 3
    for bad in ("-1", "x", ""):
        with pytest.raises(DspflightError, match="trace window"):
            parse_window(bad)


def test_without_kept_trace_is_an_error(tiny_program, u280):
    stats = simulate(tiny_program, u280)
    with pytest.raises(SimulationError, match="keep_trace"):
        trace_events(stats)
