"""`dspflight execute`: run a prompt through a compiled program on the functional
executor and compare every layer with the numpy reference.

The checkpoint is compressed (SmoothQuant smoothing, N:16 pruning, group-wise
quantization, INT8 calibration), the program is compiled with a decode bucket
of 1 (each decode step at its exact context) or read from `--program`, packed
into an HBM image, executed from the program's bytes, and the same tokens run
through dspflight.reference.
"""
from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
import json
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from compiler.checkpoint import load_checkpoint, write_random_llama
from compiler.compression import load_compression
from compiler.model_config import load_model
from compiler.pack import pack
from compiler.pipeline import Buckets, compile_program
from compiler.quantize import compress, save_compressed
from dspflight.cliargs import design, non_negative, positive, token_ids
from hwmodel.atomic import OutputSet
from dspflight.reference import FP16_MAX_DIFF, Reference
from hwmodel.errors import DspflightError
from hwmodel.hwconfig import load_hw
from hwmodel.program import from_bytes, read_bytes, to_bytes
from sim.functional import Executor

CALIBRATION = (4, 64)       # calibration batch: sequences x tokens of seeded random ids


@dataclass
class LayerAgreement:
    phase: str
    position: int            # position of the step's first token
    layer: int
    max_abs: int             # INT8 units of the residual stream
    mismatches: int
    elements: int


@dataclass
class Execution:
    prompt: list[int]
    tokens: list[int]        # executor's greedy choices (after the prompt, then each decode step)
    ref_tokens: list[int]    # the reference's choices given the same history
    layers: list[LayerAgreement]
    seconds: float           # executor wall time
    program_sha256: str
    instructions: int
    files: dict[str, bytes] = field(default_factory=dict)   # program.dfp, compressed model, HBM image

    @property
    def exact(self) -> bool:
        return self.tokens == self.ref_tokens and all(a.mismatches == 0 for a in self.layers)


def execute(checkpoint: str | Path, hw_name: str = "u280", compression: str = "flightllm", prefill: int = 16,
            decode: int = 16, prompt: list[int] | None = None, seed: int = 0, sfu: str = "fp16",
            program: str | Path | None = None, chunk: int | None = None, keep_files: bool = False) -> Execution:
    """Compress, compile (or read `program`; prefill in chunks of `chunk`, default
    the whole prompt), pack, execute and compare; `keep_files` returns the program,
    the compressed checkpoint and the HBM image as file contents."""
    ck = load_checkpoint(checkpoint)
    outside = [t for t in prompt or () if not 0 <= t < ck.model.vocab]
    if outside:
        raise DspflightError(f"prompt: token id {outside[0]} is outside the vocabulary of {ck.model.name} "
                             f"(0..{ck.model.vocab - 1})")
    hw = load_hw(hw_name)
    comp = load_compression(compression, hw)
    rng = np.random.default_rng(seed)
    cm = compress(ck, comp, rng.integers(0, ck.model.vocab, CALIBRATION))
    if program is not None:
        dfp = read_bytes(program)
    else:
        dfp = to_bytes(compile_program(ck.model, comp, hw, prefill, decode, Buckets(chunk or prefill, 1)), hw)
    prog = from_bytes(dfp, hw, str(program or "<compiled>"))
    if prog.model != ck.model.name:
        raise DspflightError(f"{program}: compiled for model {prog.model}, the checkpoint is {ck.model.name}")
    image = pack(cm, prog, hw)
    prompt = list(prompt) if prompt is not None else [int(t) for t in rng.integers(0, ck.model.vocab, prefill)]
    ex = Executor(prog, hw, image)
    got: dict[tuple, np.ndarray] = {}
    t0 = time.perf_counter()
    tokens = ex.generate(prompt, decode, lambda ph, p, layer, x: got.__setitem__((p, layer), x))
    seconds = time.perf_counter() - t0
    ref: dict[tuple, tuple[str, np.ndarray]] = {}
    ref_tokens = Reference(cm, sfu).generate(prompt, decode, prog.meta["prefill_bucket"],
                                             lambda ph, p, layer, x: ref.__setitem__((p, layer), (ph, x)),
                                             forced=tokens)
    layers = []
    for key in sorted(ref):
        phase, want = ref[key]
        have = got.get(key)
        if have is None:
            raise DspflightError(f"executor produced no residual stream for position {key[0]} layer {key[1]}")
        diff = np.abs(have.astype(np.int64) - want)
        layers.append(LayerAgreement(phase, key[0], key[1], int(diff.max()), int((diff > 0).sum()), diff.size))
    files = {}
    if keep_files:
        with tempfile.TemporaryDirectory() as tmp:
            files = {"program.dfp": dfp,
                     "compressed.safetensors": save_compressed(cm, Path(tmp) / "c.safetensors").read_bytes(),
                     "hbm.npz": image.save(Path(tmp) / "hbm.npz", hw).read_bytes()}
    return Execution(prompt, tokens, ref_tokens, layers, seconds, hashlib.sha256(dfp).hexdigest(),
                     ex.instructions, files)


def handler(args: argparse.Namespace) -> int:
    with OutputSet(args.out) if args.out else nullcontext() as out:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = args.checkpoint or write_random_llama(Path(tmp) / "tiny", load_model("tiny"), args.seed)
            r = execute(checkpoint, args.hw, args.compression, args.prefill, args.decode, args.prompt, args.seed,
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
    print(f"{'phase':<8} {'pos':>4} {'layer':>5} {'max|diff|':>9} {'mismatch':>9} {'of':>6}")
    for a in r.layers:
        print(f"{a.phase:<8} {a.position:>4} {a.layer:>5} {a.max_abs:>9} {a.mismatches:>9} {a.elements:>6}")
    worst = max(a.max_abs for a in r.layers)
    same = r.tokens == r.ref_tokens
    bound = 0 if args.sfu == "fp16" else FP16_MAX_DIFF
    print(f"tokens {'identical' if same else 'DIFFER'}; residual stream max |diff| {worst} INT8 units over "
          f"{len(r.layers)} layer outputs (bound {bound}); {r.instructions} instructions in {r.seconds:.2f} s "
          f"({len(r.tokens) / r.seconds:.1f} tokens/s)")
    if args.out:
        print(f"wrote {', '.join(names)} to {args.out}")
    return 0 if worst <= bound and (same or args.sfu == "float64") else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("execute", help="run a prompt through a compiled program numerically and compare "
                                              "every layer with the numpy reference")
    p.add_argument("--checkpoint", help="Hugging Face LLaMA-style directory (config.json + *.safetensors); "
                                        "default: a seeded random tiny model")
    p.add_argument("--hw", type=design, default="u280", help="hardware design (u280, vhk158 or a YAML path)")
    p.add_argument("--compression", default="flightllm", help="compression profile")
    p.add_argument("--prefill", type=positive, default=16, help="prompt tokens (one prefill chunk)")
    p.add_argument("--decode", type=non_negative, default=16, help="greedy decode steps")
    p.add_argument("--prefill-bucket", type=positive, help="prefill chunk (default: the whole prompt; at most the "
                                                           "attention block)")
    p.add_argument("--prompt", type=token_ids, help="comma-separated token ids (default: seeded random)")
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
