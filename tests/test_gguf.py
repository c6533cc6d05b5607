"""A real trained model from its GGUF file (SmolLM2-135M-Instruct, the built-in
`smollm2`): config from the metadata, tensors under Hugging Face names with
llama.cpp's q/k row interleave undone, the tokenizer from the file, the float
model producing real text, the compiled program on the executor agreeing with
the reference bit for bit; bad files refused in one line."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from compiler.weights.checkpoint import float_weights, load_checkpoint
from compiler.weights.float_model import float_forward
from compiler.weights.gguf import builtin_path, unpermute
from dspflight.api import execute
from dspflight.perplexity import nll_perplexity
from hwmodel.errors import CheckpointError


def test_config_and_tokenizer_come_from_the_file(smollm2):
    m = smollm2.model
    assert (m.name, m.layers, m.hidden, m.heads, m.kv_heads, m.ffn, m.vocab, m.max_context) == \
           ("smollm2-135m", 30, 576, 9, 3, 1536, 49152, 8192)
    assert (smollm2.rope_theta, round(smollm2.norm_eps, 9)) == (100000.0, 1e-5)
    assert smollm2.weights["lm_head.weight"] is smollm2.weights["model.embed_tokens.weight"]     # tied
    tok = smollm2.tokenizer
    ids = tok.encode("The capital of France is").ids
    assert ids == [504, 3575, 282, 4649, 314] and tok.decode(ids) == "The capital of France is"
    assert tok.encode("In 2024").tokens == ["In", "Ġ", "2", "0", "2", "4"]      # digits one by one (smollm)
    assert tok.encode("<|im_start|>").ids == [1]                                 # control tokens are single


def test_unpermute_inverts_llama_cpp_permute():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3 * 8, 5))
    # llama.cpp's convert_hf_to_gguf.py `permute`, as it writes attn_q / attn_k
    permuted = w.reshape(3, 2, 4, 5).swapaxes(1, 2).reshape(w.shape)
    assert np.array_equal(unpermute(permuted, 3), w)


def test_the_float_model_answers(smollm2):
    """Greedy decoding of the float model: without the q/k un-permute or with a
    wrong RoPE base this is not text."""
    w, norms = float_weights(smollm2)
    m = smollm2.model
    toks = smollm2.tokenizer.encode("The capital of France is").ids
    for _ in range(3):
        fn = float_forward(m, w, norms, np.array(toks), smollm2.rope_theta, smollm2.norm_eps, 64, (1.0,) * m.layers)
        toks.append(int(np.argmax(fn[-1] @ w["lm_head"].T)))
    assert smollm2.tokenizer.decode(toks[-3:]) == " Paris.\n"


def test_the_float_model_copies_a_repeated_text(smollm2):
    w, norms = float_weights(smollm2)
    m = smollm2.model
    ids = np.array(smollm2.tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 4).ids)
    fn = float_forward(m, w, norms, ids, smollm2.rope_theta, smollm2.norm_eps, 64, (1.0,) * m.layers)
    half = len(ids) // 2
    logits = fn[:-1] @ w["lm_head"].T
    first, repeated = nll_perplexity(logits[:half - 1], ids[1:half]), nll_perplexity(logits[half:], ids[half + 1:])
    assert repeated < first / 4        # the second half repeats the first: a working model copies it


def test_executor_and_reference_agree_on_the_real_model(smollm2):
    ids = smollm2.tokenizer.encode("The capital of France is").ids
    r = execute(smollm2, "vhk158", "flightllm", decode=2, prompt=ids)
    assert r.fed == 4 and len(r.tokens) == 7           # 1 token prefilled, 4 fed through decode steps, 2 chosen
    assert r.exact and max(a.max_abs for a in r.layers) == 0


def test_the_compiled_program_writes_readable_text(smollm2):
    """The integer model with the FP16 residual stream, on the executor, bit for bit with the
    reference (an INT8 residual stream gave token 0 at every step). The float model says
    " Paris."; with 8-bit weight groups symmetric (hwmodel.dequant) the integer one repeats
    the prompt's words (docs/numerics.md)."""
    ids = smollm2.tokenizer.encode("The capital of France is").ids
    r = execute(smollm2, "u280", "dense-int8", decode=2, prompt=ids)
    assert r.exact and max(a.max_abs for a in r.layers) == 0
    assert smollm2.tokenizer.decode(r.continuation) == " the capital of"


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"XXXX" + b[4:], r"not a readable GGUF file"),
    (lambda b: b[:len(b) // 2], r"not a readable GGUF file"),
    (lambda b: b.replace(b"llama.block_count", b"llama.block_xount", 1), r"metadata field llama.block_count is missing"),
    (lambda b: b.replace(b"blk.7.ffn_up.weight", b"blk.7.ffn_zz.weight", 1),
     r"tensor model.layers.7.mlp.up_proj.weight is missing"),
])
def test_bad_files_are_refused_in_one_line(tmp_path, damage, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(damage(builtin_path("smollm2").read_bytes()))
    with pytest.raises(CheckpointError, match=message) as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"no such GGUF file"):
        load_checkpoint(tmp_path / "none.gguf")
    shutil.copy(builtin_path("smollm2"), tmp_path / "copy.gguf")      # a path works like the built-in name
    assert load_checkpoint(tmp_path / "copy.gguf").model.name == "smollm2-135m"


def test_perplexity_command_prints_the_technique_table(tmp_path, capsys):
    from dspflight.cli import main

    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 80)
    code = main(["perplexity", "--compression", "dense-int8", "--text", str(text), "--tokens", "64", "--executor",
                 "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    for row in ("float", "dense-int8: N:M sparsity", "dense-int8: low-bit weights",
                "dense-int8: + block-sparse attention", "dense-int8: integer model (INT8 activations)"):
        assert row in out
    assert "agrees" in out and (tmp_path / "out" / "perplexity.json").is_file()


def test_perplexity_needs_a_text_long_enough(tmp_path, capsys):
    from dspflight.cli import main

    text = tmp_path / "short.txt"
    text.write_text("Too short.")
    assert main(["perplexity", "--text", str(text), "--tokens", "64"]) == 2
    assert "text: 3 tokens, fewer than the 64 to evaluate" in capsys.readouterr().err
