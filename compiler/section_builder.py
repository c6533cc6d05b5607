"""Collects the instructions of one section with their data dependencies.

Every instruction names what it reads and writes — named resources (weight
buffer halves, global buffer quarters, the KV cache) or line ranges of the
activation buffer — and the builder derives read-after-write,
write-after-read and write-after-write dependencies from that, so the
emitter never wires a dependency by hand and reused buffer lines stay safe.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hwmodel.isa import Instr, Op, SysKind
from hwmodel.program import Section

Resource = str | tuple[int, int]     # a name, or a [start, end) range of on-chip lines


@dataclass
class _Use:
    writer: int | None
    readers: list[int] = field(default_factory=list)


class SectionBuilder:
    def __init__(self, name: str):
        self.name = name
        self.instrs: list[Instr] = []
        self.deps: list[set[int]] = []
        self.labels: list[tuple[int, str]] = []
        self._named: dict[str, _Use] = {}
        self._ranges: list[tuple[int, int, _Use]] = []

    def label(self, name: str) -> None:
        if self.labels and self.labels[-1][0] == len(self.instrs):
            self.labels[-1] = (len(self.instrs), name)
        elif not self.labels or self.labels[-1][1] != name:
            self.labels.append((len(self.instrs), name))

    def _uses(self, res: Resource) -> list[_Use]:
        if isinstance(res, str):
            use = self._named.get(res)
            return [use] if use is not None else []
        s, e = res
        return [u for rs, re, u in self._ranges if rs < e and s < re]

    def add(self, op: Op, fields: dict[str, int], reads: tuple[Resource, ...] = (),
            writes: tuple[Resource, ...] = ()) -> int:
        idx = len(self.instrs)
        deps: set[int] = set()
        for r in reads:
            for u in self._uses(r):
                if u.writer is not None:
                    deps.add(u.writer)
                u.readers.append(idx)
        for w in writes:
            for u in self._uses(w):
                if u.writer is not None:
                    deps.add(u.writer)
                deps.update(u.readers)
            if isinstance(w, str):
                self._named[w] = _Use(idx)
            else:
                s, e = w
                self._ranges = [(rs, re, u) for rs, re, u in self._ranges if not (s <= rs and re <= e)]
                self._ranges.append((s, e, _Use(idx)))
        deps.discard(idx)
        self.instrs.append(Instr(op, 0, 0, fields))
        self.deps.append(deps)
        return idx

    def finish(self) -> None:
        """End with a barrier that waits for the last instruction of every queue,
        so the section ends with all queues idle and every token consumed."""
        last = {}
        for i, ins in enumerate(self.instrs):
            last[ins.op] = i
        self.label("barrier")
        self.instrs.append(Instr(Op.SYS, 0, 0, {"kind": SysKind.BARRIER, "lines": 0}))
        self.deps.append(set(last.values()))

    def section(self) -> Section:
        return Section(self.name, self.instrs, list(self.labels))
