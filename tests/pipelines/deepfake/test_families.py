"""Out-of-fold figures per manipulation family, and leave-one-family-out
(``deepfake.diagnostics.hold_out_family``): the held-out fakes train no fold model, stacker
or calibration, and are scored as unseen."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from podium.ablation.grid import load_grid
from podium.pipelines.deepfake import nodes, scoring, stacking
from podium.pipelines.deepfake.data import settings_key
from podium.pipelines.deepfake.evaluate import family_metrics
from podium.sample_data.manipulations import FAMILIES
from tests.conftest import REPO, TINY_DEEPFAKE, TINY_SAMPLE, kedro_run, make_project, tracked_runs

EPS = 1e-15
PART = "dfdc_train_part_0"
#: A hand-made out-of-fold table: three REAL videos, two face_swap fakes, two gan_face fakes.
FAMILY = {
    "r1": None,
    "r2": None,
    "r3": None,
    "f1": "face_swap",
    "f2": "face_swap",
    "f3": "gan_face",
    "f4": "gan_face",
}
PROB = {"r1": 0.1, "r2": 0.4, "r3": 0.35, "f1": 0.8, "f2": 0.3, "f3": 0.9, "f4": 0.05}
FOLD = {"r1": 0, "f1": 0, "f3": 0, "r2": 1, "f2": 1, "r3": 1, "f4": 1}


def _oof(extra: dict[str, float] | None = None) -> pd.DataFrame:
    probs = {**PROB, **(extra or {})}
    names = list(probs)
    return pd.DataFrame(
        {
            "partition": [f"{PART}/{n}" for n in names],
            "video": [f"{n}.mp4" for n in names],
            "label": ["REAL" if n.startswith("r") else "FAKE" for n in names],
            "target": [0 if n.startswith("r") else 1 for n in names],
            "fold": [FOLD.get(n, 0) for n in names],
            "prob": [probs[n] for n in names],
        }
    )


def _truth(root, families=FAMILY):
    folder = root / PART
    folder.mkdir(parents=True)
    videos = {
        f"{n}.mp4": {"label": "REAL" if f is None else "FAKE", "family": f, "actor": "a"}
        for n, f in families.items()
    }
    (folder / "_truth.json").write_text(json.dumps({"videos": videos}))
    return root


def _held(names) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "partition": [f"{PART}/{n}" for n in names],
            "video": [f"{n}.mp4" for n in names],
            "fold": [FOLD[n] for n in names],
            "family": [FAMILY[n] for n in names],
        }
    )


def _values(metrics: dict) -> dict[str, float]:
    return {k: v["value"] for k, v in metrics.items()}


def _reference(names) -> tuple[float, float]:
    y = [0 if n.startswith("r") else 1 for n in names]
    p = [PROB[n] for n in names]
    return roc_auc_score(y, p), log_loss(y, p)


REALS = ["r1", "r2", "r3"]


# ---------------------------------------------------------------- per-family figures


def test_each_family_is_scored_against_every_real_video_beside_the_whole():
    table = family_metrics(_oof().assign(family=_oof()["partition"].str[-2:].map(FAMILY)), EPS)
    rows = table.set_index("family")
    assert list(rows.index) == ["face_swap", "gan_face", "in_distribution"]
    # by hand: f1 outranks the 3 reals, f2 only r1 -> 4 of 6 pairs; f3 all, f4 none -> 3/6
    assert rows.loc["face_swap", "auc"] == pytest.approx(4 / 6)
    assert rows.loc["gan_face", "auc"] == pytest.approx(3 / 6)
    assert rows.loc["in_distribution", "auc"] == pytest.approx(7 / 12)
    expected = -(math.log(0.9) + math.log(0.6) + math.log(0.65) + math.log(0.8) + math.log(0.3))
    assert rows.loc["face_swap", "log_loss"] == pytest.approx(expected / 5)
    assert rows.loc["gan_face", "log_loss"] == pytest.approx(_reference([*REALS, "f3", "f4"])[1])
    assert rows["n_reals"].tolist() == [3, 3, 3] and rows["n_fakes"].tolist() == [2, 2, 4]
    prior = -(3 * math.log(3 / 7) + 4 * math.log(4 / 7)) / 7  # the FAKE share, 4/7
    assert rows.loc["in_distribution", "prior_log_loss"] == pytest.approx(prior)
    assert not rows["held_out"].any()


def test_the_node_logs_each_family_and_counts_videos_without_truth(tmp_path):
    root = _truth(tmp_path)
    metrics, table = nodes.family_metrics(_oof({"stray": 0.5}), root, nodes._no_held_out(), EPS)
    values = _values(metrics)
    assert values["face_swap/auc"] == pytest.approx(_reference([*REALS, "f1", "f2"])[0])
    assert values["face_swap/log_loss"] == pytest.approx(_reference([*REALS, "f1", "f2"])[1])
    assert values["gan_face/auc"] == pytest.approx(0.5)
    assert values["face_swap/n_fakes"] == 2 and values["gan_face/n_fakes"] == 2
    assert values["in_distribution/auc"] == pytest.approx(7 / 12)
    assert values["n_reals"] == 3 and values["videos_without_truth"] == 1
    assert not any(k.startswith("held_out/") for k in values)
    assert all("." not in k for k in values)
    assert len(table) == 3


def test_the_held_out_family_is_scored_apart_with_the_prior_beside_it(tmp_path):
    root = _truth(tmp_path)
    metrics, table = nodes.family_metrics(_oof(), root, _held(["f3", "f4"]), EPS)
    values = _values(metrics)
    auc, loss = _reference([*REALS, "f3", "f4"])
    assert values["held_out/auc"] == pytest.approx(auc)
    assert values["held_out/log_loss"] == pytest.approx(loss)
    assert values["held_out/n_fakes"] == 2
    # the prior is the FAKE share of the videos trained on (3 reals, 2 face_swap): 2/5
    prior = log_loss([0, 0, 0, 1, 1], [0.4] * 5)
    assert values["held_out/prior_log_loss"] == pytest.approx(prior)
    # the held-out family's own row is the pool of one, marked and beside the prior
    assert values["gan_face/auc"] == pytest.approx(auc)
    assert values["gan_face/prior_log_loss"] == pytest.approx(prior)
    assert "face_swap/prior_log_loss" not in values  # trained on: in_distribution has it
    assert values["in_distribution/auc"] == pytest.approx(_reference([*REALS, "f1", "f2"])[0])
    assert values["in_distribution/n_fakes"] == 2
    assert table.loc[table["held_out"], "family"].tolist() == ["gan_face", "held_out"]


def test_several_families_held_out_together_are_pooled_and_each_scored(tmp_path):
    families = {**FAMILY, "f5": "talking_head"}
    root = _truth(tmp_path, families)
    oof = _oof({"f5": 0.6})
    diagnostics = {"hold_out_family": ["talking_head", "gan_face"]}
    held = nodes.hold_out_family(oof, root, diagnostics)
    assert held["video"].tolist() == ["f3.mp4", "f4.mp4", "f5.mp4"]
    assert held["family"].tolist() == ["gan_face", "gan_face", "talking_head"]
    metrics, table = nodes.family_metrics(oof, root, held, EPS)
    values = _values(metrics)
    probs = {**PROB, "f5": 0.6}
    y, p = [0, 0, 0, 1, 1, 1], [probs[n] for n in [*REALS, "f3", "f4", "f5"]]
    assert values["held_out/auc"] == pytest.approx(roc_auc_score(y, p))
    assert values["held_out/log_loss"] == pytest.approx(log_loss(y, p))
    assert values["held_out/n_fakes"] == 3
    assert values["talking_head/auc"] == pytest.approx(1.0)  # 0.6 above every REAL video
    assert values["gan_face/auc"] == pytest.approx(_reference([*REALS, "f3", "f4"])[0])
    # the prior is still the FAKE share of the videos trained on: 2 of 5
    assert values["held_out/prior_log_loss"] == pytest.approx(log_loss(y, [0.4] * 6))
    assert values["in_distribution/n_fakes"] == 2
    marked = table.loc[table["held_out"], "family"].tolist()
    assert marked == ["talking_head", "gan_face", "held_out"]  # FAMILIES' order, then the pool


def test_without_truth_nothing_is_logged_and_nothing_is_held_out(tmp_path, caplog):
    metrics, table = nodes.family_metrics(_oof(), tmp_path, nodes._no_held_out(), EPS)
    assert metrics == {} and table.empty
    folds = _oof()
    held = nodes.hold_out_family(folds, tmp_path, {"hold_out_family": "gan_face"})
    assert held.empty and "no _truth.json sidecar" in caplog.text


def test_hold_out_family_names_that_familys_fakes_only(tmp_path):
    root = _truth(tmp_path)
    folds = _oof()
    held = nodes.hold_out_family(folds, root, {"hold_out_family": "gan_face"})
    assert held["video"].tolist() == ["f3.mp4", "f4.mp4"]
    assert held["fold"].tolist() == [0, 1] and set(held["family"]) == {"gan_face"}
    assert nodes.hold_out_family(folds, root, {"hold_out_family": None}).empty
    assert nodes.hold_out_family(folds, root, {"hold_out_family": ["gan_face"]}).equals(held)
    assert nodes.hold_out_family(folds, root, {"hold_out_family": "talking_head"}).empty


# ---------------------------------------------------------------- hold-out: fitting


EXTRACTION = {"n_frames": 4}
KEY = settings_key(EXTRACTION)
TRAINING = {
    "models": [{"name": "m", "architecture": "classifier", "backbone": "resnet10t"}],
    "progress": False,
}


def test_held_out_fakes_train_no_fold_and_are_predicted_by_their_own_fold(monkeypatch):
    folds = _oof().assign(has_faces=True)
    index = pd.DataFrame({"partition": folds["partition"], "crop": 0})
    trained_on, predicted = [], []

    def train(records, index, videos, *args, **kwargs):
        trained_on.append(set(videos["partition"]))
        states = {f"m/fold{k}": {"fold": k} for k in (0, 1)}
        oof = {"m": {p: np.array([0.5], np.float32) for p in videos["partition"]}}
        history = pd.DataFrame(
            [{"model": "m", "fold": 0, "epoch": 0, "train_loss": 1.0, "val_loss": 1.0}]
        )
        return states, history, oof

    def predict(records, rows, states, *args):
        (fold,) = {s["fold"] for s in states.values()}
        predicted.append((fold, set(rows["partition"])))
        return {"m": {p: np.array([0.25 + fold], np.float32) for p in rows["partition"]}}

    monkeypatch.setattr(nodes, "train_frame_models", train)
    monkeypatch.setattr(nodes, "predict_frame_models", predict)
    faces = {f"{KEY}/{p}": lambda: {} for p in folds["partition"]}
    args = (faces, index, folds, TRAINING, {}, EXTRACTION, 0, False, None)
    _, _, oof, _ = nodes.train_models(*args, _held(["f3", "f4"]))
    (rows,) = trained_on
    assert rows == set(folds["partition"]) - {f"{PART}/f3", f"{PART}/f4"}
    assert sorted(predicted) == [(0, {f"{PART}/f3"}), (1, {f"{PART}/f4"})]  # own fold only
    assert set(oof["m"]) == set(folds["partition"])
    assert oof["m"][f"{PART}/f3"][0] == 0.25 and oof["m"][f"{PART}/f4"][0] == 1.25
    trained_on.clear()
    nodes.train_models(*args, nodes._no_held_out())
    assert trained_on == [set(folds["partition"])]


CALIBRATION = {
    "factor": "fit",
    "shift": "fit",
    "scale_bounds": [0.05, 1.0],
    "clip_low": 0.01,
    "clip_high": 0.99,
}


def _scores(table: pd.DataFrame) -> pd.DataFrame:
    return table[["partition", "video", "target", "fold"]].assign(score_m=table["prob"])


def test_the_calibration_is_fitted_without_the_held_out_fakes():
    # the held-out fakes look REAL to the detector: fitted on them, the calibration moves
    oof = _scores(_oof({"f5": 0.02, "f6": 0.03}))
    held = oof["video"].isin(["f5.mp4", "f6.mp4"]).to_numpy()
    held_out = pd.DataFrame({"partition": oof.loc[held, "partition"]})
    test = oof.iloc[:0]
    off = {"enabled": False}
    scored, _, metrics, fitted = nodes.ensemble_and_calibrate(
        oof, test, None, None, off, CALIBRATION, held_out
    )
    kept, _, kept_metrics, kept_fitted = nodes.ensemble_and_calibrate(
        oof[~held], test, None, None, off, CALIBRATION
    )
    seen_all = nodes.ensemble_and_calibrate(oof, test, None, None, off, CALIBRATION)[3]
    assert fitted == kept_fitted and metrics == kept_metrics
    assert fitted["factor"] != pytest.approx(seen_all["factor"])  # the check can fail
    np.testing.assert_allclose(scored.loc[~held, "prob"], kept["prob"])
    expected = scoring.calibrate(
        scored.loc[held, "ensemble"].to_numpy(),
        fitted["factor"],
        fitted["low"],
        fitted["high"],
        shift=fitted["shift"],
    )
    np.testing.assert_allclose(scored.loc[held, "prob"], expected)  # calibrated all the same


def test_no_stacker_is_fitted_on_a_held_out_fake(monkeypatch):
    folds = _oof({"f5": 0.02, "f6": 0.03}).assign(fold=lambda t: np.arange(len(t)) % 2)
    held_names = [f"{PART}/f5", f"{PART}/f6"]
    held = folds["partition"].isin(held_names).to_numpy()
    test_videos = pd.DataFrame({"partition": ["test/t0"], "video": ["t0.mp4"]})
    index = pd.DataFrame(
        {"partition": [*folds["partition"], "test/t0"], "confidence": 0.95, "sampled_frames": 4}
    )
    rng = np.random.default_rng(0)
    probs = {"m": {p: rng.uniform(0, 1, 1).astype(np.float32) for p in index["partition"]}}
    fitted_rows = []
    fit = stacking.fit_stacker

    def spy(features, y, *args):
        fitted_rows.append(set(features.index))
        return fit(features, y, *args)

    monkeypatch.setattr(stacking, "fit_stacker", spy)
    lgbm = {"num_boost_round": 5, "num_leaves": 4, "min_data_in_leaf": 1, "min_data_in_bin": 1}
    params = {"enabled": True, "lgbm": lgbm}
    oof, _, metrics, _ = nodes.stack_videos(
        probs, probs, folds, test_videos, index, params, EPS, 0, pd.DataFrame({"partition": held_names})
    )  # fmt: skip
    assert fitted_rows and not any(rows & set(held_names) for rows in fitted_rows)
    assert oof["partition"].tolist() == folds["partition"].tolist()
    assert oof["stacked"].between(0, 1).all()
    fitted_rows.clear()
    kept, _, kept_metrics, _ = nodes.stack_videos(
        probs, probs, folds[~held], test_videos, index, params, EPS, 0
    )
    assert metrics == kept_metrics  # compared with the mean on the same videos
    np.testing.assert_allclose(oof.loc[~held, "stacked"], kept["stacked"])


def test_a_faceless_video_gets_the_prior_of_the_videos_trained_on():
    folds = _oof()[["partition", "video", "target"]]
    held_out = pd.DataFrame({"partition": [f"{PART}/f3", f"{PART}/f4"]})
    oof, _ = nodes.score_videos({"m": {}}, {"m": {}}, folds, folds.iloc[:0], {}, held_out)
    assert oof["score_m"].unique().tolist() == [pytest.approx(2 / 5)]  # 2 fakes, 3 reals
    oof, _ = nodes.score_videos({"m": {}}, {"m": {}}, folds, folds.iloc[:0], {})
    assert oof["score_m"].unique().tolist() == [pytest.approx(4 / 7)]


def test_the_scorer_package_keeps_the_prior_of_the_videos_trained_on(monkeypatch):
    packaged = []
    monkeypatch.setattr(nodes.inference, "build_scorer", lambda **kw: packaged.append(kw))
    monkeypatch.setattr(nodes.inference, "weights_digest", lambda models: "w")
    folds = _oof()[["partition", "video", "target"]]
    held_out = pd.DataFrame({"partition": [f"{PART}/f3", f"{PART}/f4"]})
    args = ({}, folds, None, {}, TRAINING, EXTRACTION, {}, {}, {})
    nodes.package_scorer(*args, held_out)
    nodes.package_scorer(*args)
    assert [kw["prior"] for kw in packaged] == [pytest.approx(2 / 5), pytest.approx(4 / 7)]


# ---------------------------------------------------------------- the ablation grid


def test_the_families_grid_has_a_point_per_family_and_a_metric_every_point_logs():
    grid = load_grid(REPO / "conf" / "base" / "ablations" / "deepfake_families.yml")
    assert list(grid.points) == ["none", *FAMILIES] and grid.baseline == "none"
    assert grid.points["none"] == {"deepfake.diagnostics.hold_out_family": None}
    for family in FAMILIES:
        assert grid.points[family] == {"deepfake.diagnostics.hold_out_family": family}
    # a run that does not log the primary metric stops `kedro ablate`: `none` holds nothing out
    assert "held_out" not in grid.metric and grid.greater_is_better
    assert "deepfake/report/families/held_out/auc" in grid.metrics


# ---------------------------------------------------------------- end to end


TWO_FAMILIES = {
    **TINY_SAMPLE["sample_data"]["deepfake"],
    "reals_per_part": 3,
    "fakes_per_real": 2,
    "families": {
        **TINY_SAMPLE["sample_data"]["deepfake"]["families"],
        "face_swap": 0.5,
        "gan_face": 0.5,
    },
}


@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory):
    root = make_project(
        tmp_path_factory.mktemp("families") / "project",
        {"sample_data": {"deepfake": TWO_FAMILIES}, **TINY_DEEPFAKE},
    )
    cwd = os.getcwd()
    os.chdir(root)
    try:
        kedro_run(root, "sample_data", tags=["deepfake"])
        params = {"deepfake": {"diagnostics": {"hold_out_family": "gan_face"}}}
        kedro_run(root, "deepfake", params)
        yield root
    finally:
        os.chdir(cwd)


@pytest.mark.slow
def test_a_held_out_run_logs_the_unseen_familys_figures(held_out_run):
    truth = nodes.load_truth_families(held_out_run / "data" / "01_raw" / "deepfake")
    gan = {p for p, f in truth.items() if f == "gan_face" and not p.startswith("test_videos/")}
    assert gan and "face_swap" in truth.values(), "the sample must hold both families"
    _, runs = tracked_runs(held_out_run)
    metrics = runs[-1].data.metrics
    prefix = "deepfake/report/families"
    for key in ("auc", "log_loss", "prior_log_loss", "n_fakes"):
        assert f"{prefix}/held_out/{key}" in metrics, key
    assert metrics[f"{prefix}/held_out/n_fakes"] == len(gan)
    assert (
        f"{prefix}/face_swap/auc" in metrics and f"{prefix}/face_swap/prior_log_loss" not in metrics
    )
    assert metrics[f"{prefix}/gan_face/auc"] == metrics[f"{prefix}/held_out/auc"]
    grid = load_grid(REPO / "conf" / "base" / "ablations" / "deepfake_families.yml")
    assert {grid.metric, *grid.metrics} <= set(metrics)
    data = held_out_run / "data"
    held = pd.read_parquet(data / "05_model_input" / "deepfake" / "held_out.parquet")
    assert set(held["partition"]) == gan
    (oof_version,) = (data / "07_model_output" / "deepfake" / "oof_predictions.parquet").iterdir()
    oof = pd.read_parquet(oof_version / "oof_predictions.parquet")
    assert gan <= set(oof["partition"]) and oof["prob"].between(0, 1).all()
    table = pd.read_csv(data / "08_reporting" / "deepfake" / "family_metrics.csv")
    assert table.loc[table["held_out"], "family"].tolist() == ["gan_face", "held_out"]
