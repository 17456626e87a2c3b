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
        names = list(cfg.reject_thresholds)
        self._reject_index = np.array([cfg.classes.index(n) for n in names], dtype=np.intp)
        self._thresholds = np.array([cfg.reject_thresholds[n] for n in names], dtype=np.float32)

    def __call__(self, output: npt.NDArray[np.floating]) -> Decision:
        scores = output.reshape(-1)
        if scores.size != len(self.classes):
            raise ValueError(f"model output has {scores.size} scores, config names {len(self.classes)} classes")
        if self._logits:
            shifted = np.exp(scores - scores.max())
            scores = shifted / shifted.sum()
        reject_scores = scores[self._reject_index]
        margin = reject_scores - self._thresholds
        k = int(np.argmax(margin))
        if margin[k] >= 0:
            return Decision(Verdict.REJECT, float(reject_scores[k]), self.classes[int(self._reject_index[k])])
        best = int(np.argmax(scores))
        return Decision(Verdict.PASS, float(scores[best]), self.classes[best])
