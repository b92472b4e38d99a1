"""Node-level behaviour that the end-to-end run does not pin down."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from podium.core.config import ParameterError
from podium.pipelines.deepfake.data import settings_key
from podium.pipelines.deepfake.nodes import (
    assign_folds,
    ensemble_and_calibrate,
    evaluate,
    stack_videos,
)

CALIBRATION = {
    "factor": 1.0,
    "shift": 0.0,
    "scale_bounds": [0.05, 1.0],
    "clip_low": 0.01,
    "clip_high": 0.99,
}


def _scores(partitions, probs):
    return pd.DataFrame(
        {"partition": partitions, "target": [0, 1, 1, 1][: len(partitions)], "score_m": probs}
    )


def test_stacking_replaces_the_mean_only_when_asked():
    oof = _scores(["a", "b", "c", "d"], [0.4, 0.6, 0.6, 0.6])
    test = _scores(["t1", "t2"], [0.5, 0.5])
    oof_stacked = pd.DataFrame({"partition": ["d", "c", "b", "a"], "stacked": [0.9, 0.8, 0.7, 0.1]})
    test_stacked = pd.DataFrame({"partition": ["t1", "t2"], "stacked": [0.2, 0.95]})

    def run(**stacking):
        return ensemble_and_calibrate(
            oof, test, oof_stacked, test_stacked, {"enabled": True, **stacking}, CALIBRATION
        )

    mean_oof, _, _, fitted = run(replace_mean=False)
    assert set(fitted) == {"factor", "shift", "low", "high", "target_shift"}
    np.testing.assert_allclose(mean_oof["prob"], [0.4, 0.6, 0.6, 0.6])
    stacked_oof, stacked_test, _, _ = run(replace_mean=True)
    np.testing.assert_allclose(stacked_oof["prob"], [0.1, 0.7, 0.8, 0.9])  # aligned by video
    np.testing.assert_allclose(stacked_test["prob"], [0.2, 0.95])
    with pytest.raises(ValueError, match="stacked predictions lack 1 videos"):
        ensemble_and_calibrate(
            oof,
            test,
            oof_stacked.iloc[1:],
            test_stacked,
            {"enabled": True, "replace_mean": True},
            CALIBRATION,
        )


# ------------------------------------------------------------ nodes that need no pixels

EXTRACTION = {"n_frames": 4}
KEY = settings_key(EXTRACTION)


def _videos() -> pd.DataFrame:
    rows = []
    for i in range(6):
        folder = f"dfdc_train_part_{i % 2}"
        rows.append((f"r{i}.mp4", folder, "REAL", None))
        rows.append((f"f{i}.mp4", folder, "FAKE", f"r{i}.mp4"))
    videos = pd.DataFrame(rows, columns=["video", "folder", "label", "original"])
    return videos.assign(
        partition=videos["folder"] + "/" + videos["video"].str.removesuffix(".mp4"),
        target=(videos["label"] == "FAKE").astype(int),
    )


def _index(partitions, n_crops: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        [
            {
                "partition": p,
                "crop": j,
                "frame_index": 2 * j,
                "confidence": float(rng.uniform(0.9, 1.0)),
                "sampled_frames": 4,
            }
            for p in partitions
            for j in range(n_crops)
        ]
    )


def _unreadable(partitions) -> dict:
    def load():
        raise AssertionError("this node must not open a face record")

    return {f"{KEY}/{p}": load for p in partitions}


@pytest.mark.parametrize("strategy", ["original", "folder", "random"])
def test_folds_come_from_the_face_index_alone(strategy):
    videos = _videos()
    with_faces = videos["partition"].iloc[:-1]  # the last fake had no face
    folds = assign_folds(
        videos,
        _index(with_faces),
        _unreadable(videos["partition"]),
        {"strategy": strategy, "n_folds": 2},
        {"method": "pca"},
        {"method": "kmeans", "n_clusters": 2},
        EXTRACTION,
        seed=0,
    )
    assert folds["has_faces"].tolist() == [True] * 11 + [False]
    fold_of = dict(zip(folds["video"], folds["fold"], strict=True))
    assert all(fold_of[f"f{i}.mp4"] == fold_of[f"r{i}.mp4"] for i in range(6))


def test_person_clusters_open_only_the_real_videos_records_once_each():
    videos = _videos()
    rng = np.random.default_rng(1)
    opened = []

    def loader(partition):
        def load():
            opened.append(partition)
            return {"crops": rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)}

        return load

    faces = {f"{KEY}/{p}": loader(p) for p in videos["partition"]}
    for p in videos.loc[videos["label"] == "FAKE", "partition"]:
        faces.update(_unreadable([p]))
    folds = assign_folds(
        videos,
        _index(videos["partition"]),
        faces,
        {"strategy": "person_cluster", "n_folds": 2},
        {"method": "pca", "size": 16, "inner_fraction": 0.7, "n_components": 4},
        {"method": "kmeans", "n_clusters": 3},
        EXTRACTION,
        seed=0,
    )
    reals = videos.loc[videos["label"] == "REAL", "partition"].tolist()
    assert sorted(opened) == sorted(reals)
    assert folds["person_cluster"].notna().all()


def test_stacking_features_come_from_the_face_index_alone():
    videos = _videos()
    folds = videos.assign(fold=np.arange(len(videos)) // 2 % 2, has_faces=True)
    test_videos = pd.DataFrame({"partition": ["test/t0", "test/t1"], "video": ["t0", "t1"]})
    index = _index([*videos["partition"], *test_videos["partition"]])
    rng = np.random.default_rng(2)

    def probs(table):
        return {
            "m": {
                p: rng.uniform(0.6, 0.9, 3).astype(np.float32)
                if t
                else rng.uniform(0.1, 0.4, 3).astype(np.float32)
                for p, t in zip(table["partition"], table.get("target", [1, 0]), strict=True)
            }
        }

    lgbm = {"num_boost_round": 5, "num_leaves": 4, "min_data_in_leaf": 1, "min_data_in_bin": 1}
    oof, test, metrics, stacker = stack_videos(
        probs(folds), probs(test_videos), folds, test_videos, index,
        {"enabled": True, "lgbm": lgbm}, 1e-15, 0,
    )  # fmt: skip
    assert len(oof) == 12 and len(test) == 2 and oof["stacked"].between(0, 1).all()
    assert stacker.startswith("tree")  # LightGBM's model text, for the scorer
    assert metrics and all(np.isfinite(v["value"]) for v in metrics.values())


def test_a_target_prior_shifts_the_test_videos_only_and_misspelt_keys_stop_it():
    oof = _scores(["a", "b", "c", "d"], [0.3, 0.7, 0.8, 0.6])  # prior 0.75
    test = _scores(["t1", "t2"], [0.4, 0.7])
    off = {"enabled": False}
    base, base_test, _, fitted = ensemble_and_calibrate(oof, test, None, None, off, CALIBRATION)
    target = {**CALIBRATION, "target_prior": 0.5}
    shifted, shifted_test, metrics, moved = ensemble_and_calibrate(
        oof, test, None, None, off, target
    )
    np.testing.assert_array_equal(shifted["prob"], base["prob"])  # out of fold: unchanged
    np.testing.assert_array_equal(shifted_test["prob_training_prior"], base_test["prob"])
    log_odds = np.log(shifted_test["prob"] / (1 - shifted_test["prob"]))
    before = np.log(base_test["prob"] / (1 - base_test["prob"]))
    np.testing.assert_allclose(log_odds - before, np.log(1.0) - np.log(0.75 / 0.25))
    assert fitted["target_shift"] == 0.0 and moved["target_shift"] == pytest.approx(-np.log(3))
    with pytest.raises(ParameterError, match=r"deepfake\.calibration\.factr.*'factor'"):
        ensemble_and_calibrate(oof, test, None, None, off, {**CALIBRATION, "factr": 0.5})


def test_the_test_bars_are_the_constants_at_the_prior_trained_on_and_at_the_target_prior():
    # out of fold: 2 REAL, 2 FAKE trained on and 4 held-out fakes (all 8 scored)
    oof = pd.DataFrame(
        {
            "partition": list("abcdefgh"),
            "video": [f"{p}.mp4" for p in "abcdefgh"],
            "folder": ["part_0"] * 8,
            "target": [0, 0, 1, 1, 1, 1, 1, 1],
            "prob": [0.2, 0.3, 0.7, 0.8, 0.5, 0.5, 0.5, 0.5],
        }
    )
    held_out = pd.DataFrame(
        {"partition": list("efgh"), "video": list("efgh"), "fold": 0, "family": "gan_face"}
    )
    test = pd.DataFrame(
        {"target": [0, 1, 0, 1], "prob": [0.3, 0.6, 0.4, 0.9], "prob_training_prior": 0.5}
    )
    y_test = np.array([0, 1, 0, 1])
    target = {**CALIBRATION, "target_prior": 0.25}

    metrics, _ = evaluate(oof, test, 1e-15, held_out, target)
    value = {k: v["value"] for k, v in metrics.items()}
    # the models saw half FAKE (the held-out fakes would make it 6/8)
    assert value["test/prior_log_loss"] == pytest.approx(np.log(2))
    p = 0.25
    at_target = -np.mean(y_test * np.log(p) + (1 - y_test) * np.log(1 - p))
    assert value["test/target_prior_log_loss"] == pytest.approx(at_target)
    assert value["oof/prior_log_loss"] == pytest.approx(
        -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    )

    unheld, _ = evaluate(oof, test, 1e-15, None, CALIBRATION)
    at_six_eighths = -(0.5 * np.log(0.75) + 0.5 * np.log(0.25))
    assert unheld["test/prior_log_loss"]["value"] == pytest.approx(at_six_eighths)
    assert "test/target_prior_log_loss" not in unheld  # no target prior: no such bar
