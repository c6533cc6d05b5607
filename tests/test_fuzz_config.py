"""Seeded fuzzing of the config loaders: 2,000 mutations of the shipped files
load or are refused with one line naming the file; a few go through the CLI."""
from __future__ import annotations

import collections
import subprocess
import sys

import pytest

from dspflight import fuzz_configs

SEED, N = 11, 2000
LIMIT_S = 5.0         # the per-case bound (issue 11); a case near it is a hang in the making


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    return [fuzz_configs.run(c, folder, LIMIT_S) for c in fuzz_configs.cases(SEED, N)]


def test_every_mutation_loads_or_is_refused_in_one_line(results):
    bad = [f"case {r.case.index} ({r.case.source}, {r.case.mutation[:60]}): {r.outcome}: {r.detail[:200]}"
           for r in results if r.outcome not in ("loaded", "refused")]
    assert not bad, "\n".join(bad[:10])
    assert max(r.seconds for r in results) < LIMIT_S / 2


def test_the_mutations_cover_every_kind_and_outcome(results):
    """The generator reaches every shipped file and every mutation, and not all cases fail alike."""
    outcomes = collections.Counter(r.outcome for r in results)
    assert outcomes["loaded"] >= 50 and outcomes["refused"] >= N // 2
    sources = {r.case.source for r in results}
    assert sources == {name for _, name, _ in fuzz_configs.sources()}
    mutations = {m.split()[0] for r in results for m in r.case.mutation.split(" + ")}
    assert {"value", "delete", "add-key", "int-and-str-keys", "deep", "flip", "truncate", "non-utf8",
            "special"} <= mutations
    assert any(len(r.case.data) > 200_000 for r in results)        # 100k-deep nesting


def test_cases_are_reproducible():
    assert fuzz_configs.case(SEED, 123) == fuzz_configs.case(SEED, 123)
    assert fuzz_configs.case(SEED, 123) != fuzz_configs.case(SEED + 1, 123)


CLI_FLAG = {"model": "--model", "hardware": "--hw", "compression": "--compression"}


def test_refused_mutations_through_the_cli(results, tmp_path):
    """One refused case per kind the CLI takes: exit 2, one line naming the file, nothing written."""
    picked = {}
    for r in results:
        if r.outcome == "refused" and r.case.kind in CLI_FLAG:
            picked.setdefault((r.case.kind, r.case.suffix), r.case)
    assert len(picked) == 4      # model YAML, HF config.json, hardware, compression
    for (kind, _), case in sorted(picked.items()):
        path = tmp_path / f"case-{case.index}{case.suffix}"
        path.write_bytes(case.data)
        out = tmp_path / f"out-{case.index}"
        res = subprocess.run([sys.executable, "-m", "dspflight.cli", "compile", CLI_FLAG[kind], str(path),
                              "--decode", "16", "-o", str(out)], capture_output=True, text=True, timeout=60)
        lines = res.stderr.splitlines()
        assert res.returncode == 2 and len(lines) == 1, res.stderr
        assert lines[0].startswith("dspflight: error: ") and str(path) in lines[0], lines[0]
        assert not out.exists()
