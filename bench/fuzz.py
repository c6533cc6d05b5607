"""Long fuzzing runs: every bad input refused cleanly (issue 11).

    .venv/bin/python bench/fuzz.py programs --n 100000 [--first 0]
    .venv/bin/python bench/fuzz.py configs --n 10000 [--seed 0]

`programs` mutates a small compiled program (bench/fuzz_programs.py),
`configs` the shipped config files (bench/fuzz_config_files.py); each prints
the count of each outcome, the peak memory, the slowest case and the command
that reproduces a case. Targets: no crash, every case <= 5 s, peak <= 1 GB.
Each part lives in its own module and registers one subcommand.
"""
from __future__ import annotations

import argparse
import sys

from fuzz_config_files import register as register_configs
from fuzz_programs import register as register_programs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="part", required=True)
    register_programs(sub)
    register_configs(sub)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
