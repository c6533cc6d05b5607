"""The HBM image: what `compiler.weights.pack` writes and the functional executor runs,
defined once. In memory it is the program's logical HBM address space; on
disk (.npz) the per-pseudo-channel images the placement gives
(`hwmodel/placement.py`), the host's embedding table and the meta (JSON)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwmodel.errors import ProgramFormatError, SimulationError
from hwmodel.hwconfig import HwConfig
from hwmodel.placement import Placement


@dataclass
class HbmImage:
    hbm: np.ndarray          # uint8, HBM bytes from address 0 to the end of the last I/O area
    embed: np.ndarray        # float16 [vocab, hidden]: the host's embedding table (the FP16 residual stream)
    meta: dict               # vocab, hidden, program SHA-256, placement, ...

    def channel_images(self, hw: HwConfig) -> np.ndarray:
        """The image as each HBM pseudo-channel holds it, [channel][bytes], placed
        by the program's placement."""
        return Placement.from_json(self.meta["placement"], hw, "HBM image").channel_images(self.hbm, hw)

    def save(self, path: str | Path, hw: HwConfig) -> Path:
        """One .npz: the per-channel images, the embedding table and the meta (JSON)."""
        path = Path(path)
        meta = dict(self.meta, burst_bytes=hw.hbm.burst_bytes)
        with open(path, "wb") as f:
            np.savez(f, channels=self.channel_images(hw), embed=self.embed,
                     meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        return path

    @classmethod
    def load(cls, path: str | Path, hw: HwConfig) -> "HbmImage":
        """Read a saved image: per-PC images gathered back into the logical address
        space by the placement they were saved with."""
        try:
            with np.load(path) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                placement = Placement.from_json(meta["placement"], hw, str(path))
                return cls(placement.from_channel_images(z["channels"], hw), z["embed"], meta)
        except (OSError, KeyError, ValueError, ProgramFormatError) as exc:
            raise SimulationError(f"{path}: not an HBM image of this design ({exc})") from None
