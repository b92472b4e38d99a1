"""From frame probabilities to one calibrated probability per video.

* :func:`video_score` turns a video's frame (face) probabilities into one score: ``mean``
  (the write-ups' default), ``median``, ``confident_strategy`` (the DFDC 1st place rule,
  :func:`confident_strategy`), ``power_weighted`` (the 3rd place rule, :func:`power_weighted`),
  or ``confident_mean`` (a podium heuristic, not the 1st place
  rule: it pools every frame outside the confidence band ``[band_low, band_high]``, fakes
  and reals together, falling back to the plain mean when every frame is inside it). A video
  with no usable face scores the training ``prior``: never NaN.
* :func:`average_logits` ensembles models in logit space (a weighted mean of logits).
* :func:`fit_logit_scale` finds the constant ``c`` in ``bounds`` that minimises log loss of
  ``sigmoid(c * logit(p))`` (the DFDC write-ups' "scale the logit by a constant < 1");
  :func:`fit_calibration` fits ``c``, a logit shift ``b``, or both (Platt scaling): the
  shift puts back the class prior that class-balanced training removed.
  :func:`calibrate` applies ``sigmoid(c * logit(p) + b)`` and clips to
  ``[clip_low, clip_high]``; :func:`prior_shift` adds the log-odds difference between the
  training prior and a deployment prior (DFDC's test set: 0.5 FAKE, its training 0.8).

No kedro or mlflow imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar

from podium.core.config import ParameterError, check_range
from podium.core.ensemble import logit, scale_logits, sigmoid, soft_vote
from podium.pipelines.deepfake.params import CalibrationParams, VideoScoreParams

__all__ = [
    "SCORE_RULES",
    "average_logits",
    "binary_log_loss",
    "calibrate",
    "confident_strategy",
    "fit_calibration",
    "fit_logit_scale",
    "log_loss_before_after",
    "power_weighted",
    "prior_shift",
    "score_videos",
    "training_prior",
    "video_score",
]

#: Rules of :func:`video_score`.
SCORE_RULES = ("mean", "confident_strategy", "confident_mean", "median", "power_weighted")
_SCORE = "deepfake.video_score"
_CALIBRATION = "deepfake.calibration"


def binary_log_loss(
    y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, eps: float
) -> float:
    """Mean binary log loss with probabilities clipped to ``[eps, 1 - eps]`` (DFDC clips)."""
    y_arr = np.asarray(y, dtype=np.float64)
    p_arr = np.asarray(p, dtype=np.float64)
    if y_arr.shape != p_arr.shape or y_arr.ndim != 1:
        raise ValueError(f"y {y_arr.shape} and p {p_arr.shape} must be equal 1-D shapes")
    if len(y_arr) == 0:
        raise ValueError("log loss of no items")
    if np.isnan(p_arr).any():
        raise ValueError("probabilities contain NaN")
    if not np.isin(y_arr, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 (REAL) or 1 (FAKE)")
    q = np.clip(p_arr, eps, 1.0 - eps)
    return float(-np.mean(y_arr * np.log(q) + (1.0 - y_arr) * np.log1p(-q)))


def training_prior(y_train: Sequence[int] | np.ndarray) -> float:
    """Share of FAKE among training videos: the score of a video with no usable face."""
    y = np.asarray(y_train, dtype=np.float64)
    if len(y) == 0:
        raise ValueError("no training labels to take a prior from")
    return float(y.mean())


def _check_prior(prior: float) -> float:
    check_range(f"{_SCORE}.prior", prior, low=0.0, high=1.0)
    return float(prior)


def confident_strategy(
    frame_probs: Sequence[float] | np.ndarray, low: float = 0.2, high: float = 0.8
) -> float:
    """The DFDC 1st place video score (selimsef's ``confident_strategy``) of finite frame
    probabilities; ``low=0.2, high=0.8`` are the winner's thresholds.

    With ``n`` frames and ``k`` of them above ``high``: if ``k > n / 2.5`` and ``k > 11``,
    the mean of those ``k`` frames; else, if more than ``0.9 * n`` frames are below ``low``,
    the mean of those; else the mean of all ``n``. (The winner writes ``k > n // 2.5``: the
    same test, since ``k`` is an integer.) Each branch averages a non-empty set, so any
    ``n >= 1`` gives a number; no frame -> ``ValueError`` (:func:`video_score` gives the
    prior instead).
    """
    p = np.asarray(frame_probs, dtype=np.float64).ravel()
    n = len(p)
    if n == 0:
        raise ValueError("confident_strategy of a video with no frame")
    fake = p > high
    k = int(np.count_nonzero(fake))
    if k > n / 2.5 and k > 11:
        return float(p[fake].mean())
    real = p < low
    if np.count_nonzero(real) > 0.9 * n:
        return float(p[real].mean())
    return float(p.mean())


def power_weighted(frame_probs: Sequence[float] | np.ndarray, power: float = 0.65) -> float:
    """The DFDC 3rd place video score, for uncertain (pair-mixup) models: each frame's
    ``d = p - 0.5`` becomes ``clip(0.5 + sign(d) |d|^power, 0.01, 0.99)``, and the video
    scores the mean of those weighted by ``|d| + 1e-4`` (confident frames count more)."""
    p = np.asarray(frame_probs, dtype=np.float64).ravel()
    if len(p) == 0:
        raise ValueError("power_weighted of a video with no frame")
    d = p - 0.5
    pushed = np.clip(0.5 + np.sign(d) * np.abs(d) ** power, 0.01, 0.99)
    return float(np.average(pushed, weights=np.abs(d) + 1e-4))


def prior_shift(training_prior: float, target_prior: float | None) -> float:
    """The logit shift that moves a model calibrated at ``training_prior`` to a deployment
    share of FAKE ``target_prior``: the difference of their log-odds (0 for None)."""
    if target_prior is None:
        return 0.0
    CalibrationParams.model_validate({"target_prior": target_prior})
    if not 0.0 < training_prior < 1.0:
        raise ParameterError(
            f"{_CALIBRATION}.target_prior",
            f"a prior shift needs both priors inside (0, 1), got training {training_prior} and "
            f"target {target_prior}",
        )
    return float(np.log(target_prior / (1 - target_prior))) - float(
        np.log(training_prior / (1 - training_prior))
    )


def video_score(
    frame_probs: Sequence[float] | np.ndarray,
    rule: str,
    prior: float,
    band_low: float = 0.2,
    band_high: float = 0.8,
) -> float:
    """One probability for a video from its frame probabilities (NaNs = unusable frames).

    ``rule``: ``mean``, ``median``, ``confident_strategy`` (the DFDC 1st place rule with
    ``band_low``/``band_high`` as its 0.2/0.8 thresholds, see :func:`confident_strategy`) or
    ``confident_mean`` (podium's heuristic, not the 1st place rule: the mean of every frame
    with p < band_low or p > band_high pooled together, else the plain mean). No usable
    frame -> ``prior``.
    """
    VideoScoreParams.model_validate({"rule": rule, "band_low": band_low, "band_high": band_high})
    prior = _check_prior(prior)
    p = np.asarray(frame_probs, dtype=np.float64).ravel()
    p = p[np.isfinite(p)]
    if len(p) == 0:
        return prior
    if rule == "median":
        return float(np.median(p))
    if rule == "confident_strategy":
        return confident_strategy(p, band_low, band_high)
    if rule == "power_weighted":
        return power_weighted(p)
    if rule == "confident_mean":
        sure = p[(p < band_low) | (p > band_high)]
        if len(sure):
            return float(sure.mean())
    return float(p.mean())


def score_videos(
    frame_probs: Mapping[str, Sequence[float]],
    videos: Sequence[str],
    rule: str,
    prior: float,
    band_low: float = 0.2,
    band_high: float = 0.8,
) -> pd.Series:
    """:func:`video_score` of every name in ``videos`` (absent from ``frame_probs`` = no
    usable face -> ``prior``), as a Series named ``prob`` indexed by video."""
    scores = [video_score(frame_probs.get(v, ()), rule, prior, band_low, band_high) for v in videos]
    return pd.Series(scores, index=pd.Index(list(videos), name="video"), name="prob")


def average_logits(
    prob_list: Sequence[Sequence[float] | np.ndarray],
    weights: Sequence[float] | None = None,
    eps: float = 1e-6,
) -> np.ndarray:
    """``sigmoid`` of the weighted mean of the models' logits (``weights`` normalised; None:
    equal). Probabilities are clipped to ``[eps, 1 - eps]`` first, so 0 and 1 stay finite."""
    if len(prob_list) == 0:
        raise ValueError("average_logits needs at least one model's predictions")
    return sigmoid(soft_vote([logit(p, eps) for p in prob_list], weights))


def _bounds(bounds: Sequence[float]) -> tuple[float, float]:
    low, high = CalibrationParams.model_validate({"scale_bounds": tuple(bounds)}).scale_bounds
    return float(low), float(high)


def _shifted(p: Sequence[float] | np.ndarray, factor: float, shift: float, eps: float):
    if not np.isfinite(shift):
        raise ValueError(f"shift must be a finite number, got {shift!r}")
    if shift == 0.0:
        return scale_logits(p, factor, eps)
    return sigmoid(logit(scale_logits(p, factor, eps), eps) + shift)


def fit_logit_scale(
    y: Sequence[int] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    bounds: tuple[float, float] = (0.05, 1.0),
    eps: float = 1e-6,
    shift: float = 0.0,
) -> float:
    """The ``c`` in ``bounds`` minimising the log loss of ``sigmoid(c * logit(p) + shift)``
    on ``y`` (bounded Brent search; fit it on out-of-fold predictions, never on the test set)."""
    low, high = _bounds(bounds)
    y_arr = np.asarray(y)

    def loss(c: float) -> float:
        return binary_log_loss(y_arr, _shifted(p, c, shift, eps), eps)

    result = minimize_scalar(loss, bounds=(low, high), method="bounded")
    best = float(result.x)
    # the bounded search never evaluates the ends exactly; keep an end that is better
    for end in (low, high):
        if loss(end) < loss(best):
            best = end
    return best


def fit_calibration(
    y: Sequence[int] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    factor: float | str = "fit",
    shift: float | str = 0.0,
    bounds: tuple[float, float] = (0.05, 1.0),
    shift_bounds: tuple[float, float] = (-10.0, 10.0),
    eps: float = 1e-6,
) -> tuple[float, float]:
    """``(c, b)`` for ``sigmoid(c * logit(p) + b)``: each a fixed number or ``"fit"``.

    ``factor="fit", shift=0`` is the write-ups' constant; ``shift="fit"`` adds the intercept
    of Platt scaling. Fit on out-of-fold predictions only.
    """
    CalibrationParams.model_validate({"factor": factor, "shift": shift})
    if shift != "fit":
        c = fit_logit_scale(y, p, bounds, eps, float(shift)) if factor == "fit" else float(factor)
        return c, float(shift)
    y_arr = np.asarray(y)
    c_bounds = _bounds(bounds) if factor == "fit" else (float(factor),) * 2

    def loss(params: np.ndarray) -> float:
        return binary_log_loss(y_arr, _shifted(p, params[0], params[1], eps), eps)

    start = np.array([min(max(1.0, c_bounds[0]), c_bounds[1]), 0.0])
    result = minimize(loss, start, method="L-BFGS-B", bounds=[c_bounds, tuple(shift_bounds)])
    return float(result.x[0]), float(result.x[1])


def calibrate(
    p: Sequence[float] | np.ndarray,
    factor: float,
    clip_low: float,
    clip_high: float,
    eps: float = 1e-6,
    shift: float = 0.0,
) -> np.ndarray:
    """``sigmoid(factor * logit(p) + shift)`` clipped to ``[clip_low, clip_high]``."""
    CalibrationParams.model_validate({"clip_low": clip_low, "clip_high": clip_high})
    return np.clip(_shifted(p, factor, shift, eps), clip_low, clip_high)


def log_loss_before_after(
    y: Sequence[int] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    factor: float,
    clip_low: float,
    clip_high: float,
    eps: float,
    shift: float = 0.0,
) -> dict:
    """Log loss (clipped with ``eps``) of the raw and of the calibrated probabilities:
    ``{"log_loss_before", "log_loss_after", "logit_scale", "logit_shift"}``."""
    calibrated = calibrate(p, factor, clip_low, clip_high, shift=shift)
    return {
        "log_loss_before": binary_log_loss(y, p, eps),
        "log_loss_after": binary_log_loss(y, calibrated, eps),
        "logit_scale": float(factor),
        "logit_shift": float(shift),
    }
