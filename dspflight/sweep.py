"""Design-space exploration: `dspflight sweep SPEC.yaml -o DIR` on Dask.

A spec names a base (model, hardware, compression), the workloads, axes
(dotted paths into the hardware, model or compression config, each with a
list of values), a search (the full grid, random points of it, or an Optuna
study asking for points) and the objectives. Every point is its three configs given as data (errors name the
point), compiled once and simulated for every workload; the points whose
designs run one program (they differ only in fields the compiler never reads,
such as the clock) are one Dask task, which compiles it once. By
default on a LocalCluster of one single-threaded worker process per core,
or on any Dask scheduler by address. Results are one row per (point,
workload): the axis values, every scalar `summary.json` field, a point key
and an `error` column (a point that raises is a row, not the end of the
sweep). `results.parquet` and `results.csv` are rewritten atomically as
points finish (at most every `WRITE_EVERY_S`, and when the sweep ends or
is interrupted), so an interrupted sweep leaves a valid table and the same
command run again skips the points already in it. The non-dominated rows
by the objectives go to `pareto.csv`, `pareto.png` and `pareto.html`
(interactive, works offline).
"""
from __future__ import annotations

import copy
import hashlib
import io
import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from hwmodel.atomic import OutputSet
from hwmodel.configio import Fields, config_fields, load_mapping
from hwmodel.errors import ConfigError, DspflightError
from hwmodel.hwconfig import load_hw

ROOTS = {"hw": "hardware", "model": "models", "compression": "compression"}
CASES = {"flightllm": ((128, 512), (128, 1024), (128, 1536), (512, 512), (512, 1024), (512, 1536))}
OBJECTIVES = ("decode_tokens_per_s", "tokens_per_joule", "tokens_per_s_per_dollar", "prefill_ms",
              "decode_ms_per_token", "total_ms", "power_w", "hbm_bandwidth_utilization", "program_bytes")
MAX_POINTS = 100_000
MAX_BATCH = 4     # points per task at most: one compile serves them, and a sweep of one program still spreads
REFUSED_BATCH = 64   # points per task of designs the loader refuses (each takes a millisecond)
WRITE_EVERY_S = 2.0  # the tables are rewritten at most this often while a sweep runs (and when it ends)
REFUSED = "refused"  # the batch key of every design the loader refuses


@dataclass(frozen=True)
class Sweep:
    source: str
    base: dict                               # root -> the base config's mapping
    workloads: tuple[tuple[int, int], ...]
    axes: tuple[tuple[str, tuple], ...]      # (dotted path, values)
    search: dict
    objectives: tuple[tuple[str, str], ...]  # (summary field, "max" | "min")


def load_sweep(spec: str | Path | dict, source: str | None = None) -> Sweep:
    """A sweep spec from a YAML file or as data, every field checked before any work."""
    f = Fields(spec, source or "<sweep given as data>") if isinstance(spec, dict) else \
        Fields(load_mapping(spec), spec)
    f.check_known({"base", "workloads", "cases", "axes", "search", "objectives"})
    b = f.sub("base")
    b.check_known(set(ROOTS))
    base = {}
    for root, kind in ROOTS.items():
        try:
            fields, path = config_fields(kind, b.text(root))
        except ConfigError as exc:                    # an unknown name, a missing or bad file: say where
            raise b.error(root, str(exc)) from None
        if path.suffix == ".json":
            raise b.error(root, "a sweep's base model must be a model YAML (axes name its fields)")
        base[root] = fields.data
    axes = tuple(_axis(f, base, path) for path in f.sub("axes").data)
    if not axes:
        raise f.error("axes", "expected at least one axis")
    return Sweep(f.source, base, _workloads(f), axes, _search(f, axes), _objectives(f))


def _workloads(f: Fields) -> tuple[tuple[int, int], ...]:
    if f.has("cases"):
        return CASES[f.text("cases", choices=CASES)]
    raw = f.raw("workloads", [{"prefill": 128, "decode": 512}])
    if not isinstance(raw, list) or not raw:
        raise f.error("workloads", "expected a non-empty list of {prefill, decode}")
    out = []
    for i, item in enumerate(raw):
        w = Fields(item if isinstance(item, dict) else {}, f.source, f"workloads[{i}].")
        w.check_known({"prefill", "decode"})
        out.append((w.integer("prefill", lo=1, hi=1 << 20), w.integer("decode", lo=0, hi=1 << 20)))
    return tuple(out)


