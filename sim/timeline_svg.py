"""One step's per-queue timeline as inline SVG, drawn from the trace's own slices.

Rows: the section calls, then every queue lane (as in trace.json). Each
one-pixel column is shaded by how busy the lane is within it (in tenths), so
a step of thousands of instructions stays a few hundred rectangles and short
transfers do not look like a saturated queue; the right margin gives each
queue's busy share.
"""
from __future__ import annotations

import html
import math

from hwmodel.isa import QUEUES
from sim.trace import CALL_TRACK, Slice

WIDTH, LEFT, RIGHT, ROW, AXIS = 1000, 70, 50, 16, 24
COLOURS = {"LD": "#1f77b4", "ST": "#17becf", "MM": "#d62728", "MV": "#ff7f0e", "MISC": "#2ca02c", "SYS": "#7f7f7f"}
CALL_SHADES = ("#e8e8f4", "#c9c9e3")


def _density(spans: list[tuple[float, float]], bins: int) -> list[float]:
    """Busy share of each one-pixel column, from spans in pixels (overlapping lanes are separate rows)."""
    busy = [0.0] * bins
    for a, b in spans:
        col = int(a)
        while col < bins and col < b:
            busy[col] += min(b, col + 1) - max(a, col)
            col += 1
    return [min(x, 1.0) for x in busy]


def _runs(density: list[float]) -> list[tuple[int, int, float]]:
    """(first column, columns, opacity) for runs of columns of equal opacity in tenths; empty ones left out."""
    out: list[tuple[int, int, float]] = []
    for col, d in enumerate(density):
        level = math.ceil(d * 10) / 10
        if out and out[-1][2] == level and out[-1][0] + out[-1][1] == col:
            out[-1] = (out[-1][0], out[-1][1] + 1, level)
        elif level:
            out.append((col, 1, level))
    return out


def _ticks(total_ms: float) -> list[float]:
    """About five round tick values from 0 to `total_ms`."""
    raw = total_ms / 5 or 1.0
    step = min((m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    return [i * step for i in range(int(total_ms / step) + 1)]


def _busy(spans: list[tuple[int, int]]) -> int:
    """Cycles covered by the union of `spans`."""
    total, reach = 0, None
    for a, b in sorted(spans):
        if reach is None or a > reach:
            total, reach = total + b - a, b
        elif b > reach:
            total, reach = total + b - reach, b
    return total


def timeline_svg(slices: list[Slice], clock_hz: float, title: str) -> str:
    """The SVG of one step's slices (cycles from the step's start)."""
    t0 = min(s.start for s in slices)
    cycles = max(s.end for s in slices) - t0 or 1
    scale = (WIDTH - LEFT - RIGHT) / cycles
    rows = [(CALL_TRACK, 0)] + sorted({(s.track, s.lane) for s in slices if s.track in QUEUES},
                                      key=lambda tl: (QUEUES.index(tl[0]), tl[1]))
    height = len(rows) * ROW + AXIS + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" font-family="system-ui,sans-serif" font-size="11" role="img">',
             f"<title>{html.escape(title)}</title>",
             f'<text x="0" y="12" font-weight="600">{html.escape(title)}</text>']
    for r, (track, lane) in enumerate(rows):
        y = 20 + r * ROW
        mine = [s for s in slices if (s.track, s.lane) == (track, lane)]
        name = "calls" if track == CALL_TRACK else track if lane == 0 else f"{track} +{lane}"
        parts.append(f'<text x="0" y="{y + ROW - 4}">{name}</text>')
        if track == CALL_TRACK:
            for k, s in enumerate(mine):
                parts.append(f'<rect x="{LEFT + (s.start - t0) * scale:.1f}" y="{y}" '
                             f'width="{max((s.end - s.start) * scale, 0.5):.1f}" height="{ROW - 2}" '
                             f'fill="{CALL_SHADES[k % 2]}"><title>{html.escape(s.name)}</title></rect>')
            continue
        density = _density([((s.start - t0) * scale, (s.end - t0) * scale) for s in mine], WIDTH - LEFT - RIGHT)
        for col, n, level in _runs(density):
            parts.append(f'<rect x="{LEFT + col}" y="{y}" width="{n}" height="{ROW - 2}" '
                         f'fill="{COLOURS.get(track, "#555")}" fill-opacity="{level:g}"/>')
        if lane == 0:
            share = _busy([(s.start, s.end) for s in slices if s.track == track]) / cycles
            parts.append(f'<text x="{WIDTH - RIGHT + 6}" y="{y + ROW - 4}">{share:.0%}</text>')
    base = 20 + len(rows) * ROW
    ms = cycles / clock_hz * 1e3
    for tick in _ticks(ms):
        x = LEFT + tick / ms * (WIDTH - LEFT - RIGHT)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="20" y2="{base + 4}" stroke="#999" stroke-width="0.5"/>')
        parts.append(f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle">{tick:g} ms</text>')
    parts.append("</svg>")
    return "\n".join(parts)
