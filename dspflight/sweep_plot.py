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
