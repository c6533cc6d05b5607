"""`dspflight perplexity`: the command line of dspflight.perplexity."""
from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

from compiler.weights.checkpoint import load_checkpoint
from compiler.weights.profile import load_compression
from dspflight.cliargs import design, positive
from dspflight.perplexity import DEFAULT_TOKENS, default_text, perplexity_rows, table
from hwmodel.atomic import OutputSet
from hwmodel.errors import DspflightError
from hwmodel.hwconfig import load_hw


def handler(args: argparse.Namespace) -> int:
    hw = load_hw(args.hw)
    comps = [load_compression(c, hw) for c in args.compression]
    if args.text:
        try:
            text = Path(args.text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DspflightError(f"{args.text}: cannot read the text ({exc.__class__.__name__}: {exc})") from None
    else:
        text = default_text()
    with OutputSet(args.out) if args.out else nullcontext() as out:
        ck = load_checkpoint(args.checkpoint)
        t0 = time.perf_counter()
        rows = perplexity_rows(ck, comps, text, args.tokens, hw if args.executor else None,
                               lambda name: print(f"  {name} done ({time.perf_counter() - t0:.0f} s)", flush=True))
        if out is not None:
            report = {"checkpoint": args.checkpoint, "model": ck.model.name, "text": args.text or "pydoc_data.topics",
                      "hw": hw.name, "rows": [asdict(r) for r in rows]}
            out.add_bytes("perplexity.json", (json.dumps(report, indent=1) + "\n").encode())
            names = out.commit()
    print(table(rows))
    if args.out:
        print(f"wrote {', '.join(names)} to {args.out}")
    return 0 if all(r.agrees is not False for r in rows) else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("perplexity", help="perplexity of a checkpoint and of its compressed forms, technique "
                                                 "by technique")
    p.add_argument("--checkpoint", default="smollm2", help="a .gguf file or smollm2 (a checkpoint with a tokenizer)")
    p.add_argument("--compression", nargs="+", default=["dense-int8", "flightllm"], help="compression profiles")
    p.add_argument("--text", help="UTF-8 text file (default: Python's language reference, pydoc_data.topics)")
    p.add_argument("--tokens", type=positive, default=DEFAULT_TOKENS, help="tokens to evaluate")
    p.add_argument("--hw", type=design, default="u280", help="hardware design the profiles are checked against "
                                                             "and the executor runs")
    p.add_argument("--executor", action="store_true", help="also run each integer model's compiled program on the "
                                                           "functional executor and check it agrees (slow)")
    p.add_argument("-o", "--out", help="also write perplexity.json into this directory (default: print only)")
    p.set_defaults(func=handler)
