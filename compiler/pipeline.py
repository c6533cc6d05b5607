"""The named pass pipeline and the whole-program compiler.

`PIPELINE` lists the passes in order, each with its contract
(`compiler.step`); `run_passes` can check the contracts and dump the graph
after any pass. `compile_program` compiles every step an inference needs —
the prompt in chunks of the prefill bucket (each chunk attends to all keys
before it, so activations of any prompt length fit on chip) and one decode
step per context bucket — deduplicates identical sections, and writes the
schedule with each call's base registers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import networkx as nx

from compiler.budget import check_budget
from compiler.graph import build_graph
from compiler.model_config import ModelConfig, field_key
from compiler.passes import allocate, annotate_compression, emit, onchip_fusion, partition, place_hbm, \
    schedule_tokens, tile
from compiler.passes.allocate import weight_tile_table
from compiler.passes.emit import POST, PRE, R_HEAD, R_IO, R_KV, R_WEIGHTS
from compiler.step import Contract, StepState, check_contract
from compiler.weights.profile import Compression
from hwmodel.errors import CompileError
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import BASE_REGIONS, isa_for
from hwmodel.placement import Placement
from hwmodel.program import Call, Program, Section, Step, schedule_for, section_words

Pass = Callable[[nx.DiGraph, StepState, HwConfig], None]
HEADER_LAYOUT = ("kv_bursts", "weight_bytes", "kv_bytes", "io_bytes", "rope_bursts")   # HBM sizes the header keeps


def _pass(module) -> tuple[str, Pass, Contract]:
    """A pass module's name, its function of that name and its contract."""
    name = module.__name__.rsplit(".", 1)[-1]
    return name, getattr(module, name), module.CONTRACT


PIPELINE = [_pass(m) for m in (annotate_compression, onchip_fusion, partition, tile, place_hbm, allocate, emit,
                                schedule_tokens)]


def run_passes(g: nx.DiGraph, st: StepState, hw: HwConfig, dump_after: str | None = None,
               dump_dir: Path | None = None, check: bool = False) -> None:
    """Run the pipeline on one step's graph and state; `check` verifies every
    pass's contract before and after it (the tests do; compiling does not)."""
    names = [n for n, _, _ in PIPELINE]
    if dump_after is not None and dump_after not in names:
        raise CompileError(f"--dump-after {dump_after!r}: no such pass (passes: {', '.join(names)})")
    for name, fn, c in PIPELINE:
        if check:
            check_contract(g, st, name, c, "requires")
        fn(g, st, hw)
        if check:
            check_contract(g, st, name, c, "provides")
        if name == dump_after and dump_dir is not None:
            Path(dump_dir).mkdir(parents=True, exist_ok=True)
            dump_graph(g, st, Path(dump_dir) / f"graph-{st.phase}-c{st.context}-{name}.txt")


def new_step(model: ModelConfig, comp: Compression, phase: str, tokens: int, context: int,
             max_context: int | None = None, fusion: bool = True, plan: str = "spread"
             ) -> tuple[nx.DiGraph, StepState]:
    """The frontend graph and the initial state of one step."""
    st = StepState(model, comp, phase, tokens, context, max_context or context, fusion, plan)
    return build_graph(model), st


def dump_graph(g: nx.DiGraph, st: StepState, path: Path) -> None:
    """A text listing of the step's scalar state and the nodes and their attributes, one per line."""
    skip = {"tile_hbm", "qblocks"}
    lines = [f"# {k} = {v}" for k, v in vars(st).items() if isinstance(v, (int, float, str, bool))]
    for n in nx.topological_sort(g):
        attrs = {k: v for k, v in g.nodes[n].items() if k not in skip}
        lines.append(f"{n}: {attrs} -> {sorted(g.successors(n))}")
    path.write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class Buckets:
    """Length-adaptive compilation: prefill runs in chunks of `prefill` tokens
    and decode contexts share one step per `decode`-token bucket."""
    prefill: int = 128
    decode: int = 16


def _round_up(value: int, size: int) -> int:
    return math.ceil(value / size) * size


