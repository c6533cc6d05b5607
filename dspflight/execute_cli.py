"""`dspflight execute`: the command line of `dspflight.api.execute`, which runs a
prompt through a compiled program on the functional executor and compares
every layer with the numpy reference.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

from compiler.model_config import load_model
from compiler.weights.checkpoint import load_checkpoint, write_random_llama
from dspflight.api import execute
from dspflight.cliargs import design, non_negative, positive, token_ids
from dspflight.reference import FP16_MAX_REL
from hwmodel.atomic import OutputSet
from hwmodel.errors import DspflightError


def handler(args: argparse.Namespace) -> int:
    with OutputSet(args.out) if args.out else nullcontext() as out:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = args.checkpoint or write_random_llama(Path(tmp) / "tiny", load_model("tiny"), args.seed)
            ck = load_checkpoint(checkpoint)
            prompt = args.prompt_ids
            if args.prompt is not None:
                if ck.tokenizer is None:
                    raise DspflightError(f"--prompt: {ck.model.name} has no tokenizer; give token ids with "
                                         f"--prompt-ids")
                prompt = ck.tokenizer.encode(args.prompt).ids
                if not prompt:
                    raise DspflightError("--prompt: the text has no tokens")
            r = execute(ck, args.hw, args.compression, args.prefill, args.decode, prompt, args.seed,
                        args.sfu, args.program, args.prefill_bucket, keep_files=bool(args.out))
        if out is not None:
            for name, data in r.files.items():
                out.add_bytes(name, data)
            report = {k: v for k, v in asdict(r).items() if k != "files"}
            out.add_bytes("agreement.json", (json.dumps(report, indent=1) + "\n").encode())
            names = out.commit()
    print(f"program sha256 {r.program_sha256}")
    print(f"prompt    {r.prompt}")
    print(f"executor  {r.tokens}")
    print(f"reference {r.ref_tokens} (SFU {args.sfu}, same history)")
    if ck.tokenizer is not None:
        print(f"text      {ck.tokenizer.decode(r.prompt)!r} -> {ck.tokenizer.decode(r.continuation)!r}")
    print(f"{'phase':<8} {'pos':>4} {'layer':>5} {'max|diff|':>10} {'relative':>9} {'mismatch':>9} {'of':>6}")
    for a in r.layers:
        print(f"{a.phase:<8} {a.position:>4} {a.layer:>5} {a.max_abs:>10.4g} {a.max_rel:>9.2e} {a.mismatches:>9} "
              f"{a.elements:>6}")
    worst = max(a.max_abs for a in r.layers)
    worst_rel = max(a.max_rel for a in r.layers)
    same = r.tokens == r.ref_tokens
    bound = 0 if args.sfu == "fp16" else FP16_MAX_REL
    print(f"tokens {'identical' if same else 'DIFFER'}; FP16 residual stream max |diff| {worst:.4g} "
          f"({worst_rel:.2e} of the layer's largest value; bound {bound}) over {len(r.layers)} layer outputs; "
          f"{r.instructions} instructions in {r.seconds:.2f} s ({len(r.tokens) / r.seconds:.1f} tokens/s)")
    if args.out:
        print(f"wrote {', '.join(names)} to {args.out}")
    return 0 if worst_rel <= bound and (same or args.sfu == "float64") else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("execute", help="run a prompt through a compiled program numerically and compare "
                                              "every layer with the numpy reference")
    p.add_argument("--checkpoint", help="Hugging Face LLaMA-style directory (config.json + *.safetensors), a "
                                        ".gguf file, or smollm2 (SmolLM2-135M-Instruct, installed); default: a "
                                        "seeded random tiny model")
    p.add_argument("--hw", type=design, default="u280", help="hardware design (u280, vhk158 or a YAML path)")
    p.add_argument("--compression", default="flightllm", help="compression profile")
    p.add_argument("--prefill", type=positive, default=16, help="prompt tokens (one prefill chunk)")
    p.add_argument("--decode", type=non_negative, default=16, help="greedy decode steps")
    p.add_argument("--prefill-bucket", type=positive, help="prefill chunk (default: the largest dividing both the "
                                                           "prompt and the attention block)")
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="prompt text (checkpoints with a tokenizer: GGUF, smollm2; default: "
                                               "seeded random ids)")
    prompt.add_argument("--prompt-ids", type=token_ids, help="comma-separated token ids (default: seeded random)")
    p.add_argument("--program", help="execute this .dfp instead of compiling one (default: compile with decode "
                                     "bucket 1)")
    p.add_argument("--sfu", choices=("fp16", "float64"), default="fp16",
                   help="reference special functions: mirror the FP16 unit (must agree bit for bit) or "
                        "ideal float64 (must stay within the stated bound; tokens may differ)")
    p.add_argument("--seed", type=non_negative, default=0,
                   help="seed of the calibration batch, prompt and tiny model")
    p.add_argument("-o", "--out", help="also write program.dfp, compressed.safetensors, hbm.npz and "
                                       "agreement.json to this directory (default: print only)")
    p.set_defaults(func=handler)
