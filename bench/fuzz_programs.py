"""Program-file fuzzing: seeded mutations of a small compiled program, each read
and simulated, the outcome classified.

Shared by the suite (tests/test_fuzz_program.py, a few thousand cases) and
`bench/fuzz.py programs` (the long run). A mutated file must load and
simulate, or be refused with a one-line ProgramFormatError or SimulationError
naming the file; anything else is a crash. Mutations: bit flips (with and
without a recomputed checksum), truncations, extra words, edits of the header
JSON (values of the wrong type, out of range, non-finite, deeply nested;
keys deleted; elements duplicated) and of the header text, and instruction
field edits through the ISA's own encoder. The checksum is recomputed with the
writer's function, so most cases get past it and reach the header and the
simulator.
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import resource
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from compiler.model_config import load_model
from compiler.pipeline import Buckets, compile_program
from compiler.weights.profile import load_compression
from dspflight.api import simulate_program
from hwmodel.errors import ProgramFormatError, SimulationError
from hwmodel.hwconfig import HwConfig, load_hw
from hwmodel.isa import HEADER, isa_for
from hwmodel.program import DIGEST, assemble, checksum, from_bytes, parts, to_bytes

SOURCE = "fuzz-case.dfp"
KINDS = ("bitflip", "bitflip-resum", "truncate", "truncate-resum", "extend", "header", "header-text", "field")
WEIGHTS = (1, 3, 1, 2, 1, 8, 3, 8)
NASTY = ("x", "", -1, 0, 1, 2, 255, 2**31, -2**31, 2**32, 2**63, 10**30, 1.5, float("inf"), float("-inf"),
         float("nan"), None, True, False, [], {}, [0], [[]], {"a": 1}, "prefill", "u280")
DEEP = "\x00deep\x00"          # stands for deeply nested brackets until the header is serialized
TEXT_BYTES = b'[]{}",:-0123456789eE.tnfx \\'


@dataclass
class Outcome:
    kind: str          # the mutation
    seed: int
    result: str        # "ok", "format", "simulation" or "crash"
    message: str       # the error's message, or the traceback of a crash
    seconds: float


@lru_cache(maxsize=None)
def base_program() -> tuple[bytes, HwConfig]:
    """The tiny model, prompt 8 and 2 generated tokens in buckets of 8, on the U280 design."""
    hw = load_hw("u280")
    prog = compile_program(load_model("tiny"), load_compression("flightllm", hw), hw, 8, 2, Buckets(8, 8))
    return to_bytes(prog, hw), hw


def _resum(body: bytes) -> bytes:
    return body + checksum(body)


def _nodes(tree) -> list[tuple[object, object]]:
    """(container, key) of every value in a JSON tree, iteratively."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else ()
        for k in keys:
            out.append((node, k))
            stack.append(node[k])
    return out


def _edit_header(header: bytes, rng: random.Random) -> bytes:
    tree = json.loads(header)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        container, key = rng.choice(_nodes(tree))
        old, action = container[key], rng.random()
        if action < 0.15:
            del container[key]
        elif action < 0.25 and isinstance(container, list):
            container.insert(key, old)
        elif action < 0.4 and isinstance(old, int) and not isinstance(old, bool):
            container[key] = rng.choice((old + 1, old - 1, old * 2, old * 1000, -old, old + 2**31))
        elif action < 0.45:
            container[key] = DEEP
        else:
            container[key] = rng.choice(NASTY)
    text = json.dumps(tree, separators=(",", ":"))
    depth = rng.choice((17, 100, 5000, 100000))
    return text.replace(json.dumps(DEEP), "[" * depth + "]" * depth).encode()


def _edit_text(header: bytes, rng: random.Random) -> bytes:
    text = bytearray(header)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(text))
        if rng.random() < 0.5:
            text[pos] = rng.choice(TEXT_BYTES)
        else:
            text[pos:pos] = bytes(rng.choices(TEXT_BYTES, k=rng.randint(1, 4)))
    return bytes(text)


@lru_cache(maxsize=None)
def _instruction_starts(data: bytes, hw: HwConfig) -> tuple[int, ...]:
    """Word position of every instruction of the base program."""
    prog = from_bytes(data, hw)
    starts, pos = [], 0
    isa = isa_for(hw)
    for sec in prog.sections:
        for ins in sec.instrs:
            starts.append(pos)
            pos += isa.layouts[ins.op].words
    return tuple(starts)


def _edit_fields(data: bytes, hw: HwConfig, rng: random.Random) -> bytes:
    """Change 1-3 fields of random instructions (widths from the ISA), keep the header."""
    isa = isa_for(hw)
    header, raw = parts(data)
    words = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]
    for _ in range(rng.choice((1, 1, 2, 3))):
        pos = rng.choice(_instruction_starts(data, hw))
        ins, _ = isa.decode(words, pos)
        name, width = rng.choice(isa.layouts[ins.op].fields + HEADER[1:])
        top = (1 << width) - 1
        value = rng.choice((0, top, rng.randint(0, top), min(top, ins.f.get(name, 0) + 1)))
        if name in ins.f:
            ins.f[name] = value
        else:
            setattr(ins, name, value)
        words[pos:pos + isa.layouts[ins.op].words] = isa.encode(ins)
    return assemble(header, b"".join(w.to_bytes(4, "little") for w in words))


