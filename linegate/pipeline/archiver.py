"""The inference loop's side of the reject image archive: which decided frames to offer, with what
metadata. The offer copies the frame into the archive's shared memory or drops it at once (counted
there); a supervisor thread writes the files (:mod:`linegate.archive`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.archive.queue import ArchiveProducer
from linegate.archive.sampling import ArchiveSampler
from linegate.config.schema import Config
from linegate.ring import FrameMeta
from linegate.timing.deadline import Basis, Verdict

_KEPT = ("camera", "label", "score", "total_ms", "preprocess_ms", "infer_ms", "stages")
"""Fields of the frame's record that go into the image's metadata."""


class Archiver:
    """Every reject and 1 in ``archive.passes_one_in`` passes, with part id, verdict, basis, scores,
    model and timestamps."""

    def __init__(self, producer: ArchiveProducer, cfg: Config) -> None:
        self.producer = producer
        self.sampler = ArchiveSampler(cfg.archive.passes_one_in)
        self.model_id = cfg.model.id

    def wants(self, verdict: Verdict) -> bool:
        """Whether this decided frame goes to the archive (call once per frame that could)."""
        return self.sampler.wants(verdict is Verdict.REJECT)

    def offer(
        self,
        pixels: npt.NDArray[np.uint8],
        meta: FrameMeta,
        verdict: Verdict,
        basis: Basis,
        record: dict[str, Any],
        t_done_ns: int,
    ) -> bool:
        """Hand the frame to the archive without waiting; False if it was dropped (counted there)."""
        info = {
            "part_id": meta.part_id,
            "seq": meta.seq,
            "frame_id": meta.frame_id,
            "verdict": verdict.value,
            "basis": basis.value,
            "model": self.model_id,
            "t_acquired_ns": meta.t_acquired_ns,
            "t_done_ns": t_done_ns,
            **{key: record[key] for key in _KEPT if key in record},
        }
        return self.producer.offer(pixels, info)