def _axis(f: Fields, base: dict, path: str) -> tuple[str, tuple]:
    """One axis: its path must name a field of the base config, its values that field's type."""
    axes = f.sub("axes")
    root, _, rest = str(path).partition(".")
    node = base.get(root)
    for key in rest.split(".") if rest else []:
        node = node.get(key) if isinstance(node, dict) else None
    if root not in ROOTS or node is None or isinstance(node, dict):
        raise axes.error(str(path), f"not a field of the base {ROOTS.get(root, 'hw, model or compression')} "
                                    f"config (expected a dotted path such as hw.mpe.chains)")
    values = axes.raw(path)
    if not isinstance(values, list) or not values:
        raise axes.error(path, "expected a non-empty list of values")
    kind = float if isinstance(node, float) else type(node)
    for v in values:
        ok = isinstance(v, kind) or (kind is float and isinstance(v, int))
        if not ok or isinstance(v, bool) != isinstance(node, bool):
            raise axes.error(path, f"expected values of the type of the base value {node!r}, got {v!r}")
    return path, tuple(values)


def _search(f: Fields, axes: tuple) -> dict:
    s = f.sub("search", {"mode": "grid"})
    s.check_known({"mode", "points", "seed", "trials"})
    mode = s.text("mode", "grid", choices=("grid", "random", "optuna"))
    size = int(np.prod([len(v) for _, v in axes], dtype=object))
    if mode == "grid" and size > MAX_POINTS:
        raise f.error("axes", f"the grid has {size} points, more than {MAX_POINTS}: use search.mode random")
    if mode == "random":
        return {"mode": mode, "points": s.integer("points", lo=1, hi=MAX_POINTS), "seed": s.integer("seed", 0, lo=0)}
    if mode == "optuna":
        return {"mode": mode, "trials": s.integer("trials", lo=1, hi=MAX_POINTS), "seed": s.integer("seed", 0, lo=0)}
    return {"mode": mode}


