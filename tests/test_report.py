"""A run's outputs as a reader meets them: summary.json, the terminal table, trace.json and report.html."""
from __future__ import annotations

import contextlib
import io
import json
import re
from importlib.metadata import version

import pytest

from conftest import non_blank, render_in_chromium
from dspflight.cli import main
from sim.headline import TERMINAL_COLUMNS
from test_trace import partial_overlaps

TINY = ["--model", "tiny", "--prefill", "32", "--decode", "8"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`dspflight run` on the tiny model: its output directory and what it printed."""
    out = tmp_path_factory.mktemp("run") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", *TINY, "--decode-bucket", "4", "-o", str(out)]) == 0
    return out, printed.getvalue()


def test_summary_records_how_the_program_was_made(run):
    out, _ = run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "tiny" and summary["compression"] == "flightllm"
    assert summary["fusion"] is True and summary["plan"] == "spread"
    assert summary["buckets"] == {"prefill": 128, "decode": 4}
    assert summary["dspflight_version"] == version("dspflight")


def test_terminal_output_fits_the_width(run):
    _, printed = run
    table = printed[:printed.index("outputs in")]       # the last line names the output path, whatever its length
    assert max(map(len, table.splitlines())) <= TERMINAL_COLUMNS
    assert re.search(r"^decode \(tokens/s\) +[\d.,]+ +55$", table, re.M)          # ours next to the paper's 55
    assert re.search(r"^decode \(tokens/s\) +[\d.,]+ / [\d.,]+ / [\d.,]+", table, re.M)   # GPU: naive / vllm / roofline


def test_trace_window_all_covers_every_decode_step(tmp_path):
    out = tmp_path / "out"
    assert main(["run", *TINY, "--trace-window", "all", "-o", str(out)]) == 0
    events = [e for e in json.loads((out / "trace.json").read_text())["traceEvents"] if e["ph"] == "X"]
    assert sum(e["cat"] == "steps" and e["name"].startswith("decode token") for e in events) == 8
    assert partial_overlaps(events) == []


def test_bad_trace_window_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["run", *TINY, "--trace-window", "some", "-o", str(out)])
    assert exc.value.code == 2
    assert "trace window: expected 'all' or a number" in capsys.readouterr().err
    assert not out.exists()


def test_report_has_timeline_trace_link_energy_shares_and_folded_tables(run):
    out, _ = run
    page = (out / "report.html").read_text()
    assert page.count('role="img"') == 3                        # prefill and decode timelines, energy chart
    assert "prefill chunk 1 (bucket 128 tokens)" in page and "decode token 1 (context bucket 36)" in page
    assert '<a href="trace.json">' in page
    assert re.search(r"static \d+%", page)                     # the energy shares
    assert page.count("<details>") == 4                         # per-layer and energy tables, per phase
    assert "ms per token" in page and "ms per prompt" in page


def test_report_renders_in_chromium_without_console_errors(run, tmp_path):
    out, _ = run
    shot = tmp_path / "report.png"
    assert render_in_chromium(out / "report.html", shot) == []
    assert non_blank(shot)
