"""Video score rules, logit-space ensembling and the logit-scale calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from podium.core.config import ParameterError
from podium.core.ensemble import logit, sigmoid
from podium.pipelines.deepfake import scoring
from podium.pipelines.deepfake.scoring import (
    average_logits,
    binary_log_loss,
    calibrate,
    confident_strategy,
    fit_calibration,
    fit_logit_scale,
    log_loss_before_after,
    score_videos,
    training_prior,
    video_score,
)

EPS = 1e-15


def test_video_score_rules():
    p = [0.1, 0.5, 0.55, 0.95, 0.9]
    assert video_score(p, "mean", prior=0.3) == pytest.approx(np.mean(p))
    assert video_score(p, "median", prior=0.3) == pytest.approx(0.55)
    # frames outside the band [0.2, 0.8] are 0.1, 0.95, 0.9
    assert video_score(p, "confident_mean", 0.3, 0.2, 0.8) == pytest.approx(1.95 / 3)
    # every frame inside the band: fall back to the plain mean
    assert video_score([0.4, 0.6, 0.7], "confident_mean", 0.3, 0.2, 0.8) == pytest.approx(
        np.mean([0.4, 0.6, 0.7])
    )


@pytest.mark.parametrize("rule", ["mean", "median", "confident_strategy", "confident_mean"])
def test_no_usable_face_scores_the_prior_never_nan(rule):
    assert video_score([], rule, prior=0.8) == 0.8
    assert video_score([float("nan"), float("nan")], rule, prior=0.8) == 0.8
    assert video_score([0.2, float("nan")], rule, prior=0.8) == pytest.approx(0.2)


# --------------------------------------------------- the DFDC 1st place rule, from its definition


def _winner_rule_reference(probs: list[float]) -> tuple[float, str]:
    """The 1st place rule written from its definition with plain loops (no numpy): n frames,
    k with p > 0.8; k > n/2.5 and k > 11 -> mean of those; else more than 0.9n with
    p < 0.2 -> mean of those; else the mean of all. Returns (score, branch)."""
    n = len(probs)
    high = []
    low = []
    for q in probs:
        if q > 0.8:
            high.append(q)
        if q < 0.2:
            low.append(q)
    if len(high) > n / 2.5 and len(high) > 11:
        return math.fsum(high) / len(high), "fake"
    if len(low) > 0.9 * n:
        return math.fsum(low) / len(low), "real"
    return math.fsum(probs) / n, "all"


def _random_video(rng: np.random.Generator) -> list[float]:
    n = int(rng.integers(1, 65))
    # per video, a mixture of uniform, near-0 and near-1 frames with random weights, so
    # mostly-fake, mostly-real and mixed videos all occur
    weights = rng.dirichlet([0.4, 0.4, 0.4])
    kinds = rng.choice(3, size=n, p=weights)
    probs = []
    for kind in kinds:
        if kind == 0:
            probs.append(float(rng.uniform(0.0, 1.0)))
        elif kind == 1:
            probs.append(float(rng.uniform(0.0, 0.25)))
        else:
            probs.append(float(rng.uniform(0.75, 1.0)))
    return probs


def test_confident_strategy_matches_the_definition_on_random_videos():
    rng = np.random.default_rng(15)
    branches = {"fake": 0, "real": 0, "all": 0}
    for _ in range(2000):
        probs = _random_video(rng)
        expected, branch = _winner_rule_reference(probs)
        branches[branch] += 1
        got = video_score(probs, "confident_strategy", prior=0.5)
        assert math.isfinite(got)
        assert abs(got - expected) <= 1e-12, (probs, branch, got, expected)
        assert abs(confident_strategy(np.array(probs)) - expected) <= 1e-12
    assert all(count >= 1 for count in branches.values()), branches


def test_confident_strategy_worked_example_differs_from_confident_mean():
    probs = [0.95] * 20 + [0.1] * 12  # k = 20 > 32 / 2.5 = 12.8 and > 11
    assert video_score(probs, "confident_strategy", prior=0.5) == pytest.approx(0.95, abs=1e-12)
    # confident_mean pools every frame outside [0.2, 0.8]: (20 * 0.95 + 12 * 0.1) / 32
    assert video_score(probs, "confident_mean", prior=0.5) == pytest.approx(0.63125, abs=1e-12)


def test_confident_strategy_boundaries():
    def score(probs):
        return video_score(probs, "confident_strategy", prior=0.5)

    # k exactly n / 2.5 (30 / 2.5 = 12) is not enough; one more is
    assert score([0.9] * 12 + [0.5] * 18) == pytest.approx((12 * 0.9 + 18 * 0.5) / 30)
    assert score([0.9] * 13 + [0.5] * 17) == pytest.approx(0.9)
    assert score([0.9] * 14 + [0.5] * 21) == pytest.approx((14 * 0.9 + 21 * 0.5) / 35)
    assert score([0.9] * 15 + [0.5] * 20) == pytest.approx(0.9)
    # k = 11 fails the k > 11 test even above n / 2.5; k = 12 passes
    assert score([0.9] * 11 + [0.5] * 9) == pytest.approx((11 * 0.9 + 9 * 0.5) / 20)
    assert score([0.9] * 12 + [0.5] * 8) == pytest.approx(0.9)
    assert score([0.9] * 11) == pytest.approx(0.9)  # all 11 fake, still the plain mean path
    assert score([0.9] * 11 + [0.99]) == pytest.approx((11 * 0.9 + 0.99) / 12)  # k = 12 = n
    # exactly 0.9n low frames is not enough; more is
    assert score([0.1] * 18 + [0.5] * 2) == pytest.approx((18 * 0.1 + 2 * 0.5) / 20)
    assert score([0.1] * 19 + [0.5]) == pytest.approx(0.1)
    assert score([0.1] * 9 + [0.6]) == pytest.approx((9 * 0.1 + 0.6) / 10)
    assert score([0.1] * 27 + [0.6] * 3) == pytest.approx((27 * 0.1 + 3 * 0.6) / 30)
    # the thresholds are strict: 0.8 is not fake, 0.2 is not real
    assert score([0.8] * 20) == pytest.approx(0.8)
    assert score([0.2] * 9 + [0.1]) == pytest.approx(0.19)
    # one frame: its own value on every path, never NaN
    assert score([0.9]) == pytest.approx(0.9) and score([0.1]) == pytest.approx(0.1)
    assert score([0.5]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no frame"):
        confident_strategy([])


def test_n_over_2_5_is_the_winners_floor_division_for_integer_k():
    # the winner's code tests ``k > n // 2.5``; for an integer k that is ``k > n / 2.5``
    for n in range(1, 129):
        for k in range(n + 1):
            assert (k > n / 2.5) == (k > n // 2.5), (n, k)


def test_score_videos_gives_the_prior_to_videos_without_faces():
    prior = training_prior([1, 1, 1, 0])
    scores = score_videos({"a.mp4": [0.9, 0.7]}, ["a.mp4", "b.mp4"], "mean", prior)
    assert scores.to_dict() == {"a.mp4": pytest.approx(0.8), "b.mp4": 0.75}
    assert scores.name == "prob" and not scores.isna().any()


def test_bad_rule_and_prior_name_the_parameter():
    with pytest.raises(ParameterError, match=r"deepfake\.video_score\.rule.*'median'"):
        video_score([0.5], "medain", prior=0.5)
    with pytest.raises(ParameterError, match=r"deepfake\.video_score\.prior"):
        video_score([0.5], "mean", prior=1.5)
    with pytest.raises(ParameterError, match=r"rule.*did you mean 'confident_strategy'"):
        video_score([0.5], "confident_strategie", prior=0.5)


def test_average_logits_is_the_sigmoid_of_the_weighted_mean_logit():
    a, b = np.array([0.9, 0.2]), np.array([0.6, 0.5])
    out = average_logits([a, b], weights=[3, 1])
    expected = sigmoid(0.75 * logit(a) + 0.25 * logit(b))
    np.testing.assert_allclose(out, expected)
    # a confident model and an unsure one: logit averaging keeps more confidence than
    # probability averaging would
    assert out[0] > 0.75 * 0.9 + 0.25 * 0.6
    # hard 0/1 predictions stay finite
    assert np.isfinite(average_logits([np.array([0.0, 1.0])])).all()


def test_fit_logit_scale_recovers_a_known_overconfidence():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < sigmoid(true_logit)).astype(int)
    overconfident = sigmoid(true_logit * 4.0)  # the right scale is 1/4
    c = fit_logit_scale(y, overconfident, bounds=(0.05, 1.0))
    assert c == pytest.approx(0.25, abs=0.03)
    result = log_loss_before_after(y, overconfident, c, 0.01, 0.99, EPS)
    assert result["log_loss_after"] < result["log_loss_before"] - 0.1
    assert result["logit_scale"] == c


def test_fit_logit_scale_keeps_the_upper_bound_for_calibrated_input():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.3, 0.7, 500)
    y = (rng.random(500) < p).astype(int)
    sharper = sigmoid(logit(p) * 0.3)  # underconfident: wants c > 1, capped at the bound
    assert fit_logit_scale(y, sharper, bounds=(0.05, 1.0)) == 1.0
    with pytest.raises(ParameterError, match=r"deepfake\.calibration\.scale_bounds"):
        fit_logit_scale(y, p, bounds=(1.0, 0.5))


def test_calibrate_scales_then_clips():
    out = calibrate([0.001, 0.5, 0.999999, 0.0], factor=0.5, clip_low=0.01, clip_high=0.95)
    assert out[0] == pytest.approx(sigmoid(0.5 * logit(0.001)))  # ~0.03: scaled, not clipped
    assert out[1] == 0.5 and out[2] == 0.95 and out[3] == 0.01
    with pytest.raises(ParameterError, match=r"deepfake\.calibration\.clip_low"):
        calibrate([0.5], 0.5, clip_low=0.7, clip_high=0.9)


def test_binary_log_loss_clips_like_dfdc():
    assert binary_log_loss([1, 0], [0.5, 0.5], EPS) == pytest.approx(math.log(2))
    # a confident wrong answer costs -log(eps), not infinity
    assert binary_log_loss([1], [0.0], 1e-6) == pytest.approx(-math.log(1e-6))
    with pytest.raises(ValueError, match="NaN"):
        binary_log_loss([1], [float("nan")], EPS)


def test_fit_calibration_shift_restores_a_prior_hidden_by_balanced_training():
    rng = np.random.default_rng(2)
    true_logit = rng.normal(1.4, 1.0, 4000)  # ~80% FAKE, as in DFDC
    y = (rng.random(4000) < sigmoid(true_logit)).astype(int)
    balanced = sigmoid(true_logit - 1.4)  # what a class-balanced model outputs: prior removed
    scale_only = fit_calibration(y, balanced, factor="fit", shift=0.0)
    platt = fit_calibration(y, balanced, factor="fit", shift="fit")
    assert scale_only[1] == 0.0
    assert platt[0] == pytest.approx(1.0, abs=0.1)
    assert platt[1] == pytest.approx(1.4, abs=0.15)
    loss = {
        name: log_loss_before_after(y, balanced, c, 0.01, 0.99, EPS, shift=b)["log_loss_after"]
        for name, (c, b) in {"scale": scale_only, "platt": platt}.items()
    }
    assert loss["platt"] < loss["scale"] - 0.05
    # a fixed factor with a fitted shift moves only the shift
    assert fit_calibration(y, balanced, factor=0.5, shift="fit")[0] == 0.5
    with pytest.raises(ParameterError, match=r"deepfake\.calibration\.shift"):
        fit_calibration(y, balanced, shift="platt")


def test_calibrate_applies_the_shift_after_the_scale():
    out = calibrate([0.5, 0.8], factor=0.5, clip_low=0.01, clip_high=0.99, shift=1.0)
    np.testing.assert_allclose(out, sigmoid(0.5 * logit(np.array([0.5, 0.8])) + 1.0))


def _power_weighted_by_definition(probs):
    """The 3rd place rule from its definition, in plain Python."""
    pushed, weights = [], []
    for p in probs:
        d = p - 0.5
        sign = 1.0 if d > 0 else (-1.0 if d < 0 else 0.0)
        pushed.append(min(max(0.5 + sign * abs(d) ** 0.65, 0.01), 0.99))
        weights.append(abs(d) + 1e-4)
    return sum(q * w for q, w in zip(pushed, weights, strict=True)) / sum(weights)


def test_power_weighted_is_the_third_place_rule_on_random_videos():
    rng = np.random.default_rng(0)
    for _ in range(1000):
        probs = rng.uniform(0, 1, rng.integers(1, 40))
        assert scoring.power_weighted(probs) == pytest.approx(
            _power_weighted_by_definition(probs), rel=1e-12, abs=1e-12
        )
    # worked example: p = 0.9 -> d = 0.4 -> 0.5 + 0.4^0.65 = 1.0515 -> clipped to 0.99
    assert scoring.power_weighted([0.9]) == pytest.approx(0.99)
    # 0.6 and 0.1: pushed 0.5 + 0.1^0.65 = 0.7239 and 0.5 - 0.4^0.65 -> 0.01, weights 0.1, 0.4
    expected = (0.1001 * (0.5 + 0.1**0.65) + 0.4001 * 0.01) / (0.1001 + 0.4001)
    assert scoring.video_score([0.6, 0.1], "power_weighted", 0.5) == pytest.approx(expected)


def test_the_prior_shift_moves_a_calibrated_probability_by_the_log_odds_difference():
    rng = np.random.default_rng(1)
    for _ in range(1000):
        train, target = rng.uniform(0.05, 0.95, 2)
        p = rng.uniform(0.02, 0.98)
        shifted = scoring.calibrate([p], 1.0, 0.0, 1.0, shift=scoring.prior_shift(train, target))[0]
        odds = lambda q: math.log(q / (1 - q))  # noqa: E731 - the definition, inline
        assert odds(shifted) - odds(p) == pytest.approx(odds(target) - odds(train), abs=1e-6)
    # DFDC: trained at 80% FAKE, deployed at 50%: the logit moves by log(1/4) = -1.386
    assert scoring.prior_shift(0.8, 0.5) == pytest.approx(-math.log(4))
    assert scoring.prior_shift(0.8, None) == 0.0
    with pytest.raises(ParameterError, match="target_prior"):
        scoring.prior_shift(0.8, 1.0)


def test_confident_strategy_is_the_mean_on_ten_frames_or_fewer():
    """Why the rule cannot help conf/base (n_frames: 8): its first branch needs more than
    11 confident frames, its second more than 0.9n frames below 0.2, i.e. all of them for
    n <= 10, whose mean is the plain mean. From 11 frames on the two part."""
    rng = np.random.default_rng(7)
    for _ in range(2000):
        n = int(rng.integers(1, 11))
        probs = rng.choice([rng.uniform(0, 0.2, n), rng.uniform(0, 1, n), rng.uniform(0.8, 1, n)])
        assert confident_strategy(probs) == pytest.approx(float(np.mean(probs)), abs=1e-12)
    eleven = np.array([0.1] * 10 + [0.9])  # 10 of 11 below 0.2: their mean, not all 11's
    assert confident_strategy(eleven) == pytest.approx(0.1)
    assert float(np.mean(eleven)) == pytest.approx(0.1727, abs=1e-4)
