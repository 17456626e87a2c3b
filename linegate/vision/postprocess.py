"""Classification scores to a pass/reject verdict with per-class thresholds (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from linegate.config.schema import PostprocessSection
from linegate.timing.deadline import Verdict


@dataclass(frozen=True)
class Decision:
    """The model's verdict for one frame, with the score that decided it and its class."""

    verdict: Verdict
    score: float
    label: str


class Classifier:
    """Reject when any reject class's probability reaches its threshold; else pass."""

    def __init__(self, cfg: PostprocessSection) -> None:
        self.classes = cfg.classes
        self._logits = cfg.scores == "logits"
        # (class index, threshold as the float32 the model's scores are compared in)
        self._rejects = [
            (cfg.classes.index(name), float(np.float32(threshold))) for name, threshold in cfg.reject_thresholds.items()
        ]

    def __call__(self, output: npt.NDArray[np.floating]) -> Decision:
        scores = output.reshape(-1)
        if scores.size != len(self.classes):
            raise ValueError(f"model output has {scores.size} scores, config names {len(self.classes)} classes")
        if self._logits:
            shifted = np.exp(scores - scores.max())
            scores = shifted / shifted.sum()
        # Python floats from here: for a handful of classes, a few list operations cost a third of
        # the numpy calls they replace, and this runs once per frame on the frame's path.
        values: list[float] = scores.tolist()
        best, best_margin = -1, 0.0
        for index, threshold in self._rejects:
            margin = values[index] - threshold
            if margin >= 0 and (best < 0 or margin > best_margin):
                best, best_margin = index, margin
        if best >= 0:
            return Decision(Verdict.REJECT, values[best], self.classes[best])
        best = max(range(len(values)), key=values.__getitem__)
        return Decision(Verdict.PASS, values[best], self.classes[best])
