"""Checkpoints: Hugging Face LLaMA/OPT directories through safetensors, clear
one-line errors naming the bad tensor, and the compressed checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from compiler.model_config import load_model
from compiler.weights.checkpoint import expected_shapes, load_checkpoint, write_random_llama
from compiler.weights.compress import compress
from compiler.weights.compressed import load_compressed, save_compressed
from compiler.weights.profile import load_compression
from compiler.weights.quantize import QMAX, dequantize, head_panel_order, prune_mask, quantize_linear
from hwmodel.errors import CheckpointError


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_random_llama(tmp_path_factory.mktemp("ck") / "tiny", load_model("tiny"), seed=3)


def edited(tmp_path, src, edit):
    """A copy of checkpoint `src` with its tensors passed through `edit(dict)`."""
    dst = tmp_path / "edited"
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    tensors = load_file(str(src / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"))
    return dst


def test_random_llama_round_trips_with_the_tiny_shapes(tiny_dir):
    ck = load_checkpoint(tiny_dir)
    tiny = load_model("tiny")
    assert (ck.model.hidden, ck.model.heads, ck.model.kv_heads, ck.model.ffn, ck.model.vocab, ck.model.layers) == \
           (tiny.hidden, tiny.heads, tiny.kv_heads, tiny.ffn, tiny.vocab, tiny.layers) == (256, 4, 2, 512, 512, 2)
    assert ck.model.name == "tiny" and ck.rope_theta == 10000.0 and ck.norm_eps == 1e-5
    assert set(ck.weights) == set(expected_shapes(tiny))
    assert ck.weights["model.layers.1.self_attn.k_proj.weight"].shape == (128, 256)   # GQA: 2 KV heads of 64


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.pop("model.layers.1.mlp.up_proj.weight"),
     r"tensor model.layers.1.mlp.up_proj.weight is missing \(expected shape \[512, 256\]\)"),
    (lambda t: t.__setitem__("model.norm.weight", np.ones(255, np.float32)),
     r"tensor model.norm.weight has shape \[255\], expected \[256\]"),
    (lambda t: t["model.layers.0.self_attn.o_proj.weight"].__setitem__((3, 4), np.nan),
     r"tensor model.layers.0.self_attn.o_proj.weight contains NaN"),
])
def test_bad_checkpoint_is_one_line_naming_the_tensor(tmp_path, tiny_dir, edit, message):
    bad = edited(tmp_path, tiny_dir, edit)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)


def test_lm_head_tied_to_the_embedding_is_accepted(tmp_path, tiny_dir):
    bad = edited(tmp_path, tiny_dir, lambda t: t.pop("lm_head.weight"))
    ck = load_checkpoint(bad)
    assert np.array_equal(ck.weights["lm_head.weight"], ck.weights["model.embed_tokens.weight"])


def test_opt_style_checkpoint_loads(tmp_path):
    config = {"model_type": "opt", "_name_or_path": "facebook/opt-tiny", "hidden_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "ffn_dim": 256, "vocab_size": 100,
              "max_position_embeddings": 32, "activation_function": "relu"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    ck_model = load_model(tmp_path / "config.json")
    rng = np.random.default_rng(0)
    tensors = {k: rng.standard_normal(s).astype(np.float32) for k, s in expected_shapes(ck_model).items()
               if k != "lm_head.weight"}                  # OPT ties its LM head to the embedding
    save_file(tensors, str(tmp_path / "model.safetensors"))
    ck = load_checkpoint(tmp_path)
    assert ck.model.norm == "layernorm" and ck.model.positional == "learned"
    assert ck.weights["model.decoder.embed_positions.weight"].shape == (34, 64)
    assert np.array_equal(ck.weights["lm_head.weight"], tensors["model.decoder.embed_tokens.weight"])


def test_missing_config_and_damaged_file(tmp_path, tiny_dir):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text((tiny_dir / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read safetensors"):
        load_checkpoint(tmp_path)


def test_n16_pruning_keeps_the_largest_per_row_block():
    w = np.random.default_rng(1).standard_normal((8, 64))
    mask = prune_mask(w, 4)
    assert (mask.reshape(8, 4, 16).sum(axis=2) == 4).all()
    blocks, kept = np.abs(w).reshape(8, 4, 16), mask.reshape(8, 4, 16)
    assert (np.where(kept, blocks, np.inf).min(axis=2) >= np.where(kept, -np.inf, blocks).max(axis=2)).all()


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_group_quantization_error_shrinks_with_bits(bits):
    w = np.random.default_rng(2).standard_normal((16, 256))
    q = quantize_linear(w, 16, bits, 128)
    assert q.scales.shape == (16, 2) and q.codes.max() < 2**bits       # m per group of 128
    diff = q.codes.astype(int) - np.repeat(q.zeros.astype(int), 128, axis=1)
    assert np.abs(diff).max() <= QMAX                                  # the DSP's INT8 operand never wraps
    if bits == 8:
        assert (q.zeros == 128).all()                                  # symmetric
    units = dequantize(q, 128)
    assert np.array_equal(units, q.scales.repeat(128, axis=1).astype(int) * diff)
    err = np.abs(units * q.row_scale[:, None] - w).max() / np.abs(w).max()
    assert err < {2: 0.6, 3: 0.25, 4: 0.12, 8: 0.01}[bits]


def test_compressed_checkpoint_round_trips(tmp_path, tiny_dir, u280):
    ck = load_checkpoint(tiny_dir)
    cm = compress(ck, load_compression("flightllm", u280), np.random.default_rng(0).integers(0, 512, (2, 32)))
    assert cm.linears["L0.down"].n == 16 and cm.linears["L0.o"].bits == 3     # the profile's per-op formats
    assert np.array_equal(cm.linears["L0.o"].order, head_panel_order(cm.model))
    assert (cm.linears["L1.q"].mask.reshape(256, 16, 16).sum(axis=2) == 16).all()
    path = save_compressed(cm, tmp_path / "tiny.cmp.safetensors")
    back = load_compressed(path)
    assert back.model == cm.model and back.scales == cm.scales
    assert back.attn_density == cm.attn_density == (0.30, 0.30)    # flightllm's default for a 2-layer model
    for name, q in cm.linears.items():
        assert np.array_equal(dequantize(back.linears[name], 128), dequantize(q, 128)), name
    tensors = load_file(str(path))
    tensors.pop("L1.up.zeros")
    from safetensors import safe_open
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="tensor L1.up.zeros is missing"):
        load_compressed(tmp_path / "bad.safetensors")
    assert back.embed.dtype == np.float16 and np.array_equal(back.embed, cm.embed)
    tensors = load_file(str(path))
    tensors["embed"] = np.zeros(cm.embed.shape, np.int8)          # an INT8 residual stream's table
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="tensor embed is not FP16"):
        load_compressed(tmp_path / "old.safetensors")


def test_row_multipliers_are_the_nearest_8_bit_under_the_largest_exponent():
    from hwmodel.dequant import row_multipliers
    rng = np.random.default_rng(3)
    s = np.concatenate([rng.uniform(0.01, 90, (50, 7)), np.full((1, 7), 1e-4)])
    s[:, 0] = np.geomspace(255.4, 1e-3, 51)                    # each row's largest, across the range
    m, e = row_multipliers(s)
    top = m.max(axis=1).astype(int)
    assert (top <= 255).all() and (top >= 128).all()           # the largest exponent that fits 8 bits
    step = np.broadcast_to(2.0 ** -e[:, None], s.shape)
    assert (np.abs(m * step - s)[m > 1] <= step[m > 1] / 2 + 1e-12).all()     # rounded to the nearest step
    assert (m >= 1).all()                                      # a tiny group keeps a usable step


def test_scaled_weights_are_m_times_the_8_bit_difference():
    from hwmodel.dequant import code_diff, scaled_weights, wrap_acc
    rng = np.random.default_rng(4)
    q, z, m = rng.integers(0, 256, 5000), rng.integers(0, 256, 5000), rng.integers(0, 256, 5000)
    d = [((int(a) - int(b)) + 128) % 256 - 128 for a, b in zip(q, z)]
    assert code_diff(q, z).tolist() == d and min(d) == -128 and max(d) == 127
    assert scaled_weights(q, z, m).tolist() == [int(c) * v for c, v in zip(m, d)]
    assert wrap_acc(np.array([2**47 - 1, 2**47, -2**47 - 1])).tolist() == [2**47 - 1, -2**47, 2**47 - 1]
