"""The ISA: encode then decode is the identity for every opcode and field value."""
from __future__ import annotations

import pytest
from conftest import edited_config
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel.errors import CompileError, ConfigError, ProgramFormatError
from hwmodel.hwconfig import load_hw
from hwmodel.isa import NUM_QUEUES, WORDS, Instr, Isa, Op, isa_for, mask_to_queues, other_queues, queues_to_mask

DESIGNS = {name: Isa(load_hw(name)) for name in ("u280", "vhk158")}


@st.composite
def instructions(draw, isa: Isa):
    op = draw(st.sampled_from(list(Op)))
    fields = {name: draw(st.integers(0, (1 << width) - 1)) for name, width in isa.layouts[op].fields}
    return Instr(op, draw(st.integers(0, 31)), draw(st.integers(0, 31)), fields)


@pytest.mark.parametrize("design", sorted(DESIGNS))
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_encode_decode_is_identity(design, data):
    isa = DESIGNS[design]
    ins = data.draw(instructions(isa))
    words = isa.encode(ins)
    assert len(words) == WORDS[ins.op]
    assert all(0 <= w < 2**32 for w in words)
    back, end = isa.decode(words, 0)
    assert end == len(words)
    assert back == ins


def test_every_layout_fits_its_word_count_from_the_paper():
    # FACTS: LD 7, ST 3, MM 4, MV 4, MISC 3, SYS 1 words of 32 bits
    assert {op.name: n for op, n in WORDS.items()} == {"LD": 7, "ST": 3, "MM": 4, "MV": 4, "MISC": 3, "SYS": 1}
    for isa in DESIGNS.values():
        for op, layout in isa.layouts.items():
            assert layout.used_bits <= 32 * WORDS[op]


def test_address_width_follows_the_buffers(u280):
    isa = DESIGNS["u280"]
    # 9.5 MiB on-chip in 64-byte lines needs 18 bits; 8 GiB HBM in 64-byte bursts needs 27
    assert isa.width(Op.LD, "addr") == u280.onchip_addr_bits == 18
    assert isa.width(Op.LD, "hbm") == u280.hbm_addr_bits == 27
    assert DESIGNS["vhk158"].width(Op.LD, "hbm") == 29   # 32 GiB


def test_masks_name_the_other_five_queues():
    for q in range(NUM_QUEUES):
        assert q not in other_queues(q) and len(other_queues(q)) == 5
        for mask in range(32):
            assert queues_to_mask(q, mask_to_queues(q, mask)) == mask


def test_value_too_wide_is_a_compile_error():
    isa = DESIGNS["u280"]
    with pytest.raises(CompileError, match="field rows=16384 does not fit 14 bits"):
        isa.encode(Instr(Op.MV, 0, 0, {"rows": 1 << 14}), 7)


def test_unknown_opcode_and_stray_bits_are_format_errors():
    isa = DESIGNS["u280"]
    with pytest.raises(ProgramFormatError, match="unknown opcode 9"):
        isa.decode([9], 0, 0)
    with pytest.raises(ProgramFormatError, match="bits set beyond its fields"):
        isa.decode([int(Op.ST), 0, 1 << 31], 0, 0)   # ST uses 91 of its 96 bits
    with pytest.raises(ProgramFormatError, match="LD truncated"):
        isa.decode([int(Op.LD), 0, 0], 0, 0)


def test_design_whose_addresses_do_not_fit_is_rejected(tmp_path, u280):
    big_act = edited_config(tmp_path, u280.source, "big.yaml", "act: {kind: uram, bytes: 8388608}",
                            "act: {kind: uram, bytes: 268435456}")
    bad = edited_config(tmp_path, big_act, "huge.yaml", "uram: 960", "uram: 100000")
    with pytest.raises(ConfigError, match=r"huge.yaml: field buffers or hbm.capacity_gb: the ST instruction needs 99 bits"):
        Isa(load_hw(bad))


def test_gateware_ports_take_their_widths_and_codes_from_the_isa():
    """The MV tile's pattern port is the MM/MV field of hwmodel.isa, and the
    codes the compiler emits are the ones the gateware decodes. (The weight
    width is the weight-buffer reader's: the tile takes bit planes, the same
    wires for every width.)"""
    from hwmodel.gateware.mv_tile import MatrixVectorTile
    from hwmodel.isa import N_LOG2_BITS, WBITS_BITS, bits_of, n_code, n_of, wbits_code
    hw = load_hw("u280")
    isa = isa_for(hw)
    tile = MatrixVectorTile.from_hw(hw)
    tile._MustUse__silence = True          # only its ports are read: never elaborated, on purpose
    for op in (Op.MM, Op.MV):
        assert isa.width(op, "n_log2") == N_LOG2_BITS == len(tile.n_log2)
        assert isa.width(op, "wbits") == WBITS_BITS
    assert [n_of(n_code(n)) for n in hw.sparsity_n] == list(hw.sparsity_n)
    assert [bits_of(wbits_code(b)) for b in hw.weight_bits] == list(hw.weight_bits)
    assert tile.lane_layout["z"].shape.width == max(hw.weight_bits)
    assert max(n_code(n) for n in hw.sparsity_n) < 1 << N_LOG2_BITS
    assert max(wbits_code(b) for b in hw.weight_bits) < 1 << WBITS_BITS
