"""The run's report: one self-contained HTML page.

Built from the four report dicts (headline, roofline, energy, cost) and, for
the timeline, the simulation's own per-instruction slices, the same ones
trace.json holds; nothing is recomputed here.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from hwmodel.atomic import write_atomic
from sim.energy_svg import energy_svg, shares
from sim.headline import PAPER, fmt, headline, spelled
from sim.roofline import explain_decode
from sim.roofline_plot import roofline_png
from sim.stats import Stats
from sim.timeline_svg import timeline_svg
from sim.trace import run_steps, step_slices


def _num(x: float | None, spec: str) -> str:
    return "—" if x is None else fmt(x, spec)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _per(phase: dict) -> tuple[float, str]:
    """Divisor and unit of a phase's per-op figures: per token in decode, per prompt in prefill."""
    if phase.get("steps") and phase.get("tokens") and phase["tokens"] == phase["steps"]:
        return phase["tokens"], "per token"
    return 1, "per prompt"


def _op_rows(ops: dict, n: float) -> list[list[str]]:
    rows = []
    for label, o in ops.items():
        gpu = ", ".join(f"{name} {g['bound']}" for name, g in o.get("gpus", {}).items())
        rows.append([label, f"{o['time_s'] / n * 1e3:.4f}", f"{o['ops'] / n / 1e9:.3g}",
                     f"{o['hbm_bytes'] / n / 1e6:.4g}", _num(o["intensity"], ".2f"),
                     f"{o['attained_ops_per_s'] / 1e12:.3f}",
                     _num(o["roof_ops_per_s"] and o["roof_ops_per_s"] / 1e12, ".3f"),
                     _num(o.get("fraction_of_roof"), ".0%"), o["bound"], gpu])
    return rows


