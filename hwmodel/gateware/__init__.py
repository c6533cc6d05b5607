"""Amaranth gateware of the matrix engine's building blocks."""
