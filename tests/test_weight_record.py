"""The weight record format (hwmodel/weight_record.py): what pack encodes the
executor and the RTL bench decode, bit for bit, for every pattern N, every
weight width and both designs; sizes are whole bursts. A record also survives
the HBM image (hwmodel/hbm_image.py) saved per pseudo-channel and loaded back,
under every placement plan."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.model_config import load_model
from compiler.pipeline import Buckets, compile_program
from compiler.weights.profile import load_compression
from hwmodel.hbm_image import HbmImage
from hwmodel.hwconfig import load_hw
from hwmodel.placement import Placement
from hwmodel.weight_record import RecordFields, decode_record, encode_record, record_bytes, record_parts

DESIGNS = {name: load_hw(name) for name in ("u280", "vhk158")}


@pytest.fixture(scope="module")
def placements():
    """A laid-out placement of the tiny model per design and plan it fits."""
    out = {}
    for name, hw in DESIGNS.items():
        for plan in ("spread", "flightllm", "kv-4pc"):
            if plan == "flightllm" and hw.hbm.channels < 9 * hw.slrs:
                continue
            prog = compile_program(load_model("tiny"), load_compression("flightllm", hw), hw, 16, 1,
                                   Buckets(16, 1), plan=plan)
            out[name, plan] = Placement.from_json(prog.meta["placement"], hw, plan)
    return out


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
                          scales=rng.integers(0, 256, (rows, groups), dtype=np.uint8),
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


@settings(max_examples=30, deadline=None)
@given(design=st.sampled_from(sorted(DESIGNS)), data=st.data(), seed=st.integers(0, 2**31))
def test_a_record_round_trips_through_a_saved_hbm_image(placements, tmp_path_factory, design, data, seed):
    hw = DESIGNS[design]
    plan = data.draw(st.sampled_from(sorted(p for d, p in placements if d == design)))
    placement = placements[design, plan]
    n, bits = data.draw(st.sampled_from(hw.sparsity_n)), data.draw(st.sampled_from(hw.weight_bits))
    rows, kblk, group = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 6)), 32
    rng = np.random.default_rng(seed)
    groups = -(-kblk * n // group)
    index = np.sort(np.argsort(rng.random((rows, kblk, hw.sparsity_m)), axis=2)[:, :, :n], axis=2)
    fields = RecordFields(rng.integers(0, 1 << bits, (rows, kblk, n)),
                          index if n < hw.sparsity_m else np.broadcast_to(np.arange(n), (rows, kblk, n)),
                          rng.integers(0, 256, (rows, groups), dtype=np.uint8),
                          rng.integers(0, 1 << bits, (rows, groups)), rng.standard_normal(rows).astype(np.float32))
    raw = encode_record(hw, fields, bits, group)
    burst = hw.hbm.burst_bytes
    # inside one space, as the compiler places records: the image holds the spaces' bursts only
    # (the gaps between spaces are on no PC)
    space = data.draw(st.sampled_from([s for s in placement.spaces if s.bursts * burst >= len(raw)]))
    at = (space.start + data.draw(st.integers(0, space.bursts - -(-len(raw) // burst)))) * burst
    hbm = np.zeros(placement.end * burst, np.uint8)
    hbm[at:at + len(raw)] = np.frombuffer(raw, np.uint8)
    path = tmp_path_factory.mktemp("img") / "hbm.npz"
    HbmImage(hbm, np.zeros((2, 16), np.int8), {"placement": placement.to_json()}).save(path, hw)
    back = HbmImage.load(path, hw)
    assert np.array_equal(back.hbm[:len(hbm)], hbm)
    got = decode_record(hw, back.hbm[at:], rows=rows, kblk=kblk, n=n, bits=bits, group=group)
    for name in ("codes", "index", "scales", "zeros", "requant"):
        assert np.array_equal(getattr(got, name), getattr(fields, name)), name


def test_a_short_record_is_refused():
    hw = DESIGNS["u280"]
    need = record_bytes(hw, 2, 1, 8, 4, 128)
    with pytest.raises(ValueError, match=f"needs {need} bytes"):
        decode_record(hw, np.zeros(need - 1, np.uint8), rows=2, kblk=1, n=8, bits=4, group=128)


@pytest.mark.parametrize("design", sorted(DESIGNS))
@pytest.mark.parametrize("bits,kblk", [(3, 9), (5, 8), (8, 3)])
def test_codes_lie_as_bit_planes_per_beat(design, bits, kblk):
    """Values part, written out by hand: a row's beats of L codes (the last one
    short when kblk*n is not a multiple of L), each as `bits` planes of its
    codes' bit p, LSB first; so lane j's bit p of beat t is at t*L*bits + p*L + j."""
    hw = DESIGNS[design]
    L, n, rows = hw.chain_length, 4, 3
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, size=(rows, kblk, n))
    f = RecordFields(codes=codes, index=np.zeros_like(codes), scales=np.zeros((rows, 1), np.uint8),
                     zeros=np.zeros((rows, 1), np.int64), requant=np.ones(rows, np.float32))
    raw = np.frombuffer(encode_record(hw, f, bits, group=kblk * n), np.uint8)
    got = np.unpackbits(raw, bitorder="little")
    want = []
    for row in codes.reshape(rows, -1):
        for t in range(0, row.size, L):
            beat = row[t:t + L]
            want += [(int(c) >> p) & 1 for p in range(bits) for c in beat]
    assert got[:len(want)].tolist() == want
    assert not got[len(want):record_parts(hw, rows, kblk, n, bits, kblk * n)["values"] * 8].any()
