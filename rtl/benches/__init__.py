"""cocotb benches: one TB class per design, run through `rtl.runner`."""