def _objectives(f: Fields) -> tuple[tuple[str, str], ...]:
    raw = f.raw("objectives", [{"decode_tokens_per_s": "max"}])
    if not isinstance(raw, list) or not raw:
        raise f.error("objectives", "expected a non-empty list of {field: max|min}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or len(item) != 1:
            raise f.error(f"objectives[{i}]", "expected one {field: max|min}")
        (name, sense), = item.items()
        if name not in OBJECTIVES or sense not in ("max", "min"):
            raise f.error(f"objectives[{i}]", f"expected one of {', '.join(OBJECTIVES)} with max or min, "
                                              f"got {name}: {sense}")
        out.append((name, sense))
    return tuple(out)


def points(sweep: Sweep) -> list[dict]:
    """The points to evaluate: the whole grid, or distinct random points of it."""
    paths = [p for p, _ in sweep.axes]
    grid = [v for _, v in sweep.axes]
    if sweep.search["mode"] == "grid":
        return [dict(zip(paths, combo)) for combo in itertools.product(*grid)]
    rng = np.random.default_rng(sweep.search["seed"])
    size = int(np.prod([len(v) for v in grid], dtype=object))
    seen, out = set(), []
    while len(out) < min(sweep.search["points"], size):
        pick = tuple(int(rng.integers(len(v))) for v in grid)
        if pick not in seen:
            seen.add(pick)
            out.append({p: v[i] for p, v, i in zip(paths, grid, pick)})
    return out


def point_key(sweep: Sweep, point: dict) -> str:
    """Identifies a point's result across runs: the base configs, workloads and axis values."""
    blob = json.dumps([sweep.base, sweep.workloads, sorted(point.items())], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def configs_of(sweep: Sweep, point: dict) -> dict:
    """The three config mappings of a point: the base with the point's values set."""
    maps = copy.deepcopy(sweep.base)
    for path, value in point.items():
        root, *keys = path.split(".")
        node = maps[root]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return maps


def batch_key(maps: dict) -> str:
    """Points with one key run one program (their designs differ only in fields the
    compiler never reads, `HwConfig.program_key`), so a task compiles it once.
    Designs the loader refuses share the key `REFUSED`: their task only records why."""
    try:
        hw = load_hw(maps["hw"]).program_key
    except DspflightError:
        return REFUSED
    return json.dumps([hw, maps["model"], maps["compression"]], sort_keys=True, default=str)


def evaluate(batch: list[tuple[dict, str]], workloads: tuple) -> list[list[dict]]:
    """Rows of each point of a batch (runs in a Dask worker): a program is compiled
    once per distinct `program_key` and every workload simulated from it on each design."""
    os.environ["DSPFLIGHT_WORKERS"] = "1"      # the cluster's workers already use every core
    from dspflight import api
    cases, compiled = list(workloads), {}
    out = []
    for maps, label in batch:
        try:
            hwc, m, comp = api.load_configs(maps["model"], maps["hw"], maps["compression"], label)
            if hwc.program_key not in compiled:
                compiled[hwc.program_key] = api.compile_cases(m, comp, hwc, cases)
            results = api.time_cases(compiled[hwc.program_key], hwc, cases)
        except DspflightError as exc:
            out.append([{"prefill_tokens": p, "decode_tokens": d, "error": str(exc)} for p, d in workloads])
            continue
        except Exception as exc:                      # a bug at one point must not end the sweep: record it
            out.append([{"prefill_tokens": p, "decode_tokens": d, "error": f"{label}: internal error: {exc!r}"}
                        for p, d in workloads])
            continue
        out.append([{k: v for k, v in sim.summary.items() if isinstance(v, (int, float, str)) or v is None}
                    | resource_columns(sim.summary["utilization"]) | {"design": hwc.fingerprint, "error": ""}
                    for _, _, sim in results])
    return out


def resource_columns(util: dict) -> dict:
    """`<resource>` (the estimate) and `<resource>_used` (of the device) per resource."""
    cols = {}
    for kind, r in util["resources"].items():
        cols[kind] = r["estimate"]
        cols[f"{kind}_used"] = r["fraction"]
    return cols


def pareto(df: pd.DataFrame, objectives: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """Per workload, the rows that no other row equals or beats in every objective
    while beating them in one."""
    ok = df[df["error"] == ""]
    keys = [c for c in ("prefill_tokens", "decode_tokens") if c in ok]
    if ok.empty or not keys:
        return ok
    fronts = [group[_non_dominated(group, objectives)] for _, group in ok.groupby(keys, sort=False)]
    return pd.concat(fronts)


def _non_dominated(rows: pd.DataFrame, objectives: tuple[tuple[str, str], ...]) -> np.ndarray:
    values = np.column_stack([rows[n].to_numpy(float) * (1 if s == "max" else -1) for n, s in objectives])
    keep = np.ones(len(values), bool)
    for start in range(0, len(values), 512):           # blocks keep the comparison matrices small
        block = values[start:start + 512]
        ge = (values[None, :, :] >= block[:, None, :]).all(axis=2)
        gt = (values[None, :, :] > block[:, None, :]).any(axis=2)
        keep[start:start + 512] = ~(ge & gt).any(axis=1)
    return keep


class _Grid:
    """Proposes the grid's (or the random draw's) points not in the table yet, in
    batches of the points that run one program (`batch_key`), and the refused
    designs in batches of their own."""

    def __init__(self, sweep: Sweep, table: pd.DataFrame):
        done = set(table["point"]) if not table.empty else set()
        todo = [(k, p) for k, p in ((point_key(sweep, p), p) for p in points(sweep)) if k not in done]
        self.total = len(todo)
        same: dict[str, list] = {}
        for key, point in todo:
            same.setdefault(batch_key(configs_of(sweep, point)), []).append((key, point))
        size = {REFUSED: REFUSED_BATCH}
        self.todo = iter([run[i:i + size.get(k, MAX_BATCH)] for k, run in same.items()
                          for i in range(0, len(run), size.get(k, MAX_BATCH))])

    def propose(self) -> list[tuple[str, dict]] | None:
        return next(self.todo, None)

    def learn(self, point: dict, rows: list[dict]) -> None:
        pass


class _Optuna:
    """Asks an Optuna study (TPE, one direction per objective) for points; finished
    rows already in the table are told to it first, so a re-run goes on from there."""

    def __init__(self, sweep: Sweep, table: pd.DataFrame):
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna, self.sweep = optuna, sweep
        self.dist = {p: optuna.distributions.CategoricalDistribution(v) for p, v in sweep.axes}
        self.study = optuna.create_study(directions=[("maximize" if s == "max" else "minimize")
                                                     for _, s in sweep.objectives],
                                         sampler=optuna.samplers.TPESampler(seed=sweep.search["seed"]))
        self.known: dict[str, list | None] = {}
        for key, rows in (table.groupby("point") if not table.empty else []):
            point = {c[5:]: _native(rows.iloc[0][c]) for c in rows.columns if c.startswith("axis:")}
            self._tell_new(key, point, self._values(rows.to_dict("records")))
        self.total = max(0, sweep.search["trials"] - len(self.known))
        self.asked = 0
        self.trials: dict[str, object] = {}

    def _values(self, rows: list[dict]) -> list[float] | None:
        """Objective values of a point: the mean over its workloads; None if it failed."""
        if not rows or any(r.get("error") for r in rows):
            return None
        return [float(np.mean([r[n] for r in rows])) for n, _ in self.sweep.objectives]

    def _tell_new(self, key: str, point: dict, values: list | None) -> None:
        state = self.optuna.trial.TrialState.COMPLETE if values else self.optuna.trial.TrialState.FAIL
        self.study.add_trial(self.optuna.trial.create_trial(params=point, distributions=self.dist, values=values,
                                                            state=state))
        self.known[key] = values

    def propose(self) -> list[tuple[str, dict]] | None:
        """A point not evaluated yet (a batch of one: the study learns from each);
        trials count distinct points (a small space may run out)."""
        attempts = 0
        while self.asked < self.total and attempts < 1000:
            trial = self.study.ask(self.dist)
            attempts += 1
            key = point_key(self.sweep, trial.params)
            if key in self.known or key in self.trials:        # asked again for a point already known
                self.study.tell(trial, self.known.get(key), state=None if self.known.get(key) else
                                self.optuna.trial.TrialState.FAIL)
                continue
            self.trials[key] = trial
            self.asked += 1
            return [(key, dict(trial.params))]
        return None

    def learn(self, point: dict, rows: list[dict]) -> None:
        key = point_key(self.sweep, point)
        values = self._values(rows)
        self.known[key] = values
        trial = self.trials.pop(key)
        if values:
            self.study.tell(trial, values)
        else:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)


def run_sweep(sweep: Sweep, out: str | Path, scheduler: str | None = None, workers: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Evaluate the points not yet in `out`'s table on Dask; returns the whole table."""
    from dask.distributed import Client, LocalCluster, as_completed
    out = Path(out)
    table = _read_table(out)
    source = (_Optuna if sweep.search["mode"] == "optuna" else _Grid)(sweep, table)
    if not source.total:
        _write(out, table, sweep, plots=True)
        return table
    cluster = None if scheduler else LocalCluster(n_workers=workers or len(os.sched_getaffinity(0)),
                                                  threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with Client(scheduler or cluster) as client:
            futures: dict = {}
            pending = as_completed()

            def submit() -> bool:
                batch = source.propose()
                if batch is None:
                    return False
                fut = client.submit(evaluate, [(configs_of(sweep, p), _label(p)) for _, p in batch],
                                    sweep.workloads, pure=False, key=f"sweep-points-{batch[0][0]}")
                futures[fut] = batch
                pending.add(fut)
                return True

            slots = max(1, sum(client.nthreads().values())) if sweep.search["mode"] == "optuna" else source.total
            for _ in range(slots):
                if not submit():
                    break
            finished, written = 0, time.monotonic()
            for fut in pending:
                batch = futures.pop(fut)
                rows = []
                for (key, point), result in zip(batch, fut.result()):
                    source.learn(point, result)
                    rows += [{"point": key, **{f"axis:{a}": v for a, v in point.items()}, **r} for r in result]
                table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
                if time.monotonic() - written >= WRITE_EVERY_S:
                    _write(out, table, sweep, plots=False)
                    written = time.monotonic()
                submit()
                finished += len(batch)
                if progress:
                    progress(finished, source.total)
    finally:
        if cluster is not None:
            cluster.close()
        if not table.empty:
            _write(out, table, sweep, plots=True)      # also after Ctrl-C: what finished
    return table


def _native(value):
    """A table cell as the Python value the spec gave (numpy scalars compare and hash apart)."""
    return value.item() if hasattr(value, "item") else value


def _label(point: dict) -> str:
    return "sweep point (" + ", ".join(f"{k}={v}" for k, v in point.items()) + ")"


def _read_table(out: Path) -> pd.DataFrame:
    path = out / "results.parquet"
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a sweep table ({exc}); remove it to start afresh") from None


def _write(out: Path, table: pd.DataFrame, sweep: Sweep, plots: bool) -> None:
    """results.parquet/.csv and pareto.csv (and with `plots` pareto.png/.html), replaced at once."""
    from dspflight.sweep_plot import pareto_html, pareto_png
    table = table.assign(error=table["error"].fillna("")) if "error" in table else table
    front = pareto(table, sweep.objectives)
    with OutputSet(out) as files:
        buf = io.BytesIO()
        table.to_parquet(buf, index=False)
        files.add_bytes("results.parquet", buf.getvalue())
        files.add_text("results.csv", table.to_csv(index=False))
        files.add_text("pareto.csv", front.to_csv(index=False))
        if plots:
            files.add_bytes("pareto.png", pareto_png(table, front, sweep.objectives))
            files.add_text("pareto.html", pareto_html(table, front, sweep.objectives))
        files.commit()


def best_lines(table: pd.DataFrame, sweep: Sweep) -> list[str]:
    """The best point per objective, one line each."""
    ok = table[table["error"] == ""] if "error" in table else table
    lines = []
    for name, sense in sweep.objectives:
        if ok.empty:
            break
        row = ok.loc[ok[name].idxmax() if sense == "max" else ok[name].idxmin()]
        axes = ", ".join(f"{c[5:]}={row[c]}" for c in ok.columns if c.startswith("axis:"))
        lines.append(f"best {name} ({sense}): {row[name]:.4g} at {axes} "
                     f"(prefill {row['prefill_tokens']}, decode {row['decode_tokens']})")
    return lines
