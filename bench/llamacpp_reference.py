"""Outside reference: llama.cpp (llama-cpp-python) on the same GGUF file as our
float model: tokenization of a text, greedy tokens (free-running and
teacher-forced on llama.cpp's own choices) and perplexity.

llama-cpp-python is not a dependency: building it from its source package
takes about 12 min on the 2-core reference machine, too long for CI. Build it
into a separate virtual environment and pass its interpreter:

    python3 -m venv /tmp/llvenv && /tmp/llvenv/bin/pip install llama-cpp-python
    .venv/bin/python bench/llamacpp_reference.py --llama-python /tmp/llvenv/bin/python [--tokens 512]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from compiler.weights.checkpoint import float_weights, load_checkpoint
from compiler.weights.float_model import float_forward
from compiler.weights.gguf import builtin_path
from dspflight.perplexity import default_text, nll_perplexity

LLAMA = r'''
import json, sys
import numpy as np
from llama_cpp import Llama
spec = json.load(open(sys.argv[2]))
llm = Llama(model_path=sys.argv[1], n_ctx=max(1024, len(spec["eval"]) + 8), logits_all=True, verbose=False)
llm.eval(spec["prompt"])
gen = []
for _ in range(spec["steps"]):
    gen.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
    llm.eval([gen[-1]])
tok = llm.tokenize(spec["text"].encode(), add_bos=False, special=False)
llm.reset()
llm.eval(spec["eval"])
z = np.array(llm.scores[:len(spec["eval"]) - 1], dtype=np.float64)
top = z.max(axis=1)
lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
nll = lse - z[np.arange(len(z)), spec["eval"][1:]]
print(json.dumps({"greedy": gen, "tokenize": tok, "nll": nll.tolist()}))
'''


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-python", required=True, help="a Python interpreter with llama_cpp installed")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("--steps", type=int, default=32)
    args = ap.parse_args()
    ck = load_checkpoint("smollm2")
    m, tok = ck.model, ck.tokenizer
    w, norms = float_weights(ck)
    text = default_text()
    prompt, ev = tok.encode(args.prompt).ids, tok.encode(text).ids[:args.tokens]
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"prompt": prompt, "eval": ev, "text": text[:2000], "steps": args.steps}))
        script = Path(tmp) / "llama.py"
        script.write_text(LLAMA)
        run = subprocess.run([args.llama_python, str(script), str(builtin_path("smollm2")), str(spec)],
                             capture_output=True, text=True)
    if run.returncode:
        print(run.stderr[-2000:], file=sys.stderr)
        return 2
    ll = json.loads(run.stdout.strip().splitlines()[-1])
    full = (1.0,) * m.layers
    fn = float_forward(m, w, norms, np.array(prompt + ll["greedy"]), ck.rope_theta, ck.norm_eps, 64, full)
    forced = (fn[len(prompt) - 1:-1] @ w["lm_head"].T).argmax(axis=1)
    toks = list(prompt)
    for _ in range(args.steps):
        fn = float_forward(m, w, norms, np.array(toks), ck.rope_theta, ck.norm_eps, 64, full)
        toks.append(int(np.argmax(fn[-1] @ w["lm_head"].T)))
    free = toks[len(prompt):]
    same = next((i for i, (a, b) in enumerate(zip(free, ll["greedy"])) if a != b), args.steps)
    fn = float_forward(m, w, norms, np.array(ev), ck.rope_theta, ck.norm_eps, 64, full)
    ours = nll_perplexity(fn[:-1] @ w["lm_head"].T, np.array(ev[1:]))
    theirs = float(np.exp(np.mean(ll["nll"])))
    print(f"tokenization of 2,000 characters: {'identical' if tok.encode(text[:2000]).ids == ll['tokenize'] else 'DIFFERS'}")
    print(f"greedy, free-running: the first {same} of {args.steps} tokens identical")
    print(f"greedy, teacher-forced on llama.cpp's tokens: {int((forced == np.array(ll['greedy'])).sum())} of "
          f"{args.steps} identical")
    print(f"  ours:      {tok.decode(free)!r}\n  llama.cpp: {tok.decode(ll['greedy'])!r}")
    print(f"perplexity on {len(ev)} tokens of pydoc_data.topics: ours {ours:.3f}, llama.cpp {theirs:.3f} "
          f"({100 * (ours / theirs - 1):+.2f} %, target within 2 %)")
    return 0 if abs(ours / theirs - 1) <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
