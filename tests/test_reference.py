"""The reference: independent of the compiler and the simulator (by its imports
and in effect: a compiler-side bug it no longer shares is caught), its own
rules as docs/numerics.md states them, and what the FP16 special-function unit
costs against ideal float64 special functions (the bounds docs/numerics.md
states)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import compiler.attention_mask
import compiler.weights.pack
from compiler.attention_mask import kept_ranges
from compiler.model_config import load_model
from compiler.weights.checkpoint import load_checkpoint, write_random_llama
from compiler.weights.compress import compress
from compiler.weights.profile import load_compression
from dspflight import reference
from dspflight.api import execute
from dspflight.reference import (FP16_MAX_REL, FP16_MEAN_REL, Reference, attended_keys, attention_output_order,
                                 dequantize)
from hwmodel.errors import DspflightError

FORBIDDEN = ("compiler", "sim")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_random_llama(tmp_path_factory.mktemp("ck") / "tiny", load_model("tiny"), seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir, u280):
    ck = load_checkpoint(tiny_dir)
    return compress(ck, load_compression("flightllm", u280), np.random.default_rng(0).integers(0, 512, (4, 64)))


def run(cm, sfu, forced=None):
    states = {}
    tokens = Reference(cm, sfu).generate(list(range(100, 116)), 16, 16,
                                         lambda ph, p, layer, x: states.__setitem__((p, layer), x), forced)
    return tokens, states


# ---- independence -------------------------------------------------------------------
def imported_modules(source: str) -> list[str]:
    """Every module an import statement names, anywhere in `source` (functions included)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in FORBIDDEN]


def test_import_scan_sees_every_form():
    src = ("import compiler\nimport sim.functional as f\nfrom compiler.quantize import dequantize\n"
           "from sim import engine\nimport numpy, compiler.weights.pack\ndef f():\n    from compiler import pack\n"
           "from hwmodel.isa import INT8_MAX\nimport simulation\n")
    assert forbidden(imported_modules(src)) == ["compiler", "sim.functional", "compiler.quantize", "sim",
                                                "compiler.weights.pack", "compiler"]


def test_reference_imports_nothing_from_compiler_or_sim():
    assert forbidden(imported_modules(Path(reference.__file__).read_text())) == []


