"""The weight record format (hwmodel/weight_record.py): what pack encodes the
executor and the RTL bench decode, bit for bit, for every pattern N, every
weight width and both designs; sizes are whole bursts."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel.dequant import SCALE_BYTES
from hwmodel.hwconfig import load_hw
from hwmodel.weight_record import RecordFields, decode_record, encode_record, record_bytes, record_parts

DESIGNS = {name: load_hw(name) for name in ("u280", "vhk158")}


@settings(max_examples=60, deadline=None)
@given(design=st.sampled_from(sorted(DESIGNS)), data=st.data(), rows=st.integers(1, 9), kblk=st.integers(1, 6),
       group=st.sampled_from([16, 32, 128]), seed=st.integers(0, 2**31))
def test_round_trip_for_every_pattern_and_width(design, data, rows, kblk, group, seed):
    hw = DESIGNS[design]
    n = data.draw(st.sampled_from(hw.sparsity_n))
    bits = data.draw(st.sampled_from(hw.weight_bits))
    rng = np.random.default_rng(seed)
    groups = -(-kblk * n // group)
    index = np.sort(np.argsort(rng.random((rows, kblk, hw.sparsity_m)), axis=2)[:, :, :n], axis=2)
    fields = RecordFields(codes=rng.integers(0, 1 << bits, (rows, kblk, n)),
                          index=index if n < hw.sparsity_m else np.broadcast_to(np.arange(n), (rows, kblk, n)),
                          scales=rng.integers(0, 256, (rows, groups, SCALE_BYTES), dtype=np.uint8),
                          zeros=rng.integers(0, 1 << bits, (rows, groups)),
                          requant=rng.standard_normal(rows).astype(np.float32))
    raw = encode_record(hw, fields, bits, group)
    parts = record_parts(hw, rows, kblk, n, bits, group)
    assert len(raw) == record_bytes(hw, rows, kblk, n, bits, group) == sum(parts.values())
    assert all(size % hw.hbm.burst_bytes == 0 for size in parts.values())
    assert (parts["indices"] == 0) == (n == hw.sparsity_m)
    got = decode_record(hw, np.frombuffer(raw + b"\xff" * 7, np.uint8), rows=rows, kblk=kblk, n=n, bits=bits,
                        group=group)
    for name in ("codes", "index", "scales", "zeros"):
        assert np.array_equal(getattr(got, name), getattr(fields, name)), name
    assert np.array_equal(got.requant, fields.requant)


def test_a_short_record_is_refused():
    hw = DESIGNS["u280"]
    need = record_bytes(hw, 2, 1, 8, 4, 128)
    with pytest.raises(ValueError, match=f"needs {need} bytes"):
        decode_record(hw, np.zeros(need - 1, np.uint8), rows=2, kblk=1, n=8, bits=4, group=128)