def compile_program(model: ModelConfig, comp: Compression, hw: HwConfig, prefill: int, decode: int,
                    buckets: Buckets = Buckets(), fusion: bool = True,
                    progress: Callable[[int, int], None] | None = None,
                    dump_after: str | None = None, dump_dir: Path | None = None,
                    cover: tuple[int, int] | None = None, plan: str = "spread", pool_map: Callable = map,
                    min_prompt: int | None = None) -> Program:
    """Compile the steps an inference of `prefill` + `decode` tokens needs into a
    Program whose schedule is that case. With `cover=(max_prompt, max_context)`
    the step library covers every prompt and context up to those bounds, so one
    program serves all lengths (`schedule_for` picks the steps of any case);
    `min_prompt` leaves out the decode contexts no prompt that long reaches
    (a set of cases needs no shorter ones)."""
    if prefill < 1 or decode < 0:
        raise CompileError(f"--prefill must be >= 1 and --decode >= 0, got {prefill} and {decode}")
    if buckets.prefill < 1 or buckets.decode < 1:
        raise CompileError(f"bucket sizes must be >= 1, got {buckets.prefill} and {buckets.decode}")
    max_prompt, max_context = cover or (prefill, prefill + decode)
    max_prompt, max_context = max(max_prompt, prefill), max(max_context, prefill + decode)
    chunk, step = buckets.prefill, buckets.decode
    prompt_end = _round_up(max_prompt, chunk)
    # the decode contexts' buckets, as a range: no work in the lengths before the checks
    if min_prompt is not None and not 1 <= min_prompt <= min(prefill, max_prompt):
        raise CompileError(f"min_prompt must be in 1..{min(prefill, max_prompt)}, got {min_prompt}")
    first = _round_up((min_prompt or 0) + 1, step) if cover else _round_up(prefill + 1, step)
    decode_ctx = range(first, _round_up(max_context, step) + 1, step) if cover or decode else range(0)
    max_ctx = max(prompt_end, decode_ctx[-1] if decode_ctx else 0)
    if max_ctx > model.max_context:
        raise CompileError(f"{model.source}: field {field_key(model, 'max_context')}: the program needs contexts up "
                           f"to {max_ctx} (prompt {max_prompt}, context {max_context}, buckets {chunk}/{step}), "
                           f"the model supports {model.max_context}")
    check_budget(model, comp, hw, chunk, max_ctx)
    spec = [("prefill", chunk, end) for end in range(chunk, prompt_end + 1, chunk)]
    spec += [("decode", 1, ctx) for ctx in decode_ctx]
    sections, steps, layout = compile_steps(model, comp, hw, spec, max_ctx, fusion, progress, dump_after, dump_dir,
                                            plan, pool_map)
    meta = {"prefill": prefill, "decode": decode, "prefill_bucket": chunk, "decode_bucket": buckets.decode,
            "cover": [max_prompt, max_context], "compression": comp.name, "fusion": fusion, "plan": plan,
            "placement": layout["placement"].to_json(), "max_context": max_ctx,
            "hbm_layout": {k: layout[k] for k in HEADER_LAYOUT}, "weight_tiles": layout["weight_tiles"],
            "numerics_blockers": layout["numerics_blockers"],
            "model_linear_params": model.linear_params, "slrs": hw.slrs}
    if cover and min_prompt:
        meta["min_prompt"] = min_prompt
    prog = Program(hw.fingerprint, hw.name, model.name, meta, sections, steps, [])
    prog.schedule = schedule_for(prog, prefill, decode)
    return prog


def compile_steps(model: ModelConfig, comp: Compression, hw: HwConfig, spec: list[tuple[str, int, int]],
                  max_ctx: int, fusion: bool = True, progress: Callable[[int, int], None] | None = None,
                  dump_after: str | None = None, dump_dir: Path | None = None, plan: str = "spread",
                  pool_map: Callable = map) -> tuple[list[Section], list[Step], dict]:
    """Compile (phase, tokens, context) steps; identical sections are stored once.
    Steps are compiled in chunks through `pool_map` (the builtin map, or a process
    pool's), then merged; base registers are laid out once all steps are known.
    The returned layout holds the laid-out placement under "placement"."""
    size = max(1, min(8, math.ceil(len(spec) / 8)))
    chunks = [spec[i:i + size] for i in range(0, len(spec), size)]
    jobs = [(model, comp, hw, chunk, max_ctx, fusion, plan, dump_after, dump_dir) for chunk in chunks]
    sections: list[Section] = []
    seen: dict[tuple, int] = {}
    records, layout, done = [], {}, 0
    for part_sections, part_steps, part_layout in pool_map(_compile_chunk, jobs):
        index = []
        for sec in part_sections:
            words = tuple(sec.words)
            if words not in seen:
                seen[words] = len(sections)
                sections.append(sec)
            index.append(seen[words])
        records += [(phase, tokens, ctx, [index[k] for k in local], ls) for phase, tokens, ctx, local, ls in part_steps]
        blockers = set(layout.get("numerics_blockers", ())) | set(part_layout["numerics_blockers"])
        layout = dict(part_layout, io_bytes=max(layout.get("io_bytes", 0), part_layout["io_bytes"]),
                      numerics_blockers=sorted(blockers))
        done += len(part_steps)
        if progress:
            progress(done, len(spec))
    bases, layout["placement"] = _base_registers(model, hw, layout, layout["placement"])
    steps: list[Step] = []
    for phase, tokens, ctx, local, ls in records:
        calls = [Call(local[ls[PRE]], bases(PRE), PRE)]
        calls += [Call(local[ls[layer]], bases(layer), layer) for layer in range(model.layers)]
        post = Call(local[ls[POST]], bases(POST), POST)
        if phase == "decode":
            steps.append(Step(phase, tokens, ctx, calls + [post]))
        else:
            steps.append(Step(phase, tokens, ctx, calls))
            if ctx == tokens:      # the prompt's logits: final norm and LM head after its last chunk
                steps.append(Step("logits", tokens, tokens, [post]))
    return sections, steps, layout


