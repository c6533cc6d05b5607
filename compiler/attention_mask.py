"""Block-sparse attention mask: which 64x64 key blocks a query block keeps.

Causal blocks beyond the diagonal are fully masked and never computed. Of the
causal blocks, a fraction `density` is kept: the first block (attention sink)
and the most recent ones (local window), at least two. Fully masked blocks are
skipped: their keys are not even loaded.
"""
from __future__ import annotations

import math

import numpy as np


def kept_blocks(query_block: int, density: float) -> list[int]:
    """Key block indices a query block attends to, in increasing order."""
    causal = query_block + 1
    keep = min(causal, max(2, math.ceil(density * causal)))
    recent = list(range(causal - keep + 1, causal))
    return [0] + recent if keep > 1 else [0]


def kept_ranges(query_block: int, density: float, block: int, context: int) -> list[tuple[int, int]]:
    """Contiguous key ranges [start, end) kept for a query block, clipped to `context` keys."""
    ranges: list[tuple[int, int]] = []
    for b in kept_blocks(query_block, density):
        start, end = b * block, min((b + 1) * block, context)
        if end <= start:
            continue
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))
    return ranges


def attention_keys(pos: int, block: int, density: float) -> np.ndarray:
    """Key positions a query at `pos` attends to under the block-sparse causal mask."""
    return np.concatenate([np.arange(s, e) for s, e in kept_ranges(pos // block, density, block, pos + 1)])
