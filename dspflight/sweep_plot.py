"""The Pareto plot of a sweep: every feasible row, the front drawn over it,
infeasible points (a design the loader refused, a model that does not fit)
counted apart since they have no figures to place."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)
import pandas as pd  # noqa: E402


def pareto_png(table: pd.DataFrame, front: pd.DataFrame, objectives: tuple[tuple[str, str], ...]) -> bytes:
    ok = table[table["error"] == ""] if "error" in table else table
    bad = len(table) - len(ok)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    (x, xs), *rest = objectives
    if rest:
        y, ys = rest[0]
        ax.scatter(ok[x], ok[y], s=14, color="#9ab", label=f"{len(ok)} feasible rows")
        f = front.sort_values(x)
        ax.plot(f[x], f[y], "o-", color="#c33", ms=5, label=f"Pareto front ({len(front)} rows, all objectives)")
        ax.set_ylabel(f"{y} ({ys})")
    else:
        ax.scatter(range(len(ok)), ok[x], s=14, color="#9ab", label=f"{len(ok)} feasible rows")
        ax.scatter(front.index.map(list(ok.index).index), front[x], color="#c33", label="best")
        ax.set_ylabel(f"{x} ({xs})")
        x = "row"
    ax.set_xlabel(x if not rest else f"{x} ({xs})")
    ax.set_title(f"sweep: {len(table)} rows, {bad} infeasible (not plotted)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def pareto_html(table: pd.DataFrame, front: pd.DataFrame, objectives: tuple[tuple[str, str], ...]) -> str:
    """An interactive plot that works offline (plotly's JavaScript inlined): hover a
    point for its axis values and figures."""
    import plotly.graph_objects as go
    ok = table[table["error"] == ""] if "error" in table else table
    axes = [c for c in table.columns if c.startswith("axis:")]
    (x, xs), *rest = objectives
    y, ys = rest[0] if rest else (x, xs)
    hover = [c for c in axes + ["prefill_tokens", "decode_tokens"] + [n for n, _ in objectives] if c in ok]
    fig = go.Figure()
    for rows, name, color in ((ok, f"{len(ok)} feasible rows", "#9ab"), (front, "Pareto front", "#c33")):
        fig.add_trace(go.Scatter(x=rows[x] if rest else list(range(len(rows))), y=rows[y], mode="markers",
                                 name=name, marker={"color": color, "size": 8},
                                 customdata=rows[hover].astype(str).to_numpy(),
                                 hovertemplate="<br>".join(f"{c}: %{{customdata[{i}]}}" for i, c in enumerate(hover))
                                 + "<extra></extra>"))
    fig.update_layout(title=f"sweep: {len(table)} rows, {len(table) - len(ok)} infeasible (not plotted)",
                      xaxis_title=f"{x} ({xs})" if rest else "row", yaxis_title=f"{y} ({ys})",
                      template="plotly_white")
    return fig.to_html(include_plotlyjs=True, full_html=True)
