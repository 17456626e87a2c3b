"""Score errors, verdict agreement and the held-out split, on hand-made outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from linegate.config.schema import PostprocessSection
from linegate.engine.accuracy import (
    agreement,
    assess,
    error_stats,
    frames_to_resolve,
    holdout_split,
    is_held_out,
    reject_mask,
    scores_of,
)

PROBS = PostprocessSection(classes=("pass", "reject"), reject_thresholds={"reject": 0.5})
LOGITS = PostprocessSection(classes=("pass", "reject"), scores="logits", reject_thresholds={"reject": 0.5})


def test_error_stats_max_mean_p99_and_relative() -> None:
    """Max, mean and 99th percentile of |c - r| over all values; relative error divides by |r|."""
    ref = np.array([[1.0, 2.0], [4.0, 0.5]], dtype=np.float32)
    cand = np.array([[1.1, 2.0], [3.0, 0.5]], dtype=np.float32)
    stats = error_stats(ref, cand)
    assert stats.max_abs == pytest.approx(1.0)
    assert stats.mean_abs == pytest.approx((0.1 + 1.0) / 4, rel=1e-5)
    assert stats.p99_abs == pytest.approx(float(np.percentile([0.1, 0.0, 1.0, 0.0], 99)), rel=1e-5)
    assert stats.max_rel == pytest.approx(0.25, rel=1e-5)  # 1.0 / 4.0 beats 0.1 / 1.0


def test_relative_error_of_an_exact_zero_uses_the_floor() -> None:
    """A reference of exactly 0 divides by 1e-6 instead of by zero."""
    stats = error_stats(np.array([[0.0]]), np.array([[1e-7]]))
    assert stats.max_rel == pytest.approx(0.1)


def test_error_stats_refuses_different_shapes() -> None:
    """Outputs of different shapes are not comparable: ValueError naming both shapes."""
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(2, 3\)"):
        error_stats(np.zeros((2, 2)), np.zeros((2, 3)))


def test_logits_are_compared_as_probabilities() -> None:
    """With scores = 'logits' each row is softmaxed first; probabilities pass unchanged."""
    logits = np.array([[0.0, np.log(3.0)]])
    np.testing.assert_allclose(scores_of(logits, LOGITS), [[0.25, 0.75]])
    assert scores_of(logits, PROBS) is logits


def test_verdicts_come_from_the_runtime_thresholds() -> None:
    """A reject score that reaches its threshold rejects; just below passes (the runtime's classifier)."""
    outputs = np.array([[0.5, 0.5], [0.50001, 0.49999], [0.1, 0.9]], dtype=np.float32)
    assert reject_mask(outputs, PROBS).tolist() == [True, False, True]


def test_agreement_counts_both_kinds_of_disagreement() -> None:
    """Missed rejects (reference rejects, candidate passes) and false rejects are counted apart."""
    ref = np.array([True, True, False, False, True])
    cand = np.array([True, False, False, True, True])
    a = agreement(ref, cand)
    assert (a.frames, a.agree, a.missed_rejects, a.false_rejects) == (5, 3, 1, 1)
    assert (a.reference_rejects, a.candidate_rejects) == (3, 3)
    assert a.share == pytest.approx(0.6)


def test_assess_reports_per_class_errors_on_probabilities() -> None:
    """assess() names outputs by class and measures errors after the softmax of logits."""
    ref = np.array([[0.0, 0.0], [2.0, 0.0]])
    cand = np.array([[0.0, np.log(3.0)], [2.0, 0.0]])
    result = assess(ref, cand, LOGITS)
    assert list(result.per_output) == ["pass", "reject"]
    assert result.errors.max_abs == pytest.approx(0.25)  # 0.5 -> 0.75 on the first frame
    assert result.per_output["reject"].max_abs == pytest.approx(0.25)
    assert (result.agreement.frames, result.agreement.agree) == (2, 2)  # both reject at 0.5 and 0.75, both pass
    assert result.as_dict()["verdicts"]["agreement"] == 1.0


def test_frames_needed_before_one_disagreement_is_tolerated() -> None:
    """At 99.5% one disagreement needs 200 frames; at 99% 100; at 100% none is ever tolerated."""
    assert frames_to_resolve(0.995) == 200
    assert frames_to_resolve(0.99) == 100
    assert frames_to_resolve(1.0) == 0
    assert 199 / 200 >= 0.995 and 198 / 199 < 0.995


def test_split_is_by_name_only_and_stable_when_files_are_added() -> None:
    """A file's side of the split depends on its name alone: adding files moves none of the others."""
    names = [Path(f"frame-{i:05d}.png") for i in range(2000)]
    calib, held = holdout_split(names, 0.2)
    assert len(calib) + len(held) == 2000 and set(calib).isdisjoint(held)
    assert 0.17 < len(held) / 2000 < 0.23
    more_calib, more_held = holdout_split([*names, *(Path(f"late-{i}.png") for i in range(500))], 0.2)
    assert set(held) <= set(more_held) and set(calib) <= set(more_calib)
    assert [is_held_out(p.name, 0.2) for p in held] == [True] * len(held)
