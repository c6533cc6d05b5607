"""The run's report: one self-contained HTML page and the same headline table as text.

The headline puts each figure of ours next to the GPU presets' figure (at
their published decode HBM utilizations, or the roofline bound where none is
published) and next to FlightLLM's published figure where one exists, so a
reader sees at once where the model agrees with the paper and where not.
Everything is built from the four report dicts; nothing is recomputed here.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from sim.roofline import explain_decode, roofline_png
from sim.stats import Stats
from sim.trace import write_atomic


@dataclass
class Row:
    metric: str
    ours: str
    gpus: dict[str, str] = field(default_factory=dict)
    published: str = ""


def _format(x: float, fmt: str) -> str:
    """`fmt` as for format(), or "g": four significant digits, whole numbers from 10,000 up."""
    if fmt != "g":
        return format(x, fmt)
    return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}"


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "—" if x is None else _format(x, fmt)


def _per_util(values: dict[str, float], fmt: str, scale: float = 1.0) -> str:
    """'35.8 naive, 55.1 vllm' — published utilizations first, the roofline bound last."""
    order = sorted(values, key=lambda k: k == "roofline")
    return ", ".join(f"{_format(values[k] * scale, fmt)} {k}" for k in order)


def headline(summary: dict, roofline: dict, energy: dict, cost: dict) -> list[Row]:
    """The headline rows shared by the HTML page and the terminal table."""
    gpus = roofline["gpus"]
    pub_roof, pub_energy, pub_cost = roofline["published"], energy["published"], cost["published"]
    dec = {name: g.get("decode") for name, g in gpus.items()}
    per_dollar = cost["fpga"]["tokens_per_s_per_dollar"]
    rows = [
        Row("prefill (ms)", _num(summary["prefill_ms"], "g"),
            {n: f"{g['phases']['prefill']['time_s_at_roof'] * 1e3:.4g} roofline" for n, g in gpus.items()
             if "prefill" in g["phases"]}),
        Row("decode (ms/token)", _num(summary["decode_ms_per_token"], "g"),
            {n: _per_util({k: 1e3 / v for k, v in d["tokens_per_s"].items()}, "g") for n, d in dec.items() if d},
            f"{1e3 / pub_roof['decode_tokens_per_s']:.2f}"),
        Row("decode (tokens/s)", _num(summary["decode_tokens_per_s"], "g"),
            {n: _per_util(d["tokens_per_s"], "g") for n, d in dec.items() if d},
            f"{pub_roof['decode_tokens_per_s']:.0f}"),
        Row("HBM bandwidth utilization", f"{summary['hbm_bandwidth_utilization']:.1%}",
            {n: _per_util({k: v for k, v in d["utilization"].items() if k != "roofline"}, ".1%")
             for n, d in dec.items() if d and len(d["utilization"]) > 1},
            f"{pub_roof['hbm_bandwidth_utilization']:.1%}"),
        Row("power (W)", _num(summary["power_w"]), {n: f"{g['tdp_w']:.0f} TDP" for n, g in gpus.items()},
            f"~{pub_energy['board_power_w']:.0f} (implied)"),
        Row(f"tokens per joule ({energy['phase']})", _num(summary["tokens_per_joule"], "g"),
            {n: _per_util(g["tokens_per_joule"], "g") for n, g in energy["gpus"].items()}),
        Row("energy efficiency vs V100S", _per_util(energy["vs_v100s"], ".2f") if energy["vs_v100s"] else "—", {},
            ", ".join(f"{v:.1f}x {k}" for k, v in pub_energy["tokens_per_joule_vs_v100s"].items())),
        Row("tokens/s per $1000", _num(per_dollar and per_dollar * 1e3, "g"),
            {n: _per_util(g["tokens_per_s_per_dollar"], "g", 1e3) for n, g in cost["gpus"].items()}),
        Row("cost efficiency vs V100S",
            (_per_util(cost["vs_v100s"], ".2f") + f"; mean {cost['vs_v100s_mean']:.2f}") if cost["vs_v100s"] else "—",
            {}, f"{pub_cost['tokens_per_s_per_dollar_vs_v100s']:.1f}x average"),
    ]
    return rows


def format_table(summary: dict, roofline: dict, energy: dict, cost: dict) -> str:
    """The headline table as plain text for the terminal."""
    rows = headline(summary, roofline, energy, cost)
    gpu_names = list(roofline["gpus"])
    header = ["metric", f"{summary['hardware']} (ours)", *gpu_names, "FlightLLM paper (U280, LLaMA2-7B)"]
    body = [[r.metric, r.ours, *(r.gpus.get(n, "") for n in gpu_names), r.published] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = "GPU cells: at FlightLLM's measured decode HBM utilization (naive, vllm) and at the roofline bound."
    return "\n".join([*lines, note, "", "How the decode figure arises:", *(f"  {s}" for s in explain_decode(roofline))])


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _op_rows(ops: dict) -> list[list[str]]:
    rows = []
    for label, o in ops.items():
        gpu = ", ".join(f"{n} {g['bound']}" for n, g in o.get("gpus", {}).items())
        rows.append([label, f"{o['time_s'] * 1e3:.3f}", f"{o['ops'] / 1e9:.2f}", f"{o['hbm_bytes'] / 1e6:.1f}",
                     _num(o["intensity"], ".2f"), f"{o['attained_ops_per_s'] / 1e12:.3f}",
                     _num(o["roof_ops_per_s"] and o["roof_ops_per_s"] / 1e12, ".3f"),
                     _num(o.get("fraction_of_roof"), ".0%"), o["bound"], gpu])
    return rows


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:left}th{background:#f2f2f2}td:nth-child(n+2){font-variant-numeric:tabular-nums}
h2{margin-top:1.6em}.note{color:#666;font-size:0.85em}img{max-width:100%}"""


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
            + f". Published: {html.escape(util['published_source'])}.</p>"]