def test_importing_the_reference_loads_no_compiler_or_sim_module():
    # a fresh interpreter: the test session has imported the compiler already
    code = ("import sys, dspflight.reference; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('compiler', 'sim')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def drop_sink(kept_blocks):
    """A compiler mask that keeps one block fewer: not the attention sink, when it has others."""
    return lambda query_block, density: kept_blocks(query_block, density)[1:] or [0]


# A compiler-side rule the reference re-derives instead of importing, broken on the
# compiler's side only. Each run is a prefix of one that agrees bit for bit in
# tests/test_functional.py (16 + 16 tokens; 128 + 8 in chunks of 64).
BROKEN = {
    "rope frequency": (compiler.weights.pack, "rope_inv_freq", lambda f: lambda hd, theta: f(hd, theta) * 1.001,
                       dict(prefill=16, decode=2)),
    "score scale": (compiler.weights.pack, "score_scale", lambda f: lambda cm, layer: f(cm, layer) * np.float32(1.01),
                    dict(prefill=16, decode=2)),
    "mask one block fewer": (compiler.attention_mask, "kept_blocks", drop_sink,
                             dict(prefill=128, decode=2, chunk=64)),
}


@pytest.mark.sim
@pytest.mark.parametrize("bug", BROKEN)
def test_a_compiler_bug_the_reference_does_not_share_is_caught(tiny_dir, monkeypatch, bug):
    module, name, breaks, run_args = BROKEN[bug]
    monkeypatch.setattr(module, name, breaks(getattr(module, name)))
    r = execute(tiny_dir, "vhk158", **run_args)
    assert not r.exact
    assert max(a.max_abs for a in r.layers) > 0


# ---- the reference's own rules (docs/numerics.md) ------------------------------------
def test_mask_keys_are_the_kept_blocks_up_to_the_query():
    assert list(attended_keys(5, 64, 0.5)) == list(range(6))
    keys = attended_keys(150, 64, 0.5)                   # block 2 keeps the sink and itself, skips block 1
    assert list(keys) == list(range(64)) + list(range(128, 151))
    keys = attended_keys(25 * 64 - 1, 64, 0.28)          # 0.28 x 25 = 7.000000000000001 in binary64: 8 blocks
    assert list(keys) == list(range(64)) + list(range(18 * 64, 25 * 64))


@pytest.mark.parametrize("density", [0.23, 0.28, 0.3, 0.45, 0.6, 1.0])
def test_mask_agrees_with_the_compilers(density):
    # if they ever differ, docs/numerics.md decides which one is wrong
    for pos in range(2048):
        ranges = kept_ranges(pos // 64, density, 64, pos + 1)
        assert list(attended_keys(pos, 64, density)) == [k for s, e in ranges for k in range(s, e)], pos


def test_dequantize_groups_kept_weights_in_the_given_order():
    q = SimpleNamespace(codes=np.array([[3, 0, 5, 7]], np.uint8), mask=np.array([[True, False, True, True]]),
                        scales=np.array([[3, 2]], np.uint8), zeros=np.array([[4, 1]], np.uint8))
    assert dequantize(q, 2, np.arange(4)).tolist() == [[-3, 0, 3, 12]]          # groups (0, 2) and (3,)
    assert dequantize(q, 2, np.array([3, 2, 1, 0])).tolist() == [[4, 0, 3, 9]]  # groups (3, 2) and (0,)


def test_dequantize_reads_the_difference_as_8_bit_twos_complement():
    # what a corrupt record could hold; a compiled one keeps |code - zero| <= 127
    q = SimpleNamespace(codes=np.array([[255, 0, 0]], np.uint8), mask=np.ones((1, 3), bool),
                        scales=np.array([[1]], np.uint8), zeros=np.array([[0]], np.uint8))
    assert dequantize(q, 4, np.arange(3)).tolist() == [[-1, 0, 0]]
    q.zeros[:] = 128
    assert dequantize(q, 4, np.arange(3)).tolist() == [[127, -128, -128]]


def test_attention_output_order_is_panels_of_query_heads_per_kv_head():
    m = SimpleNamespace(hidden=128, heads=4, kv_heads=2)                       # head_dim 32, 2 heads per KV head
    order = attention_output_order(m)
    assert order[[0, 15, 16, 32, 48, 64]].tolist() == [0, 15, 32, 16, 48, 64]
    assert sorted(order) == list(range(128))


# ---- what the FP16 unit costs ----------------------------------------------------------
def test_fp16_unit_stays_within_the_stated_bound_of_ideal_special_functions(tiny):
    tokens, fp16 = run(tiny, "fp16")
    ideal_tokens, ideal = run(tiny, "float64", forced=tokens)
    diff = {k: np.abs(fp16[k].astype(np.float64) - ideal[k]) for k in fp16}
    worst = max(diff[k].max() / np.abs(ideal[k].astype(np.float64)).max() for k in fp16)
    assert 0 < worst <= FP16_MAX_REL
    assert max(diff[k].mean() / np.abs(ideal[k].astype(np.float64)).mean() for k in fp16) <= FP16_MEAN_REL
    assert np.mean(np.array(tokens) == np.array(ideal_tokens)) >= 0.75


def test_residual_stream_is_fp16(tiny):
    _, states = run(tiny, "fp16")
    assert all(x.dtype == np.float16 and np.isfinite(x).all() for x in states.values())


def test_unknown_sfu_mode_is_an_error(tiny):
    with pytest.raises(DspflightError, match="sfu must be fp16 or float64"):
        Reference(tiny, "bf16")
