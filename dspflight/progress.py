"""A one-line progress bar on stderr for long work (silent when not a terminal)."""
from __future__ import annotations

import sys
import time
from typing import Callable


def progress_bar(label: str, enabled: bool | None = None) -> Callable[[int, int], None]:
    """Returns a callback `(done, total)` that redraws `label [#####.....] done/total`."""
    stream = sys.stderr
    on = stream.isatty() if enabled is None else enabled
    t0 = time.perf_counter()

    def update(done: int, total: int) -> None:
        if not on:
            return
        width = 30
        filled = width * done // max(total, 1)
        stream.write(f"\r{label:<9} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                     f"{time.perf_counter() - t0:5.1f}s")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return update
