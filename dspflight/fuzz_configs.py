"""Seeded mutations of the shipped config files, and the rule that judges each load.

Every mutation of a file in `configs/` (and of a Hugging Face config.json made
from the tiny model) must either load or be refused with one DspflightError
line naming the file, within a time bound: never another exception, a
multi-line message or a hang. `tests/test_fuzz_config.py` runs a few thousand
cases; `bench/fuzz.py configs` the long run. A case is reproduced from its
seed and index alone.
"""
from __future__ import annotations

import copy
import json
import random
import signal
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from compiler.budget import check_budget
from compiler.model_config import load_model
from compiler.weights.checkpoint import hf_constants
from compiler.weights.profile import load_compression
from hwmodel.configio import config_root
from hwmodel.energy_table import load_energy_table
from hwmodel.errors import DspflightError
from hwmodel.gpu import load_gpu
from hwmodel.hwconfig import load_hw
from hwmodel.isa import isa_for

OUTCOMES = ("loaded", "refused", "bad-message", "crash", "hang")
DEEP = "@@DEEP@@"      # stands for a deeply nested value, spliced into the dumped text


@dataclass(frozen=True)
class Case:
    index: int
    kind: str          # key of LOADERS
    source: str        # the shipped file it mutates, relative to configs/
    mutation: str
    data: bytes
    suffix: str


@dataclass(frozen=True)
class Result:
    case: Case
    outcome: str       # one of OUTCOMES
    seconds: float
    detail: str        # the message or exception


# ---- loaders: what a user's file of each kind goes through ----------------
def _hardware(path: Path) -> None:
    hw = load_hw(path)
    isa_for(hw)
    _ = hw.fingerprint, hw.hbm.link_gbps, hw.hbm_latency_cycles, hw.dma_port_gbps, hw.hbm.random_access_ns(64)


def _model(path: Path) -> None:
    model = load_model(path)
    if path.suffix == ".json":
        hf_constants(path)
    hw, comp, _ = _shipped()
    check_budget(model, comp, hw, 128, model.max_context)


def _compression(path: Path) -> None:
    hw, _, models = _shipped()
    comp = load_compression(path, hw)
    for model in models:
        comp.attn_densities(model)


def _sweep(path: Path) -> None:
    from dspflight.sweep import batch_key, configs_of, load_sweep, points
    spec = load_sweep(path)
    for point in points(spec)[:4]:
        batch_key(configs_of(spec, point))


LOADERS: dict[str, Callable[[Path], Any]] = {
    "hardware": _hardware, "gpu": load_gpu, "model": _model, "compression": _compression,
    "energy": load_energy_table, "sweep": _sweep,
}


@lru_cache(maxsize=1)
def _shipped() -> tuple:
    """The design, profile and models a mutated file is checked against (loaded once)."""
    hw = load_hw("u280")
    return hw, load_compression("flightllm", hw), (load_model("tiny"), load_model("llama2-7b"))


def hf_config_text() -> str:
    """A LLaMA-style Hugging Face config.json of the tiny model (what write_random_llama writes)."""
    m = load_model("tiny")
    return json.dumps({"model_type": "llama", "_name_or_path": m.name, "hidden_size": m.hidden,
                       "num_hidden_layers": m.layers, "num_attention_heads": m.heads,
                       "num_key_value_heads": m.kv_heads, "intermediate_size": m.ffn, "vocab_size": m.vocab,
                       "max_position_embeddings": m.max_context, "hidden_act": "silu", "rms_norm_eps": 1e-5,
                       "rope_theta": 10000.0}, indent=1) + "\n"


@lru_cache(maxsize=1)
def sources() -> tuple[tuple[str, str, str], ...]:
    """(kind, name, text) of every shipped config the fuzzer mutates."""
    root = config_root()
    out = [("gpu" if p.parent.name == "gpu" else kind, str(p.relative_to(root)), p.read_text())
           for kind, folder in (("hardware", "hardware"), ("model", "models"), ("compression", "compression"),
                                ("energy", "energy"), ("sweep", "sweeps"))
           for p in sorted((root / folder).rglob("*.yaml"))]
    return tuple(out + [("model", "hf/config.json", hf_config_text())])


# ---- mutations -----------------------------------------------------------
def _bad_values(rng: random.Random, old: Any) -> Any:
    pool = [float("nan"), float("inf"), float("-inf"), 1e30, -1e30, 10**30, -(10**30), 10**9, 2**31, 2**64, -1, 0,
            1, 0.5, -0.5, 1e-300, 10**4000, "abc", "", "false", "true", "1e30", ".nan", None, True, False, [], {},
            [1, 2], {"a": 1}, "x" * 300, [float("nan")], {1: 2, "zz": 3}, -0.0, "16", 2**53 + 1, 1.5]
    if isinstance(old, (int, float)) and not isinstance(old, bool) and abs(old) < 1e300:
        pool += [old * 1000, -old, old + 0.5, str(old), old * 10**12, int(old) + 1, old / 1000]
    return rng.choice(pool)


