"""LightGBM stacking on per-video features (a DFDC write-up's second stage).

:func:`video_features` summarises one video: statistics of its frame scores (mean, median,
max, min, std, quantiles), face-detection confidence (mean, min), the number of faces and
the share of sampled frames with a face. :func:`stack_out_of_fold` trains one LightGBM per
fold on the other folds' videos (the same folds as the CNNs, so no video is scored by a
model that saw it) and returns out-of-fold probabilities; :func:`fit_stacker` and
:func:`predict_stacker` train on all training videos and score the test videos.

A video with no face has NaN frame-score statistics: LightGBM treats them as missing values
(its own branch), so the stacker still returns a probability for it.
No kedro or mlflow imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from podium.core.config import ParameterError, check_range
from podium.pipelines.deepfake.scoring import binary_log_loss

__all__ = [
    "compare_with_mean",
    "feature_table",
    "fit_stacker",
    "lgbm_settings",
    "predict_stacker",
    "stack_out_of_fold",
    "video_features",
]

_SECTION = "deepfake.stacking"
#: Parameters podium always sets (a binary objective, quiet, reproducible).
_FIXED = {"objective": "binary", "verbosity": -1, "deterministic": True}
_ROUNDS_KEYS = ("num_boost_round", "num_iterations", "n_estimators", "num_rounds", "num_trees")


def video_features(
    frame_probs: Sequence[float] | np.ndarray,
    confidences: Sequence[float] | np.ndarray,
    n_faces: int,
    n_frames_sampled: int,
    quantiles: Sequence[float] = (0.1, 0.25, 0.75, 0.9),
) -> dict[str, float]:
    """Features of one video (a flat dict, one future table row).

    ``frame_probs``: the fake probability of each scored face (frames without a face have
    none); ``confidences``: the detector's confidence of each detected face; ``n_faces``:
    faces detected over the sampled frames; ``n_frames_sampled``: frames sampled. Keys:
    ``score_mean``, ``score_median``, ``score_max``, ``score_min``, ``score_std``,
    ``score_q<NN>`` per quantile, ``conf_mean``, ``conf_min``, ``n_faces``,
    ``face_frame_share`` (scored faces / sampled frames, capped at 1). Statistics of an
    empty list are NaN (LightGBM's missing value).
    """
    p = np.asarray(frame_probs, dtype=np.float64).ravel()
    p = p[np.isfinite(p)]
    c = np.asarray(confidences, dtype=np.float64).ravel()
    c = c[np.isfinite(c)]
    if n_frames_sampled < 1:
        raise ValueError(f"n_frames_sampled must be >= 1, got {n_frames_sampled}")
    for q in quantiles:
        check_range(f"{_SECTION}.quantiles", q, low=0.0, high=1.0)
    nan = float("nan")
    has = len(p) > 0
    row = {
        "score_mean": float(p.mean()) if has else nan,
        "score_median": float(np.median(p)) if has else nan,
        "score_max": float(p.max()) if has else nan,
        "score_min": float(p.min()) if has else nan,
        "score_std": float(p.std()) if has else nan,
    }
    for q in quantiles:
        row[f"score_q{round(q * 100):02d}"] = float(np.quantile(p, q)) if has else nan
    row["conf_mean"] = float(c.mean()) if len(c) else nan
    row["conf_min"] = float(c.min()) if len(c) else nan
    row["n_faces"] = float(n_faces)
    row["face_frame_share"] = float(min(len(p) / n_frames_sampled, 1.0))
    return row


def feature_table(rows: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Video name -> :func:`video_features` dict, as a DataFrame indexed by ``video``."""
    table = pd.DataFrame.from_dict(dict(rows), orient="index")
    table.index.name = "video"
    return table.astype(np.float64)


def lgbm_settings(lgbm_params: Mapping | None, seed: int) -> tuple[dict, int]:
    """LightGBM's parameters with podium's (``objective``, ``seed``, ...) and the number of
    rounds, given exactly once (``num_boost_round`` or an alias); errors name
    ``deepfake.stacking.lgbm.<key>``."""
    params = dict(lgbm_params or {})
    rounds = [k for k in _ROUNDS_KEYS if k in params]
    if len(rounds) != 1:
        raise ParameterError(
            f"{_SECTION}.lgbm",
            f"give the number of boosting rounds exactly once as num_boost_round, got "
            f"{rounds or 'none'}",
        )
    n_rounds = params.pop(rounds[0])
    check_range(f"{_SECTION}.lgbm.{rounds[0]}", n_rounds, low=1)
    for key in ("objective", "seed", "random_state"):
        if key in params:
            raise ParameterError(
                f"{_SECTION}.lgbm.{key}",
                "is set by podium (binary objective; the run's seed); remove it",
            )
    return {**params, **_FIXED, "seed": int(seed)}, int(n_rounds)


def _check_inputs(features: pd.DataFrame, y) -> tuple[pd.DataFrame, np.ndarray]:
    if not isinstance(features, pd.DataFrame):
        raise TypeError("features must be a DataFrame (one row per video)")
    y_arr = np.asarray(y, dtype=np.float64)
    if y_arr.shape != (len(features),):
        raise ValueError(f"{len(y_arr)} labels for {len(features)} feature rows")
    if not np.isin(y_arr, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 (REAL) or 1 (FAKE)")
    return features.astype(np.float64), y_arr


def fit_stacker(
    features: pd.DataFrame, y: Sequence[int] | np.ndarray, lgbm_params: Mapping, seed: int
) -> lgb.Booster:
    """One LightGBM (binary objective) on all rows. ``lgbm_params`` is LightGBM's params
    dict with ``num_boost_round``; on ~50 videos set e.g. ``min_data_in_leaf: 3`` and
    ``min_data_in_bin: 1`` or it grows no tree."""
    x, y_arr = _check_inputs(features, y)
    params, n_rounds = lgbm_settings(lgbm_params, seed)
    data = lgb.Dataset(x, label=y_arr, free_raw_data=True, params={"verbosity": -1})
    return lgb.train(params, data, num_boost_round=n_rounds)


def predict_stacker(model: lgb.Booster, features: pd.DataFrame) -> np.ndarray:
    """Probabilities of ``features`` rows; columns are matched by name to the training ones."""
    names = model.feature_name()
    missing = [n for n in names if n not in features.columns]
    if missing:
        raise ValueError(f"features lack the stacker's column(s) {missing}")
    return np.asarray(model.predict(features[names].astype(np.float64)), dtype=np.float64)


def stack_out_of_fold(
    features: pd.DataFrame,
    y: Sequence[int] | np.ndarray,
    folds: Sequence[int] | np.ndarray,
    lgbm_params: Mapping,
    seed: int,
) -> np.ndarray:
    """Out-of-fold probabilities: for each fold, a stacker fitted on the other folds' rows
    predicts that fold's rows (use the CNNs' folds)."""
    x, y_arr = _check_inputs(features, y)
    fold_arr = np.asarray(folds)
    if fold_arr.shape != (len(x),):
        raise ValueError(f"{len(fold_arr)} folds for {len(x)} feature rows")
    if len(np.unique(fold_arr)) < 2:
        raise ValueError("out-of-fold stacking needs at least two folds")
    oof = np.full(len(x), np.nan)
    for fold in np.unique(fold_arr):
        valid = fold_arr == fold
        model = fit_stacker(x[~valid], y_arr[~valid], lgbm_params, seed)
        oof[valid] = predict_stacker(model, x[valid])
    assert np.isfinite(oof).all(), "every row is predicted once"
    return oof


def compare_with_mean(
    y: Sequence[int] | np.ndarray,
    stacked: Sequence[float] | np.ndarray,
    features: pd.DataFrame,
    prior: float,
    eps: float,
) -> dict[str, float]:
    """Log loss of the stacker beside the plain mean of frame scores (``score_mean``; a
    video with no face gets ``prior``): ``{"log_loss_stacked", "log_loss_mean"}``."""
    mean = features["score_mean"].to_numpy(dtype=np.float64)
    mean = np.where(np.isfinite(mean), mean, prior)
    return {
        "log_loss_stacked": binary_log_loss(y, stacked, eps),
        "log_loss_mean": binary_log_loss(y, mean, eps),
    }
