from __future__ import annotations

import numpy as np
import pytest

from podium.core.ensemble import (
    clip_probabilities,
    hard_vote,
    logit,
    scale_logits,
    sigmoid,
    soft_vote,
)


def test_soft_vote_weighted_mean():
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    b = np.array([[0.5, 0.5], [0.6, 0.4]])
    np.testing.assert_allclose(soft_vote([a, b]), [[0.7, 0.3], [0.4, 0.6]])
    np.testing.assert_allclose(soft_vote([a, b], weights=[3, 1]), [[0.8, 0.2], [0.3, 0.7]])
    with pytest.raises(ValueError, match="2 weights"):
        soft_vote([a, b], weights=[1])
    with pytest.raises(ValueError, match="not all zero"):
        soft_vote([a, b], weights=[0, 0])


def test_hard_vote_weighted_majority_from_labels():
    votes = [np.array([0, 1, 2]), np.array([1, 1, 0]), np.array([1, 2, 0])]
    np.testing.assert_array_equal(hard_vote(votes, n_classes=3), [1, 1, 0])
    # one heavy model outvotes two light ones
    np.testing.assert_array_equal(hard_vote(votes, weights=[3, 1, 1], n_classes=3), [0, 1, 2])


def test_hard_vote_tie_broken_by_summed_probability_then_lowest_index():
    p1 = np.array([[0.6, 0.4, 0.0], [0.5, 0.5, 0.0]])
    p2 = np.array([[0.1, 0.9, 0.0], [0.5, 0.5, 0.0]])
    # row 0: one vote each for 0 and 1; summed probability 0.7 vs 1.3 -> class 1
    # row 1: both argmax to 0 (lowest index among equal probabilities) -> class 0
    np.testing.assert_array_equal(hard_vote([p1, p2]), [1, 0])
    # labels only: a 1-1 tie goes to the lowest index
    np.testing.assert_array_equal(hard_vote([np.array([2]), np.array([1])], n_classes=3), [1])
    # float weights that sum to a tie (0.1 + 0.2 vs 0.3) still count as a tie
    labels = [np.array([2]), np.array([2]), np.array([1])]
    np.testing.assert_array_equal(hard_vote(labels, weights=[0.1, 0.2, 0.3], n_classes=3), [1])


def test_hard_vote_mixed_inputs_and_validation():
    probs = np.array([[0.2, 0.8]])
    assert hard_vote([probs, np.array([1])]).tolist() == [1]
    with pytest.raises(ValueError, match="labels must lie"):
        hard_vote([np.array([3])], n_classes=2)


def test_scale_logits_calibration():
    assert scale_logits(0.5, 0.7) == pytest.approx(0.5)
    p = np.array([0.1, 0.3, 0.8, 0.99])
    scaled = scale_logits(p, 0.7)
    assert (np.abs(scaled - 0.5) < np.abs(p - 0.5)).all()
    assert ((scaled > 0.5) == (p > 0.5)).all()
    np.testing.assert_allclose(scale_logits(p, 1.0), p)
    extreme = scale_logits(np.array([0.0, 1.0]), 0.5)
    assert np.isfinite(extreme).all() and 0 < extreme[0] < 0.01 and 0.99 < extreme[1] < 1
    assert scale_logits(p, 0.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        scale_logits(p, float("nan"))


def test_logit_clip_sigmoid():
    assert np.isfinite(logit(np.array([0.0, 1.0]))).all()
    np.testing.assert_allclose(sigmoid(logit([0.2, 0.5, 0.9])), [0.2, 0.5, 0.9])
    assert np.isfinite(sigmoid(np.array([-1000.0, 1000.0]))).all()
    assert clip_probabilities([0.0, 1.0], eps=0.01).tolist() == [0.01, 0.99]
    with pytest.raises(ValueError, match="NaN"):
        clip_probabilities([np.nan])