def _slots(data: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) of a parsed document, walked without recursion."""
    out, stack = [], [data]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            out.append((node, key))
            stack.append(value)
    return out


def _holds(value: Any, node: Any) -> bool:
    """Whether `node` is `value` or inside it."""
    return node is value or any(c is node for c, _ in _slots(value))


def _structural(rng: random.Random, data: dict) -> str:
    """Change `data` in place; returns what was done."""
    slots = _slots(data)
    maps = [data] + [c[k] for c, k in slots if isinstance(c[k], dict)]
    what = rng.choice(("value", "value", "value", "delete", "add-key", "int-and-str-keys", "deep", "swap"))
    if what == "add-key":
        target = rng.choice(maps)
        target[rng.choice(("zz", 1, None, True, 2.5, "", "a\nb"))] = rng.choice((3, "x", None))
        return what
    if what == "int-and-str-keys":
        rng.choice(maps).update({1: 2, "zz": 3})
        return what
    if not slots:
        return "none"
    container, key = rng.choice(slots)
    if what == "swap":      # two fields trade values (a mapping where a number belongs, ...)
        other, key2 = rng.choice(slots)
        if _holds(container[key], other) or _holds(other[key2], container):
            return "none"       # one holds the other: a swap would make the document contain itself
        container[key], other[key2] = other[key2], container[key]
        return f"swap {key!r} {key2!r}"
    if what == "delete":
        del container[key]
        return f"delete {key!r}"
    if what == "deep":
        container[key] = DEEP
        return f"deep {key!r}"
    container[key] = _bad_values(rng, container[key])
    return f"value {key!r}={container[key]!r:.40}"


def _dump(data: Any, suffix: str, depth: int) -> bytes:
    text = json.dumps(data) if suffix == ".json" else yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    deep = "[" * depth + "]" * depth
    return text.replace(json.dumps(DEEP) if suffix == ".json" else DEEP, deep).encode()


_YAML_SPECIALS = ("a: &x [1, 2]\nb: *x\n", "<<: {name: x}\n", "name: !!python/object:os.system x\n",
                  "when: 2020-13-01\n", "n: " + "9" * 5000 + "\n", "? [a, b]\n: 1\n", "%YAML 1.1\n---\nx: 1\n",
                  "x: !!binary 'not base64'\n", "\t- tab\n", "x: '\x00'\n", "---\na: 1\n---\nb: 2\n")


def _textual(rng: random.Random, raw: bytes, suffix: str) -> tuple[bytes, str]:
    what = rng.choice(("flip", "truncate", "non-utf8", "special") if suffix == ".yaml" else
                      ("flip", "truncate", "non-utf8"))
    if what == "flip":
        out = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out), what
    if what == "truncate":
        return raw[:rng.randrange(len(raw))], what
    if what == "non-utf8":
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + rng.choice((b"\xe9", b"\xff\xfe", b"\xc3", b"\x80\x80", b"\xed\xa0\x80")) + raw[at:], what
    return raw + rng.choice(_YAML_SPECIALS).encode(), what


@lru_cache(maxsize=None)
def _parsed(name: str) -> dict:
    text = next(t for _, n, t in sources() if n == name)
    return json.loads(text) if name.endswith(".json") else yaml.safe_load(text)


def case(seed: int, index: int) -> Case:
    """Mutation `index` of the run seeded `seed` (the same bytes every time)."""
    rng = random.Random(f"{seed}:{index}")
    kind, name, text = rng.choice(sources())
    suffix = Path(name).suffix
    raw = text.encode()
    if rng.random() < 0.3:
        data, what = _textual(rng, raw, suffix)
        return Case(index, kind, name, what, data, suffix)
    data = copy.deepcopy(_parsed(name))
    done = [_structural(rng, data) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    if rng.random() < 0.01:
        data, done = rng.choice(([data], list(data), 3, None, "text")), done + ["top-level"]
    depth = rng.choice((17, 100, 1000)) if rng.random() < 0.95 else 100_000
    return Case(index, kind, name, " + ".join(done), _dump(data, suffix, depth), suffix)


def cases(seed: int, n: int, start: int = 0) -> Iterator[Case]:
    return (case(seed, i) for i in range(start, start + n))


# ---- judging ---------------------------------------------------------------
class _Timeout(BaseException):
    """Raised by the alarm inside a load that runs past its bound."""


def _alarm(signum, frame):
    raise _Timeout()


def run(c: Case, folder: Path, limit_s: float = 5.0) -> Result:
    """Load the mutated file and judge the outcome (main thread only: SIGALRM bounds the time)."""
    path = folder / f"case-{c.index}{c.suffix}"
    path.write_bytes(c.data)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    start = time.perf_counter()
    try:
        LOADERS[c.kind](path)
        outcome, detail = "loaded", ""
    except _Timeout:
        outcome, detail = "hang", f"still running after {limit_s} s"
    except DspflightError as exc:
        detail = str(exc)
        outcome = "refused" if len(detail.splitlines()) == 1 and str(path) in detail else "bad-message"
    except Exception as exc:        # what the fuzzer is looking for
        outcome, detail = "crash", f"{type(exc).__name__}: {exc}"[:300]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - start
    path.unlink()
    return Result(c, outcome, seconds, detail)
