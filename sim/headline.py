"""The headline figures, shared by the HTML page and the terminal table.

Each figure of ours sits next to the GPU presets' figure (at their published
decode HBM utilizations, or the roofline bound where none is published) and
next to FlightLLM's published figure where one exists, so a reader sees at
once where the model agrees with the paper and where not. Everything comes
from the four report dicts; nothing is recomputed here.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from sim.roofline import explain_decode

TERMINAL_COLUMNS = 120
PAPER = "FlightLLM paper (U280, LLaMA2-7B)"


@dataclass
class Row:
    metric: str
    ours: dict[str, str]                                        # kind ("" alone: one figure) -> value
    gpus: dict[str, dict[str, str]] = field(default_factory=dict)
    published: str = ""
    ours_note: str = ""


def fmt(x: float, spec: str) -> str:
    """`spec` as for format(), or "g": four significant digits, whole numbers from 10,000 up."""
    if spec != "g":
        return format(x, spec)
    return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}"


def _one(x: float | None, spec: str = ".1f") -> dict[str, str]:
    return {"": "—" if x is None else fmt(x, spec)}


def _per(values: dict[str, float], spec: str, scale: float = 1.0) -> dict[str, str]:
    """One figure per utilization kind: published kinds first, the roofline bound last."""
    return {k: fmt(values[k] * scale, spec) for k in sorted(values, key=lambda k: k == "roofline")}


def headline(summary: dict, roofline: dict, energy: dict, cost: dict) -> list[Row]:
    """The headline rows."""
    gpus = roofline["gpus"]
    pub_roof, pub_energy, pub_cost = roofline["published"], energy["published"], cost["published"]
    dec = {name: g.get("decode") for name, g in gpus.items()}
    per_dollar = cost["fpga"]["tokens_per_s_per_dollar"]
    return [
        Row("prefill (ms)", _one(summary["prefill_ms"], "g"),
            {n: {"roofline": fmt(g["phases"]["prefill"]["time_s_at_roof"] * 1e3, "g")} for n, g in gpus.items()
             if "prefill" in g["phases"]}),
        Row("decode (ms/token)", _one(summary["decode_ms_per_token"], "g"),
            {n: _per({k: 1e3 / v for k, v in d["tokens_per_s"].items()}, "g") for n, d in dec.items() if d},
            f"{1e3 / pub_roof['decode_tokens_per_s']:.2f}"),
        Row("decode (tokens/s)", _one(summary["decode_tokens_per_s"], "g"),
            {n: _per(d["tokens_per_s"], "g") for n, d in dec.items() if d},
            f"{pub_roof['decode_tokens_per_s']:.0f}"),
        Row("HBM bandwidth utilization", {"": f"{summary['hbm_bandwidth_utilization']:.1%}"},
            {n: _per({k: v for k, v in d["utilization"].items() if k != "roofline"}, ".1%")
             for n, d in dec.items() if d and len(d["utilization"]) > 1},
            f"{pub_roof['hbm_bandwidth_utilization']:.1%}"),
        Row("power (W)", _one(summary["power_w"]), {n: {"TDP": f"{g['tdp_w']:.0f}"} for n, g in gpus.items()},
            f"~{pub_energy['board_power_w']:.0f} (implied)"),
        Row(f"tokens per joule ({energy['phase']})", _one(summary["tokens_per_joule"], "g"),
            {n: _per(g["tokens_per_joule"], "g") for n, g in energy["gpus"].items()}),
        Row("energy efficiency vs V100S", _per(energy["vs_v100s"], ".2f") if energy["vs_v100s"] else _one(None), {},
            ", ".join(f"{v:.1f}x {k}" for k, v in pub_energy["tokens_per_joule_vs_v100s"].items())),
        Row("tokens/s per $1000", _one(per_dollar and per_dollar * 1e3, "g"),
            {n: _per(g["tokens_per_s_per_dollar"], "g", 1e3) for n, g in cost["gpus"].items()}),
        Row("cost efficiency vs V100S", _per(cost["vs_v100s"], ".2f") if cost["vs_v100s"] else _one(None), {},
            f"{pub_cost['tokens_per_s_per_dollar_vs_v100s']:.1f}x average",
            f"mean {cost['vs_v100s_mean']:.2f}" if cost["vs_v100s"] else ""),
    ]


def spelled(values: dict[str, str], note: str = "") -> str:
    """'35.8 naive, 55.1 vllm' (for the page)."""
    text = ", ".join(f"{v} {k}".rstrip() for k, v in values.items())
    return f"{text}; {note}" if note else text


def _kinds(rows: list[Row]) -> list[str]:
    """The utilization kinds of the compact cells, in their order (roofline last)."""
    kinds = dict.fromkeys(k for r in rows for vals in [r.ours, *r.gpus.values()] for k in vals if k not in ("", "TDP"))
    return sorted(kinds, key=lambda k: k == "roofline")


def _compact(values: dict[str, str], kinds: list[str], note: str = "") -> str:
    """'35.8 / 55.1 / 83.5' in the order of `kinds` ('-' where a kind has no figure)."""
    if not values:
        return ""
    if set(values) <= set(kinds):
        text = " / ".join(values.get(k, "-") for k in kinds)
    else:
        text = spelled(values)
    return f"{text}; {note}" if note else text


def _columns(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_table(summary: dict, roofline: dict, energy: dict, cost: dict) -> str:
    """The headline as plain text for the terminal, at most TERMINAL_COLUMNS wide:
    ours next to the paper, then the GPU presets."""
    rows = headline(summary, roofline, energy, cost)
    kinds = _kinds(rows)
    slots = " / ".join(kinds)
    ours = _columns(["metric", f"{summary['hardware']} (ours)", PAPER],
                    [[r.metric, _compact(r.ours, kinds, r.ours_note), r.published] for r in rows])
    gpu_names = list(roofline["gpus"])
    gpu_rows = [r for r in rows if r.gpus]
    gpus = _columns(["GPU presets", *gpu_names], [[r.metric, *(_compact(r.gpus.get(n, {}), kinds) for n in gpu_names)]
                                                  for r in gpu_rows])
    note = (f"{slots}: at FlightLLM's measured GPU decode HBM utilization ({', '.join(kinds[:-1])}) and at the "
            "roofline bound; '-': none published.")
    lines = [*ours, "", *gpus, *_wrap(note, ""), "", "How the decode figure arises:"]
    lines += [w for s in explain_decode(roofline) for w in _wrap(s, "  ")]
    return "\n".join(lines)


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, TERMINAL_COLUMNS, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_on_hyphens=False)
