"""Verilog export, Yosys resource reports and cocotb benches for the gateware."""
