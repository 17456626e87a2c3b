"""Scores to verdicts with per-class thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from linegate.config.schema import PostprocessSection
from linegate.timing.deadline import Verdict
from linegate.vision.postprocess import Classifier

CLASSES = ("good", "scratch", "dent")


@pytest.mark.parametrize(
    ("scores", "verdict", "label"),
    [
        ([0.9, 0.05, 0.05], Verdict.PASS, "good"),
        ([0.5, 0.3, 0.2], Verdict.PASS, "good"),  # scratch below 0.4, dent below 0.7
        ([0.5, 0.4, 0.1], Verdict.REJECT, "scratch"),  # exactly at threshold rejects
        ([0.1, 0.2, 0.7], Verdict.REJECT, "dent"),
        ([0.0, 0.45, 0.55], Verdict.REJECT, "scratch"),  # the class furthest past its threshold
    ],
)
def test_thresholds_per_class(scores, verdict, label) -> None:  # type: ignore[no-untyped-def]
    """Reject when any reject class reaches its own threshold; report the deciding class."""
    cfg = PostprocessSection(classes=CLASSES, reject_thresholds={"scratch": 0.4, "dent": 0.7})
    decision = Classifier(cfg)(np.array([scores], dtype=np.float32))
    assert (decision.verdict, decision.label) == (verdict, label)


def test_logits_are_softmaxed() -> None:
    """With scores = 'logits' the thresholds apply to softmax probabilities."""
    cfg = PostprocessSection(classes=("pass", "reject"), scores="logits", reject_thresholds={"reject": 0.5})
    clf = Classifier(cfg)
    assert clf(np.array([[3.0, 0.0]])).verdict is Verdict.PASS
    decision = clf(np.array([[0.0, 3.0]]))
    assert decision.verdict is Verdict.REJECT
    assert decision.score == pytest.approx(np.exp(3) / (1 + np.exp(3)), rel=1e-5)


def test_wrong_output_size_is_an_error() -> None:
    """An output that does not match the configured classes is refused, naming both sizes."""
    cfg = PostprocessSection(classes=("pass", "reject"), reject_thresholds={"reject": 0.5})
    with pytest.raises(ValueError, match="3 scores, config names 2 classes"):
        Classifier(cfg)(np.zeros((1, 3), dtype=np.float32))
