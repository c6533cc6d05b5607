"""The accelerator, described once: configuration, ISA, cost formulas, gateware."""
