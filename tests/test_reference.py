"""The reference: what the FP16 special-function unit costs against ideal
float64 special functions (the bounds docs/numerics.md states), and the
reference's own attention mask."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.attention_mask import kept_ranges
from compiler.checkpoint import load_checkpoint, write_random_llama
from compiler.compression import load_compression
from compiler.model_config import load_model
from compiler.attention_mask import attention_keys
from compiler.quantize import compress
from dspflight.reference import FP16_MAX_DIFF, FP16_MEAN_DIFF, Reference
from hwmodel.errors import DspflightError



@pytest.fixture(scope="module")
def tiny(tmp_path_factory, u280):
    ck = load_checkpoint(write_random_llama(tmp_path_factory.mktemp("ck") / "tiny", load_model("tiny"), seed=0))
    return compress(ck, load_compression("flightllm", u280), np.random.default_rng(0).integers(0, 512, (4, 64)))


def run(cm, sfu, forced=None):
    states = {}
    tokens = Reference(cm, sfu).generate(list(range(100, 116)), 16, 16,
                                         lambda ph, p, layer, x: states.__setitem__((p, layer), x), forced)
    return tokens, states


def test_fp16_unit_stays_within_the_stated_bound_of_ideal_special_functions(tiny):
    tokens, fp16 = run(tiny, "fp16")
    ideal_tokens, ideal = run(tiny, "float64", forced=tokens)
    worst = max(np.abs(fp16[k] - ideal[k]).max() for k in fp16)
    assert 0 < worst <= FP16_MAX_DIFF
    assert max(np.abs(fp16[k] - ideal[k]).mean() for k in fp16) <= FP16_MEAN_DIFF
    assert np.mean(np.array(tokens) == np.array(ideal_tokens)) >= 0.75


def test_mask_keys_are_the_kept_blocks_up_to_the_query():
    assert list(attention_keys(5, 64, 0.5)) == list(range(6))
    keys = attention_keys(150, 64, 0.5)                  # block 2 keeps the sink and itself, skips block 1
    assert list(keys) == list(range(64)) + list(range(128, 151))
    assert [(s, e) for s, e in kept_ranges(2, 0.5, 64, 151)] == [(0, 64), (128, 151)]


def test_residual_stream_is_saturating_int8(tiny):
    _, states = run(tiny, "fp16")
    assert all(np.abs(x).max() <= 127 for x in states.values())


def test_unknown_sfu_mode_is_an_error(tiny):
    with pytest.raises(DspflightError, match="sfu must be fp16 or float64"):
        Reference(tiny, "bf16")
