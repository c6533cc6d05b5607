// DSP48E2 simulation model for the cocotb benches: the UltraScale+ DSP slice
// (AMD UG579, "UltraScale Architecture DSP Slice") as far as dspflight's
// gateware configures it, written from that guide. Yosys ships only a black
// box of DSP48E2 (cells_xtra.v), and the vendor's model comes with Vivado,
// which this flow does not use. Synthesis never reads this file: there the
// instance is the primitive.
//
// Modelled: A (AREG 0/1), B (BREG 0/1/2), C (CREG 0/1), D (DREG 0/1), the
// pre-adder D +/- A (INMODE[3:1], PREADDINSEL = "A", ADREG 0/1), the 27 x 18
// multiplier (AMULTSEL "A" or "AD", BMULTSEL "B", MREG 0/1), the X/Y/Z/W
// multiplexers (OPMODE, OPMODEREG 0/1), the ALU in ALUMODE 0000 (Z + W + X +
// Y + CARRYIN, CARRYINSEL 000), the P register (PREG 0/1) and PCOUT.
// Registers clear on their synchronous reset, which takes priority over
// their clock enable (UG949, "Reset and Clock Enable Precedence"), and start
// at zero as after configuration. Anything else (SIMD, pattern detect, the
// A/B cascades, inverted pins, another ALUMODE) stops the simulation with
// $fatal rather than computing something the slice would not.
// tests/rtl/test_dsp48e2_model.py compares it, cycle by cycle, with Yosys'
// DSP48E1 model configured alike.
module DSP48E2 #(
    parameter integer ACASCREG = 1,
    parameter integer ADREG = 1,
    parameter integer ALUMODEREG = 1,
    parameter AMULTSEL = "A",
    parameter integer AREG = 1,
    parameter AUTORESET_PATDET = "NO_RESET",
    parameter AUTORESET_PRIORITY = "RESET",
    parameter A_INPUT = "DIRECT",
    parameter integer BCASCREG = 1,
    parameter BMULTSEL = "B",
    parameter integer BREG = 1,
    parameter B_INPUT = "DIRECT",
    parameter integer CARRYINREG = 1,
    parameter integer CARRYINSELREG = 1,
    parameter integer CREG = 1,
    parameter integer DREG = 1,
    parameter integer INMODEREG = 1,
    parameter [3:0] IS_ALUMODE_INVERTED = 4'b0000,
    parameter [0:0] IS_CARRYIN_INVERTED = 1'b0,
    parameter [0:0] IS_CLK_INVERTED = 1'b0,
    parameter [4:0] IS_INMODE_INVERTED = 5'b00000,
    parameter [8:0] IS_OPMODE_INVERTED = 9'b000000000,
    parameter [0:0] IS_RSTALLCARRYIN_INVERTED = 1'b0,
    parameter [0:0] IS_RSTALUMODE_INVERTED = 1'b0,
    parameter [0:0] IS_RSTA_INVERTED = 1'b0,
    parameter [0:0] IS_RSTB_INVERTED = 1'b0,
    parameter [0:0] IS_RSTCTRL_INVERTED = 1'b0,
    parameter [0:0] IS_RSTC_INVERTED = 1'b0,
    parameter [0:0] IS_RSTD_INVERTED = 1'b0,
    parameter [0:0] IS_RSTINMODE_INVERTED = 1'b0,
    parameter [0:0] IS_RSTM_INVERTED = 1'b0,
    parameter [0:0] IS_RSTP_INVERTED = 1'b0,
    parameter [47:0] MASK = 48'h3FFFFFFFFFFF,
    parameter integer MREG = 1,
    parameter integer OPMODEREG = 1,
    parameter [47:0] PATTERN = 48'h000000000000,
    parameter PREADDINSEL = "A",
    parameter integer PREG = 1,
    parameter [47:0] RND = 48'h000000000000,
    parameter SEL_MASK = "MASK",
    parameter SEL_PATTERN = "PATTERN",
    parameter USE_MULT = "MULTIPLY",
    parameter USE_PATTERN_DETECT = "NO_PATDET",
    parameter USE_SIMD = "ONE48",
    parameter USE_WIDEXOR = "FALSE",
    parameter XORSIMD = "XOR24_48_96"
) (
    output [29:0] ACOUT,
    output [17:0] BCOUT,
    output CARRYCASCOUT,
    output [3:0] CARRYOUT,
    output MULTSIGNOUT,
    output OVERFLOW,
    output [47:0] P,
    output PATTERNBDETECT,
    output PATTERNDETECT,
    output [47:0] PCOUT,
    output UNDERFLOW,
    output [7:0] XOROUT,
    input [29:0] A,
    input [29:0] ACIN,
    input [3:0] ALUMODE,
    input [17:0] B,
    input [17:0] BCIN,
    input [47:0] C,
    input CARRYCASCIN,
    input CARRYIN,
    input [2:0] CARRYINSEL,
    input CEA1,
    input CEA2,
    input CEAD,
    input CEALUMODE,
    input CEB1,
    input CEB2,
    input CEC,
    input CECARRYIN,
    input CECTRL,
    input CED,
    input CEINMODE,
    input CEM,
    input CEP,
    input CLK,
    input [26:0] D,
    input [4:0] INMODE,
    input MULTSIGNIN,
    input [8:0] OPMODE,
    input [47:0] PCIN,
    input RSTA,
    input RSTALLCARRYIN,
    input RSTALUMODE,
    input RSTB,
    input RSTC,
    input RSTCTRL,
    input RSTD,
    input RSTINMODE,
    input RSTM,
    input RSTP
);
    initial begin
        if (AREG > 1 || BREG > 2 || CREG > 1 || DREG > 1 || ADREG > 1 || MREG > 1 || PREG > 1 ||
            OPMODEREG > 1 || INMODEREG > 1 || ALUMODEREG > 1 || AREG < 0 || BREG < 0 || CREG < 0 ||
            DREG < 0 || ADREG < 0 || MREG < 0 || PREG < 0 || OPMODEREG < 0 || INMODEREG < 0 || ALUMODEREG < 0)
            $fatal(1, "DSP48E2 model: only 0 or 1 register per stage is modelled");
        if (ACASCREG != AREG || BCASCREG > BREG || (BCASCREG == 0) != (BREG == 0))
            $fatal(1, "DSP48E2 model: ACASCREG must equal AREG, BCASCREG be 1..BREG (0 if BREG = 0)");
        if (A_INPUT != "DIRECT" || B_INPUT != "DIRECT" || PREADDINSEL != "A" || BMULTSEL != "B" ||
            (AMULTSEL != "A" && AMULTSEL != "AD") || USE_MULT != "MULTIPLY" || USE_SIMD != "ONE48" ||
            USE_PATTERN_DETECT != "NO_PATDET" || USE_WIDEXOR != "FALSE")
            $fatal(1, "DSP48E2 model: unmodelled A/B input, pre-adder, multiplier, SIMD or pattern setting");
        if (IS_ALUMODE_INVERTED != 0 || IS_CARRYIN_INVERTED != 0 || IS_CLK_INVERTED != 0 ||
            IS_INMODE_INVERTED != 0 || IS_OPMODE_INVERTED != 0 || IS_RSTALLCARRYIN_INVERTED != 0 ||
            IS_RSTALUMODE_INVERTED != 0 || IS_RSTA_INVERTED != 0 || IS_RSTB_INVERTED != 0 ||
            IS_RSTCTRL_INVERTED != 0 || IS_RSTC_INVERTED != 0 || IS_RSTD_INVERTED != 0 ||
            IS_RSTINMODE_INVERTED != 0 || IS_RSTM_INVERTED != 0 || IS_RSTP_INVERTED != 0)
            $fatal(1, "DSP48E2 model: inverted pins are not modelled");
    end

    reg [29:0] a_r = 0;
    reg [17:0] b1_r = 0;
    reg [17:0] b2_r = 0;
    reg [47:0] c_r = 0;
    reg [26:0] d_r = 0;
    reg [26:0] ad_r = 0;
    reg [47:0] m_r = 0;
    reg [47:0] p_r = 0;
    reg [8:0] opmode_r = 0;
    reg [4:0] inmode_r = 0;
    reg [3:0] alumode_r = 0;

    wire [29:0] a_q = AREG ? a_r : A;
    wire [17:0] b_q = BREG ? b2_r : B;   // B2: one register, or B1 then B2
    wire [47:0] c_q = CREG ? c_r : C;
    wire [26:0] d_q = DREG ? d_r : D;
    wire [8:0] opmode = OPMODEREG ? opmode_r : OPMODE;
    wire [4:0] inmode = INMODEREG ? inmode_r : INMODE;
    wire [3:0] alumode = ALUMODEREG ? alumode_r : ALUMODE;

    // pre-adder (UG579 table 2-4): INMODE[1] gates A, INMODE[2] enables D, INMODE[3] subtracts A
    wire [26:0] pre_a = inmode[1] ? 27'd0 : a_q[26:0];
    wire [26:0] pre_d = inmode[2] ? d_q : 27'd0;
    wire [26:0] ad = inmode[3] ? pre_d - pre_a : pre_d + pre_a;
    wire [26:0] ad_q = ADREG ? ad_r : ad;

    // 27 x 18 signed multiplier, sign-extended to the ALU's 48 bits
    wire [26:0] mult_a = (AMULTSEL == "AD") ? ad_q : a_q[26:0];
    wire signed [44:0] product = $signed(mult_a) * $signed(b_q);
    wire [47:0] m_d = {{3{product[44]}}, product};
    wire [47:0] m_q = MREG ? m_r : m_d;

    // X/Y/Z/W multiplexers (UG579 tables 2-7 to 2-10); X = Y = 01 selects the product once
    reg [47:0] x, y, z, w;
    always @* begin
        case (opmode[1:0])
            2'b00: x = 48'd0;
            2'b01: x = m_q;
            2'b10: x = p_r;
            default: x = {a_q, b_q};
        endcase
        case (opmode[3:2])
            2'b00, 2'b01: y = 48'd0;
            2'b10: y = {48{1'b1}};
            default: y = c_q;
        endcase
        case (opmode[6:4])
            3'b000: z = 48'd0;
            3'b001: z = PCIN;
            3'b010: z = p_r;
            3'b011: z = c_q;
            3'b100: z = p_r;
            3'b101: z = {{17{PCIN[47]}}, PCIN[47:17]};
            3'b110: z = {{17{p_r[47]}}, p_r[47:17]};
            default: z = 48'd0;
        endcase
        case (opmode[8:7])
            2'b00: w = 48'd0;
            2'b01: w = p_r;
            2'b10: w = RND;
            default: w = c_q;
        endcase
    end
    wire [47:0] alu = z + w + x + y + {47'd0, CARRYIN};
    assign P = PREG ? p_r : alu;
    assign PCOUT = P;

    always @(posedge CLK) begin
        if (AREG) a_r <= RSTA ? 30'd0 : (CEA2 ? A : a_r);
        if (BREG == 2) b1_r <= RSTB ? 18'd0 : (CEB1 ? B : b1_r);
        if (BREG) b2_r <= RSTB ? 18'd0 : (CEB2 ? (BREG == 2 ? b1_r : B) : b2_r);
        if (CREG) c_r <= RSTC ? 48'd0 : (CEC ? C : c_r);
        if (DREG) d_r <= RSTD ? 27'd0 : (CED ? D : d_r);
        if (ADREG) ad_r <= RSTD ? 27'd0 : (CEAD ? ad : ad_r);
        if (MREG) m_r <= RSTM ? 48'd0 : (CEM ? m_d : m_r);
        if (OPMODEREG) opmode_r <= RSTCTRL ? 9'd0 : (CECTRL ? OPMODE : opmode_r);
        if (INMODEREG) inmode_r <= RSTINMODE ? 5'd0 : (CEINMODE ? INMODE : inmode_r);
        if (ALUMODEREG) alumode_r <= RSTALUMODE ? 4'd0 : (CEALUMODE ? ALUMODE : alumode_r);
        p_r <= RSTP ? 48'd0 : (CEP ? alu : p_r);
        // configurations the slice does not have, or this model does not cover
        if (alumode !== 4'b0000 || CARRYINSEL !== 3'b000 || inmode[0] !== 1'b0 || inmode[4] !== 1'b0)
            $fatal(1, "DSP48E2 model: ALUMODE %b, CARRYINSEL %b or INMODE %b not modelled", alumode, CARRYINSEL,
                   inmode);
        if ((opmode[1:0] == 2'b01) !== (opmode[3:2] == 2'b01) || (opmode[6:4] == 3'b100 && opmode[3:0] != 4'b1000)
            || opmode[6:4] === 3'b111)
            $fatal(1, "DSP48E2 model: OPMODE %b is not a legal DSP48E2 setting", opmode);
    end

    // outputs the gateware leaves unconnected: unknown rather than a guess
    assign ACOUT = 30'bx;
    assign BCOUT = 18'bx;
    assign CARRYCASCOUT = 1'bx;
    assign CARRYOUT = 4'bx;
    assign MULTSIGNOUT = 1'bx;
    assign OVERFLOW = 1'bx;
    assign PATTERNBDETECT = 1'bx;
    assign PATTERNDETECT = 1'bx;
    assign UNDERFLOW = 1'bx;
    assign XOROUT = 8'bx;
endmodule
