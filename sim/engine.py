"""Event-driven cycle engine over the six instruction queues of one core.

Each queue runs its instructions in order, one at a time. An instruction
starts when its queue is free and, for every queue in its wait mask, a token
from that queue is available (it consumes one); when it ends it releases one
token to every queue in its release mask. LD/ST also need their HBM
pseudo-channels (PCs) over all cores, which run the same section in
lockstep: a transfer starts when every PC it uses is free, after a
read/write turnaround where a PC changes direction. Cycle counts come from
hwmodel.costs and hwmodel.transfer. A section starts and ends with every
queue idle, and its transfers' timing does not depend on base registers
(hwmodel.placement), so it is timed once, wherever it runs.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from functools import lru_cache

from hwmodel.costs import Work, compute_cycles, work
from hwmodel.errors import SimulationError
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import NUM_QUEUES, QUEUES, Instr, Op, isa_for, mask_to_queues
from hwmodel.placement import Placement
from hwmodel.program import Section, format_instr
from hwmodel.transfer import transfer_pcs, transfer_timing_of, turnaround_cycles
from sim.checks import check_section

WORK_FIELDS = tuple(Work.__dataclass_fields__)
LD_QUEUE, ST_QUEUE = int(Op.LD), int(Op.ST)
ALL_QUEUES = (1 << NUM_QUEUES) - 1
MASK_QUEUES = [tuple(q for q in range(NUM_QUEUES) if m >> q & 1) for m in range(ALL_QUEUES + 1)]


@dataclass
class OpTiming:
    """One op label within a section: when it ran and what it did."""
    start: int
    end: int
    busy: list[int] = field(default_factory=lambda: [0] * NUM_QUEUES)
    work: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WORK_FIELDS, 0))


@dataclass
class SectionTiming:
    name: str
    cycles: int
    instructions: int
    busy: list[int]
    work: dict[str, int]
    ops: dict[str, OpTiming]
    trace: list[tuple[int, int, int, str]]   # (queue, start, end, label) per instruction


def _pc_atoms(chans: list) -> tuple[list, int]:
    """Group the PCs that every transfer of the section uses together (all of a
    plan's group, typically) into one resource each: same timing, fewer updates."""
    sets = sorted({c for c in chans if c is not None})
    member: dict[int, list[int]] = {}
    for k, pcs in enumerate(sets):
        for pc in pcs:
            member.setdefault(pc, []).append(k)
    atom_of = {sig: a for a, sig in enumerate(sorted({tuple(v) for v in member.values()}))}
    pc_atom = {pc: atom_of[tuple(v)] for pc, v in member.items()}
    per_set = {pcs: tuple(sorted({pc_atom[pc] for pc in pcs})) for pcs in sets}
    return [None if c is None else per_set[c] for c in chans], len(atom_of)


def time_section(hw: HwConfig, sec: Section, placement: Placement, keep_trace: bool = False) -> SectionTiming:
    plan = _plan(hw, sec, placement)
    queues, waits, releases, chans, atoms = plan.queues, plan.waits, plan.releases, plan.chans, plan.atoms
    release_mask = plan.release_mask
    timed = [transfer_timing_of(hw, placement, op, key) for op, key in plan.transfers]
    cycles = [c if t < 0 else timed[t].cycles for c, t in zip(plan.compute, plan.transfer_of)]
    occupy = [c if t < 0 else timed[t].data_cycles for c, t in zip(plan.compute, plan.transfer_of)]
    n = len(cycles)
    head = [0] * NUM_QUEUES
    busy_until = [0] * NUM_QUEUES
    running = [False] * NUM_QUEUES
    tokens = [[0] * NUM_QUEUES for _ in range(NUM_QUEUES)]   # tokens[c][p]: released by p for c
    ch_free = [0] * atoms
    ch_writing = [False] * atoms
    turn = {True: turnaround_cycles(hw, True), False: turnaround_cycles(hw, False)}
    events: list[tuple[int, int, int]] = []   # (time, queue, instr): instr done, or -1: queue may issue
    start_of = [0] * n
    now, done, last_end = 0, 0, 0
    lengths = [len(qu) for qu in queues]
    dirty = ALL_QUEUES     # queues whose issue may have become possible: only they are looked at
    while done < n:
        for q in MASK_QUEUES[dirty]:
            if running[q] or head[q] >= lengths[q] or busy_until[q] > now:
                continue
            i = queues[q][head[q]]
            w = waits[i]
            if w:
                mine = tokens[q]
                if not all(mine[p] for p in w):
                    continue
                for p in w:
                    mine[p] -= 1
            start = now if now > busy_until[q] else busy_until[q]
            pcs = chans[i]
            if pcs is not None:
                writing = q == ST_QUEUE
                for c in pcs:
                    ready = ch_free[c] + (turn[writing] if ch_writing[c] != writing else 0)
                    if ready > start:
                        start = ready
            free = start + occupy[i]
            if pcs is not None:
                for c in pcs:
                    ch_free[c] = free
                    ch_writing[c] = writing
            start_of[i] = start
            running[q] = True
            busy_until[q] = free
            head[q] += 1
            heapq.heappush(events, (start + cycles[i], q, i))
            if free < start + cycles[i]:
                heapq.heappush(events, (free, q, -1))
        if not events:
            raise _deadlock(sec, now, queues, head)
        now, q, i = heapq.heappop(events)
        dirty = 1 << q
        if i < 0 or occupy[i] == cycles[i]:
            running[q] = False
        if i < 0:
            continue
        done += 1
        if now > last_end:
            last_end = now
        for c in releases[i]:
            tokens[c][q] += 1
        dirty |= release_mask[i]
    _check_all_tokens_consumed(sec, tokens)
    return _summarize(sec, plan, start_of, cycles, occupy, last_end, keep_trace)


def _deadlock(sec: Section, now: int, queues: list[list[int]], head: list[int]) -> SimulationError:
    """No instruction runs and none can issue: name each queue's waiting head."""
    heads = "; ".join(f"{QUEUES[q]}: #{queues[q][head[q]]} {format_instr(sec.instrs[queues[q][head[q]]])}"
                      for q in range(NUM_QUEUES) if head[q] < len(queues[q]))
    return SimulationError(f"section {sec.name}: dependency deadlock at cycle {now}; queue heads: {heads}")


def _check_all_tokens_consumed(sec: Section, tokens: list[list[int]]) -> None:
    """A section leaves no dependency token behind (the next would start with it);
    `tokens[c][p]` counts those released by queue p for queue c."""
    leftover = [(QUEUES[p], QUEUES[c]) for p in range(NUM_QUEUES) for c in range(NUM_QUEUES) if tokens[c][p]]
    if leftover:
        raise SimulationError(f"section {sec.name}: ends with unconsumed tokens {leftover[0][0]}->{leftover[0][1]}")


@dataclass
class _Plan:
    """What timing a section needs that the clock does not change: the same for
    every design with one `HwConfig.program_key` (a sweep's clock variants run
    one program), so it is made once for them all."""
    queues: list[list[int]]                  # each queue's instructions, in order
    waits: list[tuple[int, ...]]
    releases: list[tuple[int, ...]]
    release_mask: list[int]                  # the released queues as a bit mask (bit q: queue q)
    compute: list[int]                       # cycles of an MM/MV/MISC/SYS (0 for a transfer)
    transfers: list[tuple[Op, tuple]]        # the distinct LD/ST (op, sorted fields)
    transfer_of: list[int]                   # an instruction's index into `transfers`, or -1
    chans: list[tuple[int, ...] | None]      # a transfer's PC atoms (`_pc_atoms`)
    atoms: int
    label_of: list[int]                      # an instruction's index into `labels`
    labels: list[str]
    work: list[dict[str, int]]               # per label
    total: dict[str, int]


# Plans of one program_key (the last one timed): each entry keeps its section, so
# the section's id is never reused meanwhile; a section's instructions are final
# once timed (as once encoded, `section_words`). A sweep's batch shares a key.
_PLANS: dict[tuple, tuple[Section, _Plan]] = {}
MAX_PLANS = 4096


def _plan(hw: HwConfig, sec: Section, placement: Placement) -> _Plan:
    """The section's plan on this design, checked (sim.checks) when first made."""
    key = (id(sec), hw.program_key, placement)
    hit = _PLANS.get(key)
    if hit is not None:
        return hit[1]
    if len(_PLANS) >= MAX_PLANS or any(k[1] != hw.program_key for k in itertools.islice(_PLANS, 1)):
        _PLANS.clear()
    check_section(hw, sec, placement)
    queues: list[list[int]] = [[] for _ in range(NUM_QUEUES)]
    waits, releases, compute, transfer_of, pcs = [], [], [], [], []
    transfers: dict[tuple, int] = {}
    label_names = sec.label_of()
    labels: dict[str, int] = {}
    label_of = [labels.setdefault(lab, len(labels)) for lab in label_names]
    label_work = [dict.fromkeys(WORK_FIELDS, 0) for _ in labels]
    total = dict.fromkeys(WORK_FIELDS, 0)
    for i, ins in enumerate(sec.instrs):
        q = int(ins.op)
        queues[q].append(i)
        waits.append(mask_to_queues(q, ins.wait))
        releases.append(mask_to_queues(q, ins.release))
        items = tuple(ins.f.items())
        if q == LD_QUEUE or q == ST_QUEUE:
            transfer_of.append(transfers.setdefault((ins.op, tuple(sorted(items))), len(transfers)))
            compute.append(0)
            pcs.append(transfer_pcs(placement, ins))
        else:
            transfer_of.append(-1)
            compute.append(_compute_cycles(hw, ins.op, items))
            pcs.append(None)
        into = label_work[label_of[i]]
        for k, v in _work_items(hw, ins.op, items):
            into[k] += v
            total[k] += v
    chans, atoms = _pc_atoms(pcs)
    release_mask = [sum(1 << c for c in r) for r in releases]
    plan = _Plan(queues, waits, releases, release_mask, compute, list(transfers), transfer_of, chans, atoms, label_of,
                 list(labels), label_work, total)
    _PLANS[key] = (sec, plan)
    return plan


@lru_cache(maxsize=65536)
def _compute_cycles(hw: HwConfig, op: Op, items: tuple) -> int:
    """`compute_cycles` of an MM/MV/MISC/SYS given as its fields (cached, as `_work_items`)."""
    return compute_cycles(hw, Instr(op, 0, 0, dict(items)))


@lru_cache(maxsize=65536)
def _work_items(hw: HwConfig, op: Op, items: tuple) -> tuple[tuple[str, int], ...]:
    """The non-zero work of an instruction (cached: sections repeat instructions)."""
    w = work(hw, Instr(op, 0, 0, isa_for(hw).full_fields(Instr(op, 0, 0, dict(items)))))
    return tuple((k, getattr(w, k)) for k in WORK_FIELDS if getattr(w, k))


def _summarize(sec: Section, plan: _Plan, start_of: list[int], cycles: list[int], occupy: list[int],
               last_end: int, keep_trace: bool) -> SectionTiming:
    busy = [0] * NUM_QUEUES
    first = [None] * len(plan.labels)
    last = [0] * len(plan.labels)
    op_busy = [[0] * NUM_QUEUES for _ in plan.labels]
    for q, members in enumerate(plan.queues):
        for i in members:
            s, e, lab = start_of[i], start_of[i] + cycles[i], plan.label_of[i]
            busy[q] += occupy[i]
            op_busy[lab][q] += occupy[i]
            if first[lab] is None or s < first[lab]:
                first[lab] = s
            if e > last[lab]:
                last[lab] = e
    ops = {name: OpTiming(first[k], last[k], op_busy[k], dict(plan.work[k])) for k, name in enumerate(plan.labels)}
    trace = [(int(ins.op), start_of[i], start_of[i] + cycles[i], plan.labels[plan.label_of[i]])
             for i, ins in enumerate(sec.instrs)] if keep_trace else []
    return SectionTiming(sec.name, last_end, len(sec.instrs), busy, dict(plan.total), ops, trace)