def mutate(data: bytes, hw: HwConfig, kind: str, rng: random.Random) -> bytes:
    """One mutation of a program file."""
    body = data[:-DIGEST]
    if kind in ("bitflip", "bitflip-resum"):
        out = bytearray(data if kind == "bitflip" else body)
        for _ in range(rng.randint(1, 8)):
            bit = rng.randrange(8 * len(out))
            out[bit // 8] ^= 1 << bit % 8
        return bytes(out) if kind == "bitflip" else _resum(bytes(out))
    if kind == "truncate":
        return data[:rng.randrange(len(data))]
    if kind == "truncate-resum":
        return _resum(body[:rng.randrange(len(body))])
    if kind == "extend":
        return _resum(body + rng.randbytes(rng.choice((1, 3, 4, 8, 28, 400))))
    if kind == "header":
        return assemble(_edit_header(parts(data)[0], rng), parts(data)[1])
    if kind == "header-text":
        return assemble(_edit_text(parts(data)[0], rng), parts(data)[1])
    return _edit_fields(data, hw, rng)


def run_case(data: bytes, hw: HwConfig) -> tuple[str, str]:
    """Read and simulate one file: ("ok", ""), ("format" | "simulation", message) or ("crash", traceback)."""
    try:
        prog = from_bytes(data, hw, SOURCE)
        simulate_program(prog, hw, len(data), None)
    except ProgramFormatError as exc:
        return "format", str(exc)
    except SimulationError as exc:
        return "simulation", str(exc)
    except Exception:      # noqa: BLE001 - the point: anything else is a finding
        return "crash", traceback.format_exc()
    return "ok", ""


def case(seed: int) -> tuple[str, bytes]:
    """The mutation kind and bytes of case `seed` (reproducible on its own)."""
    data, hw = base_program()
    rng = random.Random(seed)
    kind = rng.choices(KINDS, WEIGHTS)[0]
    return kind, mutate(data, hw, kind, rng)


def cases(first: int, count: int) -> Iterator[Outcome]:
    """Run cases first .. first + count - 1."""
    hw = base_program()[1]
    for seed in range(first, first + count):
        kind, data = case(seed)
        t0 = time.perf_counter()
        result, message = run_case(data, hw)
        yield Outcome(kind, seed, result, message, time.perf_counter() - t0)


def well_formed(o: Outcome) -> bool:
    """What every outcome must be: ok, or a one-line refusal naming the file
    (and, from the simulator, the section)."""
    if o.result == "ok":
        return True
    if o.result not in ("format", "simulation") or "\n" in o.message or not o.message.startswith(SOURCE + ": "):
        return False
    return o.result == "format" or "section " in o.message


# ---- the long run: bench/fuzz.py programs ------------------------------------------
SLOW_S = 5.0
PEAK_MB = 1024


def peak_mb() -> float:
    """Peak resident memory of this process (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace) -> int:
    """Run --n cases from seed --first; print outcomes, peak memory and the slowest case."""
    counts: collections.Counter = collections.Counter()
    slowest, bad, t0 = None, [], time.perf_counter()
    for o in cases(args.first, args.n):
        counts[(o.result, o.kind)] += 1
        if slowest is None or o.seconds > slowest.seconds:
            slowest = o
        if not well_formed(o):
            bad.append(o)
        done = o.seed - args.first + 1
        if done % 10000 == 0:
            print(f"  {done} cases, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    print(f"{args.n} program mutations (seeds {args.first}..{args.first + args.n - 1}) in {wall:.0f} s "
          f"({args.n / wall:.0f} cases/s)")
    for result in ("ok", "format", "simulation", "crash"):
        kinds = {k: n for (r, k), n in sorted(counts.items()) if r == result}
        print(f"  {result:<10} {sum(kinds.values()):>7}  " + " ".join(f"{k}={n}" for k, n in kinds.items()))
    print(f"  not one line naming the file: {len(bad)}")
    print(f"peak memory {peak_mb():.0f} MB (target <= {PEAK_MB}); slowest case: seed {slowest.seed} "
          f"({slowest.kind}, {slowest.result}) {slowest.seconds:.3f} s (target <= {SLOW_S})")
    for o in bad[:5]:
        print(f"case {o.seed} ({o.kind}, {o.result}): {o.message.strip().splitlines()[-1]}")
    if bad:
        print(f"reproduce one: .venv/bin/python bench/fuzz.py programs --first {bad[0].seed} --n 1")
    print(f"reproduce: .venv/bin/python bench/fuzz.py programs --first {args.first} --n {args.n}")
    return 1 if bad or slowest.seconds > SLOW_S or peak_mb() > PEAK_MB else 0


def register(sub) -> None:
    """The `programs` subcommand of bench/fuzz.py."""
    p = sub.add_parser("programs", help="mutate a compiled .dfp: load and simulate each")
    p.add_argument("--n", type=int, default=100000, help="cases (default: 100000)")
    p.add_argument("--first", type=int, default=0, help="seed of the first case (default: 0)")
    p.set_defaults(func=run)
