"""Running a prompt through a compiled program on the functional executor, and
the same tokens through the numpy reference, layer by layer.

The checkpoint is compressed (SmoothQuant smoothing, N:16 pruning, group-wise
quantization, INT8 calibration), the program is compiled with a decode bucket
of 1 (each decode step at its exact context) or read from `program`, packed
into an HBM image, executed from the program's bytes, and the same tokens run
through dspflight.reference.
"""
from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler.pipeline import Buckets, compile_program
from compiler.weights.checkpoint import Checkpoint, load_checkpoint
from compiler.weights.compress import compress
from compiler.weights.compressed import save_compressed
from compiler.weights.pack import pack
from compiler.weights.profile import load_compression
from dspflight.reference import Reference
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
    max_abs: float           # of the FP16 residual stream (real values)
    max_rel: float           # max_abs over the layer's largest magnitude (the reference's)
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
    fed: int = 0             # choices made while the prompt's rest was fed through decode steps

    @property
    def continuation(self) -> list[int]:
        """The executor's tokens after the whole prompt."""
        return self.tokens[self.fed:]

    @property
    def exact(self) -> bool:
        return self.tokens == self.ref_tokens and all(a.mismatches == 0 for a in self.layers)


def prompt_split(length: int, attn_block: int, chunk: int | None = None) -> tuple[int, int]:
    """(prefill tokens, chunk) for a prompt: the longest prefix of whole chunks; the
    rest is fed through decode steps. By default a chunk is the largest power of
    two from 16 up to the attention block (its score panels then start on buffer
    lines for any query-head group) that fits the prompt, or one token (a chunk of
    fewer than 16 splits its keys where score panels cannot be addressed)."""
    if chunk is None:
        chunk = attn_block
        while chunk > 16 and chunk > length:
            chunk //= 2
        if chunk > length:
            return 1, 1             # one token: its scores are one panel; the rest through decode steps
    if chunk > length:
        raise DspflightError(f"prompt of {length} tokens is shorter than one prefill chunk of {chunk}")
    return length - length % chunk, chunk


def execute(checkpoint: "str | Path | Checkpoint", hw_name: str = "u280", compression: str = "flightllm", prefill: int = 16,
            decode: int = 16, prompt: list[int] | None = None, seed: int = 0, sfu: str = "fp16",
            program: str | Path | None = None, chunk: int | None = None, keep_files: bool = False) -> Execution:
    """Compress, compile (or read `program`), pack, execute and compare. The prompt
    (`prefill` seeded random ids by default) is prefilled in whole chunks
    (`prompt_split`), its rest fed through decode steps, then `decode` greedy
    steps follow. `keep_files` returns the program, the compressed checkpoint
    and the HBM image as file contents."""
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    rng = np.random.default_rng(seed)
    calibration = rng.integers(0, ck.model.vocab, CALIBRATION)
    prompt = list(prompt) if prompt is not None else [int(t) for t in rng.integers(0, ck.model.vocab, prefill)]
    outside = [t for t in prompt if not 0 <= t < ck.model.vocab]
    if outside:
        raise DspflightError(f"prompt: token id {outside[0]} is outside the vocabulary of {ck.model.name} "
                             f"(0..{ck.model.vocab - 1})")
    hw = load_hw(hw_name)
    comp = load_compression(compression, hw)
    dfp = read_bytes(program) if program is not None else None
    prog = from_bytes(dfp, hw, str(program)) if dfp is not None else None
    head, chunk = prompt_split(len(prompt), comp.attn_block, prog.meta["prefill_bucket"] if prog else chunk)
    rest = prompt[head:]
    steps = len(rest) + decode
    if prog is None:
        dfp = to_bytes(compile_program(ck.model, comp, hw, head, steps, Buckets(chunk, 1)), hw)
        prog = from_bytes(dfp, hw, "<compiled>")
    if prog.model != ck.model.name:
        raise DspflightError(f"{program}: compiled for model {prog.model}, the checkpoint is {ck.model.name}")
    cm = compress(ck, comp, calibration)
    image = pack(cm, prog, hw)
    ex = Executor(prog, hw, image)
    got: dict[tuple, np.ndarray] = {}
    t0 = time.perf_counter()
    tokens = ex.generate(prompt[:head], steps, lambda ph, p, layer, x: got.__setitem__((p, layer), x), rest)
    seconds = time.perf_counter() - t0
    ref: dict[tuple, tuple[str, np.ndarray]] = {}
    ref_tokens = Reference(cm, sfu).generate(prompt[:head], steps, prog.meta["prefill_bucket"],
                                             lambda ph, p, layer, x: ref.__setitem__((p, layer), (ph, x)),
                                             forced=rest + tokens[len(rest):])
    layers = []
    for key in sorted(ref):
        phase, want = ref[key]
        have = got.get(key)
        if have is None:
            raise DspflightError(f"executor produced no residual stream for position {key[0]} layer {key[1]}")
        want = want.astype(np.float64)
        diff = np.abs(have.astype(np.float64) - want)
        scale = max(float(np.abs(want).max()), 1e-30)
        layers.append(LayerAgreement(phase, key[0], key[1], float(diff.max()), float(diff.max()) / scale,
                                     int((diff > 0).sum()), diff.size))
    files = {}
    if keep_files:
        with tempfile.TemporaryDirectory() as tmp:
            files = {"program.dfp": dfp,
                     "compressed.safetensors": save_compressed(cm, Path(tmp) / "c.safetensors").read_bytes(),
                     "hbm.npz": image.save(Path(tmp) / "hbm.npz", hw).read_bytes()}
    return Execution(prompt, tokens, ref_tokens, layers, seconds, hashlib.sha256(dfp).hexdigest(),
                     ex.instructions, files, len(rest))
