"""`kedro run --pipelines=deepfake` end to end on a tiny generated DFDC sample, then
`deepfake_inference` and the MLflow model it logs scoring its test videos again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import (
    TINY_DEEPFAKE,
    TINY_SAMPLE,
    assert_metric_names,
    assert_reports_logged,
    kedro_cli,
    kedro_run,
    make_project,
    tracked_runs,
)

TINY_DEEPFAKE_SAMPLE = {
    **TINY_SAMPLE["sample_data"]["deepfake"],
    "reals_per_part": 3,
    "n_test_videos": 3,
    "test_actors": 2,
}


@pytest.fixture(scope="module")
def deepfake_project(tmp_path_factory):
    import os

    root = make_project(
        tmp_path_factory.mktemp("deepfake") / "project",
        {"sample_data": {"deepfake": TINY_DEEPFAKE_SAMPLE}, **TINY_DEEPFAKE},
    )
    cwd = os.getcwd()
    os.chdir(root)
    try:
        kedro_run(root, "sample_data", tags=["deepfake"])
        kedro_run(root, "deepfake")
        yield root
    finally:
        os.chdir(cwd)


def written_split_leakage(project) -> tuple[float, float]:
    """(mean, max) over folds of the share of a fold's validation videos whose actor (the
    sample's ``_truth.json``) has a video in another fold, from the run's folds.parquet."""
    dfdc = project / "data" / "01_raw" / "deepfake"
    actor = {
        video: entry["actor"]
        for truth in dfdc.glob("*/_truth.json")
        for video, entry in json.loads(truth.read_text())["videos"].items()
    }
    folds = pd.read_parquet(project / "data" / "05_model_input" / "deepfake" / "folds.parquet")
    assert set(folds["video"]) <= set(actor), "a video of the split has no actor in the truth"
    folds = folds.assign(actor=folds["video"].map(actor))
    assert folds["fold"].nunique() == TINY_DEEPFAKE["deepfake"]["split"]["n_folds"]
    shares = [
        valid["actor"].isin(set(folds.loc[folds["fold"] != fold, "actor"])).mean()
        for fold, valid in folds.groupby("fold")
    ]
    return float(sum(shares) / len(shares)), float(max(shares))


@pytest.mark.slow
def test_the_run_is_tracked_with_the_dfdc_metrics(deepfake_project):
    client, runs = tracked_runs(deepfake_project)
    run = runs[-1]
    assert run.info.run_name == "deepfake" and run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert_metric_names(metrics, "deepfake")
    for name in (
        "deepfake/report/oof/log_loss",
        "deepfake/report/oof/prior_log_loss",
        "deepfake/report/test/log_loss",
        "deepfake/faces/face_frame_rate",
        "deepfake/report/detection/mtcnn_recall_iou50",
        "deepfake/split/leakage_mean",
        "deepfake/scoring/calibration/log_loss_after",
        "deepfake/scoring/stacker/log_loss_stacked",
    ):
        assert name in metrics, name
        assert metrics[name] == metrics[name], f"{name} is NaN"
    assert metrics["deepfake/report/detection/mtcnn_recall_iou50"] >= 0.9
    # The logged leakage is the split's, recomputed from what the run wrote (its folds, the
    # sample's actor truth): per fold, the share of validation videos whose actor trains.
    # The "original" split keeps families together, not people: with 2 actors for 3
    # families, some validation video may share its actor with training.
    mean, worst = written_split_leakage(deepfake_project)
    assert metrics["deepfake/split/leakage_mean"] == pytest.approx(mean)
    assert metrics["deepfake/split/leakage_max"] == pytest.approx(worst)
    assert any(k.startswith("deepfake/models/tiny/fold0/") for k in metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "deepfake")}
    assert {"deepfake/roc_curve.png", "deepfake/face_grid.png"} <= artifacts
    reports = {"bad_videos.csv", "training_history.csv", "per_folder_log_loss.csv"}
    reporting = deepfake_project / "data" / "08_reporting" / "deepfake"
    assert_reports_logged(client, run.info.run_id, "deepfake", reporting, reports)
    assert run.data.params["deepfake.split.strategy"] == "original"


@pytest.mark.slow
def test_submission_scores_every_test_video_in_dfdc_format(deepfake_project):
    folder = deepfake_project / "data" / "07_model_output" / "deepfake" / "submission.csv"
    (version,) = list(folder.iterdir())
    submission = pd.read_csv(version / "submission.csv")
    assert list(submission.columns) == ["filename", "label"]
    assert len(submission) == TINY_DEEPFAKE_SAMPLE["n_test_videos"]
    assert submission["filename"].str.endswith(".mp4").all()
    assert submission["label"].between(0, 1).all()


@pytest.mark.slow
def test_folds_keep_every_fake_with_its_original(deepfake_project):
    folds = pd.read_parquet(
        deepfake_project / "data" / "05_model_input" / "deepfake" / "folds.parquet"
    )
    fold_of = dict(zip(folds["video"], folds["fold"], strict=True))
    fakes = folds[folds["label"] == "FAKE"]
    assert len(fakes) > 0
    assert all(fold_of[o] == f for o, f in zip(fakes["original"], fakes["fold"], strict=True))


@pytest.mark.slow
def test_a_second_run_extracts_nothing_again(deepfake_project):
    faces = deepfake_project / "data" / "03_primary" / "deepfake" / "faces"
    before = {p: p.stat().st_mtime_ns for p in faces.rglob("*.joblib")}
    assert before
    kedro_run(deepfake_project, "deepfake", nodes=["deepfake.faces.extract_faces"])
    _, runs = tracked_runs(deepfake_project)
    metrics = runs[-1].data.metrics
    assert metrics["deepfake/faces/extracted"] == 0
    assert metrics["deepfake/faces/skipped_existing"] == metrics["deepfake/faces/videos"]
    assert {p: p.stat().st_mtime_ns for p in faces.rglob("*.joblib")} == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "named", "allowed"),
    [
        (
            {
                "models": [
                    {"name": "m", "architecture": "classifier", "backbone": "efficientnet_b99"}
                ]
            },
            "deepfake.training.models[0].backbone",
            "efficientnet_b",
        ),
        (
            {"augment": [{"name": "HorizontalFlop", "p": 0.5}]},
            "deepfake.training.augment[0].name",
            "HorizontalFlip",
        ),
    ],
)
def test_a_bad_parameter_stops_the_run_naming_it_and_the_allowed_values(
    deepfake_project, override, named, allowed
):
    from podium.core.config import ParameterError

    with pytest.raises(ParameterError) as error:
        kedro_run(
            deepfake_project,
            "deepfake",
            params={"deepfake": {"training": override}},
            nodes=["deepfake.models.train_frame_models"],
        )
    assert named in str(error.value) and allowed in str(error.value)


# ------------------------------------------------ deepfake_inference and the MLflow model


def _latest_csv(folder: Path) -> pd.DataFrame:
    version = sorted(p for p in folder.iterdir() if p.is_dir())[-1]
    return pd.read_csv(version / folder.name).set_index("filename").sort_index()


def _training_run(project: Path):
    _, runs = tracked_runs(project)
    return next(r for r in runs if r.info.run_name == "deepfake")  # the fixture's full run


@pytest.mark.slow
def test_deepfake_inference_scores_the_test_videos_as_the_training_run_did(deepfake_project):
    root = deepfake_project
    trained = _latest_csv(root / "data" / "07_model_output" / "deepfake" / "submission.csv")
    scored_folder = root / "data" / "07_model_output" / "deepfake_inference" / "submission.csv"
    timing = root / "data" / "08_reporting" / "deepfake_inference" / "timing.json"

    kedro_run(root, "deepfake_inference")
    first = _latest_csv(scored_folder)
    assert (
        json.loads(timing.read_text())["scored_this_run"] == TINY_DEEPFAKE_SAMPLE["n_test_videos"]
    )
    # the same model and the same crops: the very same probabilities
    assert first.index.tolist() == trained.index.tolist()
    assert (first["label"] == trained["label"]).all(), first.join(trained, rsuffix="_trained")

    kedro_run(root, "deepfake_inference")  # everything is scored already
    assert json.loads(timing.read_text())["scored_this_run"] == 0
    assert _latest_csv(scored_folder).equals(first)
    client, runs = tracked_runs(root)
    metrics = runs[-1].data.metrics
    assert runs[-1].info.run_name == "deepfake_inference"
    reporting = root / "data" / "08_reporting" / "deepfake_inference"
    reports = {"report.csv", "costs.csv"}
    assert_reports_logged(client, runs[-1].info.run_id, "deepfake_inference", reporting, reports)
    assert_metric_names(metrics, "deepfake_inference")
    assert (
        metrics["deepfake_inference/submission/videos"]
        == metrics["deepfake_inference/submission/scored"]
        == len(first)
    )
    assert metrics["deepfake_inference/submission/model_seconds_per_video"] > 0
    assert metrics["deepfake_inference/submission/projected_hours"] > 0


@pytest.mark.slow
def test_the_training_run_logs_a_model_that_scores_videos_in_a_fresh_process(deepfake_project):
    root = deepfake_project
    run = _training_run(root)
    trained = _latest_csv(root / "data" / "07_model_output" / "deepfake" / "submission.csv")
    videos = sorted(
        str(p) for p in (root / "data" / "01_raw" / "deepfake" / "test_videos").glob("*.mp4")
    )
    script = (
        "import json, sys, mlflow\n"
        f"mlflow.set_tracking_uri('sqlite:///{root / 'mlflow.db'}')\n"
        f"model = mlflow.pyfunc.load_model('runs:/{run.info.run_id}/deepfake_scorer')\n"
        f"out = model.predict({videos[:3]!r})\n"
        "print('RESULT', json.dumps(out.to_dict(orient='records')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    predicted = pd.DataFrame(json.loads(line[len("RESULT ") :])).set_index("filename")
    assert len(predicted) == 3 and (predicted["status"] == "scored").all()
    expected = trained.loc[predicted.index, "label"]
    assert (predicted["label"] == expected).all(), (predicted["label"] - expected).abs().max()


@pytest.mark.slow
def test_deepfake_inference_takes_the_ensemble_of_an_mlflow_run(deepfake_project):
    root = deepfake_project
    run = _training_run(root)
    folder = root / "data" / "07_model_output" / "deepfake_inference" / "results"
    shutil.rmtree(folder, ignore_errors=True)  # score again, from the run's artifacts
    shutil.rmtree(root / "data" / "06_models" / "deepfake")  # no local ensemble at all
    done = kedro_cli(
        root,
        "run",
        "--pipelines=deepfake_inference",
        f"--params=deepfake_inference.model_run_id={run.info.run_id}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trained = _latest_csv(root / "data" / "07_model_output" / "deepfake" / "submission.csv")
    scored = _latest_csv(
        root / "data" / "07_model_output" / "deepfake_inference" / "submission.csv"
    )
    assert (scored["label"] == trained["label"]).all()
    missing = kedro_cli(root, "run", "--pipelines=deepfake_inference")
    assert missing.returncode != 0
    assert "deepfake_inference.model_run_id" in missing.stdout + missing.stderr
