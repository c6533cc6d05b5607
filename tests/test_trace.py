"""Chrome/Perfetto trace: loads as JSON, one track per queue, events on every busy queue."""
from __future__ import annotations

import json

import pytest

from hwmodel.errors import SimulationError
from hwmodel.isa import QUEUES
from sim.stats import simulate
from sim.trace import pick_sections, write_trace


@pytest.fixture(scope="module")
def tiny_stats(tiny_program, u280):
    return simulate(tiny_program, u280, keep_trace=True)


def load(path):
    data = json.loads(path.read_text())
    return data, [e for e in data["traceEvents"] if e["ph"] == "X"]


def test_trace_has_prefill_and_decode_layer_sections(tiny_stats, tmp_path):
    path = tmp_path / "trace.json"
    write_trace(tiny_stats, path, max_sections=2)
    data, _ = load(path)
    names = data["otherData"]["sections"]
    assert len(names) == 2
    assert names[0].startswith("prefill-") and "layer" in names[0]
    assert names[1].startswith("decode-") and "layer" in names[1]
    assert [p.name for p in tmp_path.iterdir()] == ["trace.json"]       # no temporary file left


def test_every_busy_queue_has_events(tiny_stats, tmp_path):
    path = tmp_path / "trace.json"
    write_trace(tiny_stats, path)
    data, events = load(path)
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in data["traceEvents"] if e["name"] == "thread_name"}
    assert {n for n in names.values()} == set(QUEUES)
    for pid, key in enumerate(pick_sections(tiny_stats, 4), start=1):
        t = tiny_stats.timings[key]
        mine = [e for e in events if e["pid"] == pid]
        assert len(mine) == t.instructions
        for q, busy in enumerate(t.busy):
            if busy:
                assert any(e["tid"] == q for e in mine), (t.name, QUEUES[q])
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in events)


def test_times_are_microseconds_from_cycles(tiny_stats, tmp_path):
    path = tmp_path / "trace.json"
    write_trace(tiny_stats, path, max_sections=1)
    _, events = load(path)
    key = pick_sections(tiny_stats, 1)[0]
    t = tiny_stats.timings[key]
    us = 1e6 / tiny_stats.clock_hz
    assert max(e["ts"] + e["dur"] for e in events) == pytest.approx(t.cycles * us)
    q, start, end, label = t.trace[0]
    first = events[0]
    assert (first["tid"], first["name"]) == (q, label)
    assert first["ts"] == pytest.approx(start * us) and first["dur"] == pytest.approx((end - start) * us)


def test_sections_are_laid_end_to_end(tiny_stats, tmp_path):
    path = tmp_path / "trace.json"
    write_trace(tiny_stats, path, max_sections=3)
    _, events = load(path)
    keys = pick_sections(tiny_stats, 3)
    ends = {}
    for e in events:
        ends[e["pid"]] = max(ends.get(e["pid"], 0), e["ts"] + e["dur"])
    starts = {pid: min(e["ts"] for e in events if e["pid"] == pid) for pid in ends}
    us = 1e6 / tiny_stats.clock_hz
    offset = 0
    for pid, key in enumerate(keys, start=1):
        assert starts[pid] >= offset * us - 1e-9
        offset += tiny_stats.timings[key].cycles
        assert ends[pid] <= offset * us + 1e-9


def test_without_kept_trace_is_an_error(tiny_program, u280, tmp_path):
    stats = simulate(tiny_program, u280)
    with pytest.raises(SimulationError, match="keep_trace"):
        write_trace(stats, tmp_path / "trace.json")
    assert not list(tmp_path.iterdir())
