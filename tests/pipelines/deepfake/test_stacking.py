"""Per-video features and the out-of-fold LightGBM stacker."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from podium.core.config import ParameterError
from podium.pipelines.deepfake.stacking import (
    compare_with_mean,
    feature_table,
    fit_stacker,
    predict_stacker,
    stack_out_of_fold,
    video_features,
)

# small-sample settings: without min_data_in_leaf / min_data_in_bin LightGBM grows no tree
PARAMS = {
    "num_boost_round": 40,
    "learning_rate": 0.1,
    "num_leaves": 4,
    "min_data_in_leaf": 3,
    "min_data_in_bin": 1,
    "num_threads": 1,
}
N_FRAMES = 10
EPS = 1e-15


def test_video_features_by_hand():
    row = video_features([0.1, 0.2, 0.3, 0.4], [0.99, 0.95, 0.9, 0.96], 5, 8)
    assert row["score_mean"] == pytest.approx(0.25)
    assert row["score_median"] == pytest.approx(0.25)
    assert (row["score_min"], row["score_max"]) == (0.1, 0.4)
    assert row["score_std"] == pytest.approx(np.std([0.1, 0.2, 0.3, 0.4]))
    assert row["score_q25"] == pytest.approx(np.quantile([0.1, 0.2, 0.3, 0.4], 0.25))
    assert {"score_q10", "score_q75", "score_q90"} <= set(row)
    assert row["conf_mean"] == pytest.approx(0.95) and row["conf_min"] == 0.9
    assert row["n_faces"] == 5 and row["face_frame_share"] == 0.5


def test_video_without_faces_has_missing_score_features_only():
    row = video_features([], [], 0, 8)
    assert np.isnan(row["score_mean"]) and np.isnan(row["conf_min"])
    assert row["n_faces"] == 0 and row["face_frame_share"] == 0.0


def _videos(n: int, seed: int):
    """Fakes are manipulated in only a few frames: the mean barely moves, the max does."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    rows = {}
    for i, label in enumerate(y):
        p = rng.beta(2, 5, N_FRAMES)
        if label:
            p[rng.choice(N_FRAMES, 2, replace=False)] = rng.uniform(0.85, 0.99, 2)
        rows[f"v{i:03d}.mp4"] = video_features(p, rng.uniform(0.9, 1.0, N_FRAMES), 10, 10)
    return feature_table(rows), y


def test_out_of_fold_stacking_beats_the_plain_mean():
    features, y = _videos(60, seed=0)
    folds = np.arange(60) % 3
    oof = stack_out_of_fold(features, y, folds, PARAMS, seed=0)
    assert oof.shape == (60,) and np.isfinite(oof).all()
    report = compare_with_mean(y, oof, features, prior=0.5, eps=EPS)
    assert report["log_loss_stacked"] < report["log_loss_mean"] - 0.05, report


def test_out_of_fold_predictions_come_from_models_that_never_saw_the_rows():
    features, y = _videos(45, seed=1)
    folds = np.arange(45) % 3
    oof = stack_out_of_fold(features, y, folds, PARAMS, seed=0)
    for fold in range(3):
        valid = folds == fold
        model = fit_stacker(features[~valid], y[~valid], PARAMS, seed=0)
        np.testing.assert_allclose(oof[valid], predict_stacker(model, features[valid]))
    # and it is reproducible
    np.testing.assert_array_equal(oof, stack_out_of_fold(features, y, folds, PARAMS, seed=0))


def test_stacker_scores_test_videos_including_one_without_faces():
    features, y = _videos(40, seed=2)
    model = fit_stacker(features, y, PARAMS, seed=0)
    test = feature_table(
        {
            "fake.mp4": video_features([0.2, 0.95, 0.97, 0.3], [0.99] * 4, 4, 4),
            "noface.mp4": video_features([], [], 0, 4),
        }
    )
    p = predict_stacker(model, test[test.columns[::-1]])  # column order does not matter
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    with pytest.raises(ValueError, match="score_max"):
        predict_stacker(model, test.drop(columns="score_max"))


def test_lgbm_params_need_one_round_count_and_leave_objective_to_podium():
    features, y = _videos(20, seed=3)
    no_rounds = {k: v for k, v in PARAMS.items() if k != "num_boost_round"}
    with pytest.raises(ParameterError, match=r"deepfake\.stacking\.lgbm"):
        fit_stacker(features, y, no_rounds, seed=0)
    with pytest.raises(ParameterError, match=r"deepfake\.stacking\.lgbm\.objective"):
        fit_stacker(features, y, {**PARAMS, "objective": "regression"}, seed=0)


def test_compare_with_mean_gives_faceless_videos_the_prior():
    features = pd.DataFrame({"score_mean": [0.9, np.nan]})
    report = compare_with_mean([1, 0], [0.9, 0.1], features, prior=0.1, eps=EPS)
    assert report["log_loss_mean"] == pytest.approx(report["log_loss_stacked"])