def _layers(phase: str, layers: dict, n: float, unit: str) -> str:
    """The per-layer table folded, its summary line giving the range over the transformer layers."""
    blocks = [v["time_s"] / n * 1e3 for k, v in layers.items() if int(k) >= 0]
    span = f"; transformer layers {min(blocks):.3f}–{max(blocks):.3f} ms {unit} each" if blocks else ""
    rows = [[k, f"{v['time_s'] / n * 1e3:.4f}", f"{v['share']:.1%}"] for k, v in layers.items()]
    return (f"<details><summary>{html.escape(phase)}: per layer ({len(layers)} rows{span})</summary>"
            + _table(["layer (negative: embedding, LM head)", f"ms {unit}", "share"], rows) + "</details>")


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1040px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.85em}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:left}th{background:#f2f2f2}td:nth-child(n+2){font-variant-numeric:tabular-nums}
h2{margin-top:1.6em;border-bottom:1px solid #ddd}.note{color:#666;font-size:0.85em}img,svg{max-width:100%;height:auto}
details{margin:0.4em 0}summary{cursor:pointer}"""


def utilization_section(util: dict | None) -> list[str]:
    """Estimated device utilization next to the device and FlightLLM's U280 design."""
    if not util:
        return []
    rows = []
    for kind, r in util["resources"].items():
        over = r["fraction"] is not None and r["fraction"] > 1
        share = f"{r['fraction']:.0%}" + (" (does not fit)" if over else "") if r["fraction"] is not None else "—"
        rows.append([kind.upper(), f"{r['estimate']:,.0f}", f"{r['device']:,}" if r["device"] else "—", share,
                     f"{r['flightllm_u280']:,}" if r["flightllm_u280"] else "—"])
    return ["<h2>Device utilization (estimate)</h2>",
            _table(["resource", "this design", "device", "used", "FlightLLM U280 (published)"], rows),
            f"<p class=note>Modelled: {html.escape(util['modelled'])}"
            + (f", gateware fit for {html.escape(util['family'])}" if util["family"] else "")
            + f". What the LUT estimate is made of, and what would bring it down: docs/rtl.md, \"Resources\". "
            f"Published: {html.escape(util['published_source'])}.</p>"]


def timeline_section(stats: Stats | None) -> list[str]:
    """The first prefill chunk and the first decode step, queue by queue."""
    parts = ["<h2>Timeline</h2>",
             '<p>The instructions of one prefill chunk and one decode step on one core (all cores run the same '
             'sections in lockstep). Every instruction is in <a href="trace.json">trace.json</a>: open it in '
             '<a href="https://ui.perfetto.dev">ui.perfetto.dev</a>; it covers the prefill and the first decode '
             "step unless <code>--trace-window</code> says otherwise.</p>"]
    if stats is None:
        return parts
    first: dict[str, tuple[int, str]] = {}
    for entry, name, _ in run_steps(stats, 1):
        first.setdefault(stats.steps[entry]["phase"], (entry, name))
    for phase in ("prefill", "decode"):
        if phase in first:
            entry, name = first[phase]
            ms = stats.seconds(stats.steps[entry]["cycles"]) * 1e3
            calls = len(stats.step_sections[entry])
            parts.append(timeline_svg(step_slices(stats, entry, name), stats.clock_hz,
                                      f"{name}: {ms:.4g} ms, {calls} section calls (busy share at right)"))
    return parts


def energy_section(energy: dict) -> list[str]:
    parts = [f"<h2>Energy (table {html.escape(energy['table'])}, static {energy['static_power_w']:.1f} W)</h2>"]
    lines = []
    for phase, e in energy["phases"].items():
        top = ", ".join(f"{k} {s:.0%}" for k, s in list(shares(e).items())[:3])
        lines.append(f"<li>{html.escape(phase)}: {e['total_j']:.3g} J, {e['power_w']:.1f} W average, "
                     f"{e['tokens_per_joule']:.3f} tokens/J; {html.escape(top)}</li>")
    run_j = energy["run"]["total_j"]
    if len(energy["phases"]) > 1 and run_j:
        static = sum(e["static_j"] for e in energy["phases"].values()) / run_j
        lines.append(f"<li>whole run: {run_j:.3g} J, {energy['run']['power_w']:.1f} W average; "
                     f"static {static:.0%}</li>")
    parts += ["<ul>" + "".join(lines) + "</ul>", energy_svg(energy)]
    for phase, e in energy["phases"].items():
        share = shares(e)
        rows = [[k, f"{a['count']:.3e}", f"{a['pj']:g} pJ/{a['per']}", f"{a['joules']:.3f}", f"{share[k]:.1%}",
                 energy["sources"][k]] for k, a in e["actions"].items()]
        rows.append(["static", "", f"{energy['static_power_w']:.1f} W", f"{e['static_j']:.3f}",
                     f"{share['static']:.1%}", "HwConfig power"])
        parts.append(f"<details><summary>{html.escape(phase)}: energy by action</summary>"
                     + _table(["action", "count", "energy", "joules", "share", "source"], rows) + "</details>")
    return parts


def render_report(summary: dict, roofline: dict, energy: dict, cost: dict, stats: Stats | None = None) -> str:
    """The page as a string; the roofline PNG is embedded as base64, the charts as inline SVG."""
    rows = headline(summary, roofline, energy, cost)
    gpu_names = list(roofline["gpus"])
    parts = [f"<h1>dspflight: {html.escape(str(summary['model']))} on {html.escape(str(summary['hardware']))}</h1>",
             f"<p>prefill {summary.get('prefill_tokens')} tokens, decode {summary.get('decode_tokens')} tokens, "
             f"batch 1.</p>",
             "<h2>Headline</h2>",
             _table(["metric", "ours", PAPER, *gpu_names],
                    [[r.metric, spelled(r.ours, r.ours_note), r.published,
                      *(spelled(r.gpus.get(n, {})) for n in gpu_names)] for r in rows]),
             "<p class=note>GPU cells: at FlightLLM's measured decode HBM utilization (naive, vllm) and at the "
             "roofline bound (FP16, dense weights, 2 bytes each). Published: "
             f"{html.escape(roofline['published']['source'])}.</p>"]
    lines = explain_decode(roofline)
    if lines:
        parts += ["<h2>How the decode figure arises</h2>",
                  "<ol>" + "".join(f"<li>{html.escape(s)}</li>" for s in lines) + "</ol>"]
    parts += utilization_section(summary.get("utilization"))
    parts += timeline_section(stats)
    png = base64.b64encode(roofline_png(roofline)).decode()
    parts += ["<h2>Roofline</h2>", f'<img alt="roofline" src="data:image/png;base64,{png}">']
    for phase, ops in roofline["ops"].items():
        n, unit = _per(roofline["phases"][phase])
        parts += [f"<h3>{html.escape(phase)}: per op ({unit})</h3>",
                  _table(["op", f"ms {unit}", f"Gops {unit}", f"HBM MB {unit}", "ops/byte", "attained TOPS",
                          "roof TOPS", "of roof", "bound", "GPU bound (FP16)"], _op_rows(ops, n))]
    for phase, layers in roofline["layers"].items():
        parts.append(_layers(phase, layers, *_per(roofline["phases"][phase])))
    parts += energy_section(energy)
    page = "\n".join(parts)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>dspflight report</title>"
            f'<link rel="icon" href="data:,"><style>{_CSS}</style></head><body>\n{page}\n</body></html>\n')


def write_report(summary: dict, roofline: dict, energy: dict, cost: dict, path: str | Path,
                 stats: Stats | None = None) -> None:
    """Write the HTML report (atomically)."""
    write_atomic(path, render_report(summary, roofline, energy, cost, stats).encode())
