"""How far a candidate model (INT8, FP16, another backend) is from its reference, frame by frame (pure).

Scores are compared as the reject thresholds see them (softmax applied when the model gives
logits), and each frame's verdict comes from the runtime's own :class:`Classifier`, so agreement
means the same reject decisions on the line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.config.schema import PostprocessSection
from linegate.timing.deadline import Verdict
from linegate.vision.postprocess import Classifier

Outputs = npt.NDArray[np.floating]
"""One row per frame: the model's flattened output."""

REL_FLOOR = 1e-6
"""Relative errors divide by max(|reference|, this), so exact zeros do not divide by zero."""


@dataclass(frozen=True)
class ErrorStats:
    """Absolute and relative error of candidate against reference over a set of values."""

    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Agreement:
    """Verdicts of reference and candidate on the same frames."""

    frames: int
    agree: int
    reference_rejects: int
    candidate_rejects: int
    missed_rejects: int
    """Reference rejects, candidate passes: a bad part would go through."""
    false_rejects: int
    """Reference passes, candidate rejects: a good part would be pulled."""

    @property
    def share(self) -> float:
        """Agreeing frames / frames (1.0 for no frames: nothing disagreed)."""
        return self.agree / self.frames if self.frames else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "agreement": self.share}


@dataclass(frozen=True)
class Assessment:
    """Errors over all scores, per output element, and verdict agreement."""

    errors: ErrorStats
    per_output: dict[str, ErrorStats]
    agreement: Agreement

    def as_dict(self) -> dict[str, Any]:
        return {
            "score_error": self.errors.as_dict(),
            "per_output": {name: e.as_dict() for name, e in self.per_output.items()},
            "verdicts": self.agreement.as_dict(),
        }


def error_stats(reference: Outputs, candidate: Outputs) -> ErrorStats:
    """Max, mean and 99th-percentile absolute error and max relative error over all elements."""
    if reference.shape != candidate.shape:
        raise ValueError(f"reference outputs {reference.shape} and candidate outputs {candidate.shape} differ")
    if reference.size == 0:
        return ErrorStats(0.0, 0.0, 0.0, 0.0)
    ref = reference.astype(np.float64)
    diff = np.abs(candidate.astype(np.float64) - ref)
    rel = diff / np.maximum(np.abs(ref), REL_FLOOR)
    return ErrorStats(float(diff.max()), float(diff.mean()), float(np.percentile(diff, 99)), float(rel.max()))


def scores_of(outputs: Outputs, post: PostprocessSection) -> Outputs:
    """Rows as the thresholds see them: softmax of each row for logits, else unchanged."""
    if post.scores != "logits":
        return outputs
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    probabilities: Outputs = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities


def reject_mask(outputs: Outputs, post: PostprocessSection) -> npt.NDArray[np.bool_]:
    """Each row's verdict from the runtime's classifier: True where it rejects."""
    classify = Classifier(post)
    return np.array([classify(row).verdict is Verdict.REJECT for row in outputs], dtype=bool)


def agreement(reference_rejects: npt.NDArray[np.bool_], candidate_rejects: npt.NDArray[np.bool_]) -> Agreement:
    """Count agreeing verdicts and the two kinds of disagreement."""
    ref, cand = reference_rejects, candidate_rejects
    return Agreement(
        frames=int(ref.size),
        agree=int(np.count_nonzero(ref == cand)),
        reference_rejects=int(np.count_nonzero(ref)),
        candidate_rejects=int(np.count_nonzero(cand)),
        missed_rejects=int(np.count_nonzero(ref & ~cand)),
        false_rejects=int(np.count_nonzero(~ref & cand)),
    )


def assess(reference: Outputs, candidate: Outputs, post: PostprocessSection) -> Assessment:
    """Errors on the scores the thresholds see (overall and per class) and verdict agreement."""
    ref_scores, cand_scores = scores_of(reference, post), scores_of(candidate, post)
    names = list(post.classes) if reference.shape[1] == len(post.classes) else []
    names = names or [f"output[{i}]" for i in range(reference.shape[1])]
    per_output = {name: error_stats(ref_scores[:, i], cand_scores[:, i]) for i, name in enumerate(names)}
    verdicts = agreement(reject_mask(reference, post), reject_mask(candidate, post))
    return Assessment(error_stats(ref_scores, cand_scores), per_output, verdicts)


def frames_to_resolve(min_agreement: float) -> int:
    """The fewest frames on which a single disagreement still keeps agreement >= *min_agreement*."""
    if min_agreement >= 1.0:
        return 0  # no number of frames tolerates a disagreement
    return int(np.ceil(1.0 / (1.0 - min_agreement) - 1e-9))


def is_held_out(name: str, share: float) -> bool:
    """Deterministic, order-free split: the file's name hashed to [0, 1) is below *share*."""
    value = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") / 2**64
    return value < share


def holdout_split(paths: Sequence[Path], share: float) -> tuple[list[Path], list[Path]]:
    """(calibration, held-out): each file by :func:`is_held_out` on its name, order kept."""
    held = [is_held_out(p.name, share) for p in paths]
    return [p for p, h in zip(paths, held, strict=True) if not h], [p for p, h in zip(paths, held, strict=True) if h]
