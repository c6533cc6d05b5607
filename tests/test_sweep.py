"""Design-space exploration: spec checks, a sweep on a LocalCluster and on a scheduler with two workers,
failing points as rows, resume, Pareto fronts."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dspflight.sweep import MAX_BATCH, _Grid, _label, configs_of, evaluate, load_sweep, pareto, points, run_sweep
from hwmodel.errors import ConfigError

pytestmark = pytest.mark.sim

SPEC = {"base": {"model": "tiny", "hw": "u280", "compression": "flightllm"},
        "workloads": [{"prefill": 16, "decode": 8}, {"prefill": 16, "decode": 24}],
        "axes": {"hw.mpe.chains": [32, 64, 100000], "hw.slrs": [1, 3]},
        "objectives": [{"decode_tokens_per_s": "max"}, {"tokens_per_joule": "max"}]}


def write_spec(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("edit,message", [
    (lambda s: s["axes"].update({"hw.mpe.chainz": [1]}), r"field axes.hw.mpe.chainz: not a field of the base hardware"),
    (lambda s: s["axes"].update({"hw.mpe.chains": ["many"]}), r"field axes.hw.mpe.chains: expected values of the type"),
    (lambda s: s["axes"].update({"hw.slrs": []}), r"field axes.hw.slrs: expected a non-empty list"),
    (lambda s: s.update(objectives=[{"speed": "max"}]), r"field objectives\[0\]: expected one of"),
    (lambda s: s.update(search={"mode": "annealing"}), r"field search.mode: expected one of"),
])
def test_a_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path, edit, message, capsys):
    from dspflight.cli import main
    spec = yaml.safe_load(yaml.safe_dump(SPEC))
    edit(spec)
    path = write_spec(tmp_path, spec)
    with pytest.raises(ConfigError, match=message):
        load_sweep(path)
    assert main(["sweep", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "spec.yaml: field" in err
    assert not (tmp_path / "out").exists()


def test_grid_and_random_points():
    spec = load_sweep(SPEC)
    assert len(points(spec)) == 6
    random = load_sweep(dict(SPEC, search={"mode": "random", "points": 4, "seed": 1}))
    pts = points(random)
    assert len(pts) == 4 and len({tuple(p.values()) for p in pts}) == 4
    assert pts == points(random)                        # seeded


def test_pareto_keeps_exactly_the_non_dominated_rows_per_workload():
    df = pd.DataFrame({"a": [1, 2, 3, 3, 0, 9], "b": [3, 2, 1, 1, 0, 9], "error": [""] * 5 + ["bad"],
                       "prefill_tokens": 16, "decode_tokens": 8})
    front = pareto(df, (("a", "max"), ("b", "max")))
    assert sorted(front.index) == [0, 1, 2, 3]          # ties are not dominated; (0, 0) is; errors never count
    assert list(pareto(df, (("a", "min"), ("b", "min"))).index) == [4]
    other = df.assign(decode_tokens=24, a=df["a"] - 10)  # a second workload has its own front
    assert sorted(pareto(pd.concat([df, other], ignore_index=True), (("a", "max"), ("b", "max"))).index) == \
        [0, 1, 2, 3, 6, 7, 8, 9]
    rng = pd.DataFrame({"a": range(1500), "b": range(1500, 0, -1), "error": "", "prefill_tokens": 1,
                        "decode_tokens": 1})
    assert len(pareto(rng, (("a", "max"), ("b", "max")))) == 1500   # all on the front, in blocks


def check_rows(table: pd.DataFrame) -> None:
    assert len(table) == 12                              # 6 points x 2 workloads
    bad = table[table["error"] != ""]
    assert len(bad) == 4 and (bad["axis:hw.mpe.chains"] == 100000).all()
    assert bad["error"].str.contains(r"sweep point \(hw.mpe.chains=100000, hw.slrs=\d\): field mpe.chains").all()
    ok = table[table["error"] == ""]
    assert (ok["decode_tokens_per_s"] > 0).all() and set(ok["decode_tokens"]) == {8, 24}
    # more chains decode faster on the same number of cores
    one = ok[(ok["axis:hw.slrs"] == 1) & (ok["decode_tokens"] == 24)].set_index("axis:hw.mpe.chains")
    assert one.loc[64, "decode_tokens_per_s"] > one.loc[32, "decode_tokens_per_s"]


def test_sweep_on_a_local_cluster_records_failures_and_resumes(tmp_path):
    spec = load_sweep(write_spec(tmp_path, SPEC))
    out = tmp_path / "out"
    t0 = time.perf_counter()
    table = run_sweep(spec, out, workers=2)
    first = time.perf_counter() - t0
    check_rows(table)
    on_disk = pd.read_parquet(out / "results.parquet")
    assert len(on_disk) == 12 and len(pd.read_csv(out / "results.csv")) == 12
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG" and len(pd.read_csv(out / "pareto.csv")) >= 1
    t0 = time.perf_counter()
    again = run_sweep(spec, out, workers=2)
    assert len(again) == 12 and time.perf_counter() - t0 < first


def test_points_that_run_one_program_are_one_task_and_give_the_rows_of_single_points():
    """Clock variants batch (at most MAX_BATCH a task); refused designs are a batch of
    their own, each point with its error; a batch's rows equal those of each point
    evaluated alone."""
    spec = load_sweep(dict(SPEC, axes={"hw.mpe.chains": [32, 100000], "hw.clock_mhz": [150, 200, 225, 250, 300]},
                           workloads=[{"prefill": 16, "decode": 24}]))
    batches = list(_Grid(spec, pd.DataFrame()).todo)
    assert sorted(len(b) for b in batches) == [1, MAX_BATCH, 5]
    refused = max(batches, key=len)
    assert all(p["hw.mpe.chains"] == 100000 for _, p in refused)
    errors = [rows[0]["error"] for rows in evaluate([(configs_of(spec, p), _label(p)) for _, p in refused],
                                                     spec.workloads)]
    assert all(f"hw.clock_mhz={p['hw.clock_mhz']}" in e and "DSP" in e for (_, p), e in zip(refused, errors)), errors
    big = next(b for b in batches if len(b) == MAX_BATCH)
    assert all(p["hw.mpe.chains"] == 32 for _, p in big)
    together = evaluate([(configs_of(spec, p), _label(p)) for _, p in big], spec.workloads)
    alone = [evaluate([(configs_of(spec, p), _label(p))], spec.workloads)[0] for _, p in big]
    timing_free = lambda rows: [{k: v for k, v in r.items() if k not in ("compile_s", "simulate_s")} for r in rows]
    assert [timing_free(r) for r in together] == [timing_free(r) for r in alone]
    assert len({r[0]["decode_tokens_per_s"] for r in together}) == MAX_BATCH      # the clock matters


def kill_a_busy_worker(address: str, done: threading.Event) -> dict:
    """Once a worker is evaluating a batch of points, SIGKILL its process (its nanny starts a
    new one); returns which worker and point."""
    from dask.distributed import Client
    with Client(address, timeout=60) as client:
        pids = client.run(os.getpid, nanny=False)
        while not done.is_set():
            busy = {w: tasks for w, tasks in client.processing().items() if tasks}
            if busy:
                worker, tasks = next(iter(busy.items()))
                os.kill(pids[worker], signal.SIGKILL)
                return {"worker": worker, "tasks": list(tasks)}
            time.sleep(0.02)
    return {}


def test_sweep_through_a_dask_scheduler_and_two_workers_on_loopback(tmp_path):
    """Two `dask worker` processes on a `dask scheduler`; one is killed while it
    evaluates a point: the scheduler retries the point on a worker and the
    table is complete."""
    bin_dir = Path(sys.executable).parent
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--scheduler-file", str(sched_file), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(200):
            if sched_file.exists() and sched_file.read_text().strip():
                break
            time.sleep(0.1)
        address = yaml.safe_load(sched_file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nworkers", "1",
                                           "--nthreads", "1", "--no-dashboard"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from dask.distributed import Client
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            workers = len(client.scheduler_info()["workers"])
        assert workers == 2
        done = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            killed = pool.submit(kill_a_busy_worker, address, done)
            try:
                table = run_sweep(load_sweep(write_spec(tmp_path, SPEC)), tmp_path / "out", scheduler=address)
            finally:
                done.set()
            kill = killed.result(timeout=60)
        assert kill and any(t.startswith("sweep-points-") for t in kill["tasks"]), kill
        check_rows(table)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_pareto_html_renders_offline_in_chromium_without_console_errors(tmp_path):
    from conftest import non_blank, render_in_chromium
    spec = load_sweep(dict(SPEC, axes={"hw.mpe.chains": [32, 64]}, workloads=[{"prefill": 16, "decode": 8}]))
    out = tmp_path / "out"
    run_sweep(spec, out, workers=1)
    html = (out / "pareto.html").read_text()
    assert "<script src=\"http" not in html                  # the JavaScript is inlined: works offline
    shot = tmp_path / "pareto-shot.png"
    assert render_in_chromium(out / "pareto.html", shot) == []
    assert non_blank(shot)
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body></body></html>")
    render_in_chromium(blank, tmp_path / "blank.png")
    assert not non_blank(tmp_path / "blank.png")               # the check can fail
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>throw new Error('boom')</script></body></html>")
    assert any("boom" in line for line in render_in_chromium(broken, tmp_path / "broken.png"))


def test_optuna_search_runs_its_trials_and_resumes(tmp_path):
    spec = load_sweep(dict(SPEC, search={"mode": "optuna", "trials": 4, "seed": 0}))
    out = tmp_path / "out"
    table = run_sweep(spec, out, workers=2)
    assert table["point"].nunique() == 4 and len(table) == 8
    more = load_sweep(dict(SPEC, search={"mode": "optuna", "trials": 6, "seed": 0}))
    table = run_sweep(more, out, workers=2)
    assert table["point"].nunique() == 6                  # two more trials, the first four told from the table