def render_report(summary: dict, roofline: dict, energy: dict, cost: dict, stats: Stats | None = None) -> str:
    """The page as a string; the roofline PNG is embedded as base64."""
    rows = headline(summary, roofline, energy, cost)
    gpu_names = list(roofline["gpus"])
    parts = [f"<h1>dspflight: {html.escape(str(summary['model']))} on {html.escape(str(summary['hardware']))}</h1>",
             f"<p>prefill {summary.get('prefill_tokens')} tokens, decode {summary.get('decode_tokens')} tokens, "
             f"batch 1.</p>",
             "<h2>Headline</h2>",
             _table(["metric", "ours", *gpu_names, "FlightLLM paper (U280, LLaMA2-7B)"],
                    [[r.metric, r.ours, *(r.gpus.get(n, "") for n in gpu_names), r.published] for r in rows]),
             "<p class=note>GPU cells: at FlightLLM's measured decode HBM utilization (naive, vllm) and at the "
             "roofline bound (FP16, dense weights, 2 bytes each). Published: "
             f"{html.escape(roofline['published']['source'])}.</p>"]
    lines = explain_decode(roofline)
    if lines:
        parts += ["<h2>How the decode figure arises</h2>",
                  "<ol>" + "".join(f"<li>{html.escape(s)}</li>" for s in lines) + "</ol>"]
    png = base64.b64encode(roofline_png(roofline)).decode()
    parts += ["<h2>Roofline</h2>", f'<img alt="roofline" src="data:image/png;base64,{png}">']
    for phase, ops in roofline["ops"].items():
        parts += [f"<h3>{html.escape(phase)}: per op</h3>",
                  _table(["op", "time ms", "Gops", "HBM MB", "ops/byte", "attained TOPS", "roof TOPS", "of roof",
                          "bound", "GPU bound (FP16)"], _op_rows(ops))]
    for phase, layers in roofline["layers"].items():
        parts += [f"<h3>{html.escape(phase)}: per layer (negative = embedding, LM head)</h3>",
                  _table(["layer", "time ms", "share"],
                         [[k, f"{v['time_s'] * 1e3:.3f}", f"{v['share']:.1%}"] for k, v in layers.items()])]
    parts += utilization_section(summary.get("utilization"))
    parts.append(f"<h2>Energy (table {html.escape(energy['table'])}, static {energy['static_power_w']:.1f} W)</h2>")
    for phase, e in energy["phases"].items():
        rows_e = [[k, f"{a['count']:.3e}", f"{a['pj']:g} pJ/{a['per']}", f"{a['joules']:.3f}",
                   energy["sources"][k]] for k, a in e["actions"].items()]
        rows_e.append(["static", "", f"{energy['static_power_w']:.1f} W", f"{e['static_j']:.3f}", "HwConfig power"])
        parts += [f"<h3>{html.escape(phase)}: {e['total_j']:.2f} J, {e['power_w']:.1f} W average, "
                  f"{e['tokens_per_joule']:.3f} tokens/J</h3>",
                  _table(["action", "count", "energy", "joules", "source"], rows_e)]
    page = "\n".join(parts)
    return (f"<!doctype html><html><head><meta charset=utf-8><title>dspflight report</title>"
            f"<style>{_CSS}</style></head><body>\n{page}\n</body></html>\n")


def write_report(summary: dict, roofline: dict, energy: dict, cost: dict, path: str | Path,
                 stats: Stats | None = None) -> None:
    """Write the HTML report (atomically)."""
    write_atomic(path, render_report(summary, roofline, energy, cost, stats).encode())
