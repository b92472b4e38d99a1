"""Video score rules, logit-space ensembling and the logit-scale calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from podium.core.config import ParameterError
from podium.core.ensemble import logit, sigmoid
from podium.pipelines.deepfake.scoring import (
    average_logits,
    binary_log_loss,
    calibrate,
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


@pytest.mark.parametrize("rule", ["mean", "median", "confident_mean"])
def test_no_usable_face_scores_the_prior_never_nan(rule):
    assert video_score([], rule, prior=0.8) == 0.8
    assert video_score([float("nan"), float("nan")], rule, prior=0.8) == 0.8
    assert video_score([0.2, float("nan")], rule, prior=0.8) == pytest.approx(0.2)


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