def _compile_chunk(job: tuple) -> tuple[list[Section], list[tuple], dict]:
    """Compile some steps: their distinct sections (encoded), per step the sections
    it uses by layer, and the HBM layout with the unlaid placement."""
    model, comp, hw, spec, max_ctx, fusion, plan, dump_after, dump_dir = job
    isa = isa_for(hw)
    sections: list[Section] = []
    seen: dict[tuple, int] = {}
    steps, layout = [], {}
    for phase, tokens, ctx in spec:
        g, st = new_step(model, comp, phase, tokens, ctx, max_ctx, fusion, plan)
        run_passes(g, st, hw, dump_after, dump_dir)
        io = layout.get("io_bytes", 0)
        blockers = set(layout.get("numerics_blockers", ())) | set(st.numerics_blockers)
        layout = dict(st.hbm_layout, placement=st.placement, weight_tiles=weight_tile_table(g),
                      numerics_blockers=sorted(blockers))
        layout["io_bytes"] = max(io, layout["io_bytes"])        # the I/O area serves every step
        local = []
        for sec in st.sections:
            words = tuple(section_words(isa, sec))
            if words not in seen:
                seen[words] = len(sections)
                sections.append(sec)
            local.append(seen[words])
        steps.append((phase, tokens, ctx, local, dict(st.layer_section)))
    return sections, steps, layout


def compile_decode_step(model: ModelConfig, comp: Compression, hw: HwConfig, context: int) -> Program:
    """A program of one decode step at `context` (for benchmarks and exact-length checks)."""
    sections, steps, layout = compile_steps(model, comp, hw, [("decode", 1, context)], context)
    meta = {"prefill": context - 1, "decode": 1, "prefill_bucket": context, "decode_bucket": 1,
            "compression": comp.name, "max_context": context, "slrs": hw.slrs, "plan": "spread",
            "placement": layout["placement"].to_json()}
    return Program(hw.fingerprint, hw.name, model.name, meta, sections, steps, [(0, 1)])


def _base_registers(model: ModelConfig, hw: HwConfig, layout: dict, placement: Placement
                    ) -> tuple[Callable[[int], list[int]], Placement]:
    """Allocate every region in the space of its channel group, each at a whole
    row on every PC of the group, and lay the spaces out. Returns the base
    registers of a layer's call (4 per core: r0 weights, r1 KV, r2 I/O, r3 LM
    head; hwmodel.isa.BASE_REGIONS) and the laid-out placement."""
    per_layer = layout["layer_weight_bursts"]
    row = hw.hbm.address_map.row_bytes // hw.hbm.burst_bytes
    sizes: dict[tuple[int, ...], int] = {}
    offset: dict[tuple, tuple[tuple[int, ...], int]] = {}

    def alloc(core: int, region: str, key: tuple, bursts: int) -> None:
        pcs = placement.pcs_of(core, *placement.group(region))
        unit = len(pcs) * row
        offset[(core,) + key] = (pcs, sizes.get(pcs, 0))
        sizes[pcs] = sizes.get(pcs, 0) + -(-bursts // unit) * unit

    for core in range(hw.slrs):
        for layer in range(model.layers):
            alloc(core, "weights", ("w", layer), per_layer[layer])
        alloc(core, "weights", ("head",), per_layer.get(-1, 0))
        for layer in range(model.layers):
            alloc(core, "kv", ("kv", layer), layout["kv_bursts"])
        alloc(core, "io", ("io",), math.ceil(layout["io_bytes"] / hw.hbm.burst_bytes))
    for pcs, bursts in sizes.items():
        if bursts // len(pcs) * hw.hbm.burst_bytes > hw.hbm.address_map.pc_bytes:
            raise CompileError(f"{hw.source}: field hbm.capacity_gb: {model.name} with plan {placement.name} needs "
                               f"{bursts * hw.hbm.burst_bytes / 2**30:.2f} GiB on PCs {list(pcs)}, which hold "
                               f"{len(pcs) * hw.hbm.address_map.pc_bytes / 2**30:.2f} GiB")
    placement = placement.laid_out(sizes, row * hw.hbm.channels)
    start = {s.pcs: s.start for s in placement.spaces}

    def at(core: int, *key) -> int:
        pcs, off = offset[(core,) + key]
        return start[pcs] + off

    def bases(layer: int) -> list[int]:
        regs = []
        for c in range(hw.slrs):
            w = ("w", layer) if layer >= 0 else ("head",)
            kv = ("kv", max(layer, 0))
            regs.extend([at(c, *w), at(c, *kv), at(c, "io"), at(c, "head")])
        return regs

    assert (R_WEIGHTS, R_KV, R_IO, R_HEAD) == (0, 1, 2, 3) and BASE_REGIONS[R_HEAD] == "weights"
    return bases, placement
