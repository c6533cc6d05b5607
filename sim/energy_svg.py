"""Where each phase's energy goes: one stacked bar per phase, as inline SVG.

Shares are of the phase's total joules (energy.json), so static power, most
of a small-batch run's energy, shows at a glance beside the dynamic actions.
"""
from __future__ import annotations

import html

WIDTH, LEFT, BAR, GAP = 1000, 70, 22, 34
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
STATIC_COLOUR = "#7f7f7f"


def shares(phase: dict) -> dict[str, float]:
    """Action (and "static") -> share of the phase's joules, largest first."""
    parts = {k: a["joules"] for k, a in phase["actions"].items()} | {"static": phase["static_j"]}
    total = phase["total_j"] or 1.0
    return dict(sorted(((k, j / total) for k, j in parts.items()), key=lambda kv: -kv[1]))


def energy_svg(energy: dict) -> str:
    """The stacked bars with a legend; a segment's tooltip gives its share and joules."""
    phases = energy["phases"]
    names = list(dict.fromkeys(k for p in phases.values() for k in shares(p)))
    colour = {k: STATIC_COLOUR if k == "static" else PALETTE[i % len(PALETTE)] for i, k in enumerate(names)}
    height = len(phases) * GAP + 20 + 18 * ((len(names) + 4) // 5)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" font-family="system-ui,sans-serif" font-size="11" role="img">',
             "<title>energy by action, share of each phase</title>"]
    span = WIDTH - LEFT - 10
    for r, (phase, p) in enumerate(phases.items()):
        y = 4 + r * GAP
        parts.append(f'<text x="0" y="{y + 15}">{html.escape(phase)}</text>')
        x = LEFT
        for k, share in shares(p).items():
            w = share * span
            joules = p["static_j"] if k == "static" else p["actions"][k]["joules"]
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR}" fill="{colour[k]}">'
                         f"<title>{html.escape(k)}: {share:.1%}, {joules:.3g} J</title></rect>")
            if w > 44:
                parts.append(f'<text x="{x + 4:.1f}" y="{y + 15}" fill="white">{html.escape(k)} {share:.0%}</text>')
            x += w
    y = 4 + len(phases) * GAP
    for i, k in enumerate(names):
        lx, ly = LEFT + (i % 5) * 180, y + (i // 5) * 18
        parts.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{colour[k]}"/>'
                     f'<text x="{lx + 14}" y="{ly + 9}">{html.escape(k)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
