"""`kedro run --pipelines=mask` end to end in a throwaway project on a tiny sample."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from safetensors import safe_open

from podium.core.config import ParameterError
from podium.layouts.mask import MaskLayoutError
from tests.conftest import assert_metric_names, assert_reports_logged, kedro_run
from tests.pipelines.mask.conftest import ONE_DASK_WORKER


def _only_run(project: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("podium")
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


def _runs(project: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("podium")
    return client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])


def _scores(run) -> dict[str, float]:
    return {
        k: v
        for k, v in run.data.metrics.items()
        if k.startswith(("mask/report/oof/", "mask/report/eval/"))
    }


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.slow
def test_the_mask_pipeline_runs_end_to_end_and_tracks_everything(project):
    summary = logging.getLogger("podium.run_summary")  # Kedro's logging config resets root
    lines = _Lines()
    summary.addHandler(lines)
    try:
        kedro_run(project, "mask", ONE_DASK_WORKER)
    finally:
        summary.removeHandler(lines)
    client, run = _only_run(project)
    assert run.info.status == "FINISHED"
    # named after the command line's --params; the headline metric and the description
    assert run.info.run_name == "mask: runtime.dask.n_workers=1"
    metrics = run.data.metrics
    assert_metric_names(metrics, "mask")
    assert metrics["mask/score"] == metrics["mask/report/eval/submission/f1_macro"]
    assert run.data.tags["mlflow.note.content"].startswith(
        f"mask/score = {metrics['mask/score']:.4g} (evaluation macro F1 of the submission, "
        "higher is better) · variant: multihead · backbones: resnet10t · age threshold: 58"
    )
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert lines.lines[-1].startswith("mask/score = ") and run.info.run_id in lines.lines[-1]
    (raw,) = [d.dataset for d in run.inputs.dataset_inputs]  # the raw folder it read
    assert raw.name == "mask_raw" and raw.digest == run.data.tags["data_fingerprint.mask_raw"][:16]
    for prefix in ("oof/soft", "oof/hard", "eval/soft", "eval/hard", "eval/submission"):
        for key in ("f1_macro", "accuracy", "mask/f1_macro", "gender/accuracy", "age/f1_macro"):
            assert 0.0 <= metrics[f"mask/report/{prefix}/{key}"] <= 1.0, f"{prefix}/{key}"
    assert metrics["mask/report/crops/train/cropped"] == 12 * 7
    assert any(k.startswith("mask/models/resnet10t/fold1/model/train_loss") for k in metrics)
    assert run.data.params["mask.model.variant"] == "multihead"
    # a typed block (MaskOptimizerParams) is logged leaf by leaf, as a dictionary is
    assert run.data.params["mask.optimizer.lr"] == "0.003"
    assert "mask.optimizer" not in run.data.params and "runtime.dask.n_workers" in run.data.params
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "mask")}
    assert {
        f"mask/oof_confusion_{t}.png" for t in ("classes", "mask", "gender", "age")
    } <= artifacts
    reports = {"train_crop_report.csv", "submission_report.csv"}
    reporting = project / "data" / "08_reporting" / "mask"
    assert_reports_logged(client, run.info.run_id, "mask", reporting, reports)

    # folds: no person in two folds
    table = pd.read_parquet(project / "data" / "04_feature" / "mask" / "training_table.parquet")
    assert (table.groupby("person")["fold"].nunique() == 1).all()
    assert table["fold"].nunique() == 2

    # versioned submission in info.csv order, one answer per image, all valid classes
    (submission_csv,) = (project / "data" / "07_model_output" / "mask" / "submission.csv").glob(
        "*/submission.csv"
    )
    submission = pd.read_csv(submission_csv)
    info = pd.read_csv(project / "data" / "01_raw" / "mask" / "eval" / "info.csv")
    assert submission["ImageID"].tolist() == info["ImageID"].tolist()
    assert submission["ans"].between(0, 17).all()

    # versioned safetensors weights: one network per fold
    (weights,) = (project / "data" / "06_models" / "mask" / "weights.safetensors").glob(
        "*/weights.safetensors"
    )
    with safe_open(str(weights), framework="pt") as handle:
        models = {key.rsplit("/", 1)[0] for key in handle.keys()}
    assert models == {"resnet10t/fold0/model", "resnet10t/fold1/model"}


def test_an_unknown_backbone_fails_the_run_naming_the_parameter(project):
    with pytest.raises(ParameterError, match=r"mask\.model\.backbones\[0\].*resnet10t") as error:
        kedro_run(project, "mask", {"mask": {"model": {"backbones": ["resnet10tt"]}}})
    assert "allowed values" in str(error.value) and "conf/base/parameters_mask.yml" in str(
        error.value
    )


def test_an_unknown_augmentation_fails_the_run_naming_the_parameter(project):
    augment = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "RandomBrightnes"}]
    with pytest.raises(ParameterError, match=r"mask\.augment\[1\]\.name.*RandomBrightness"):
        kedro_run(project, "mask", {"mask": {"augment": augment}})


def test_a_missing_image_stops_the_run_naming_the_folder(project):
    images = project / "data" / "01_raw" / "mask" / "train" / "images"
    folder = sorted(images.iterdir())[0]
    next(folder.glob("mask3.*")).unlink()
    with pytest.raises(MaskLayoutError, match=rf"{folder.name}.*mask3"):
        kedro_run(project, "mask")


def test_a_malformed_folder_name_stops_the_run_naming_it(project):
    raw = project / "data" / "01_raw" / "mask" / "train"
    people = pd.read_csv(raw / "train.csv", dtype=str)
    bad = people.loc[0, "path"].replace("_Asian_", "-Asian-")
    (raw / "images" / people.loc[0, "path"]).rename(raw / "images" / bad)
    people.loc[0, "path"] = bad
    people.to_csv(raw / "train.csv", index=False)
    with pytest.raises(MaskLayoutError, match=r"malformed person folder name.*-Asian-"):
        kedro_run(project, "mask")


@pytest.mark.slow
def test_a_rerun_reuses_every_crop_scores_the_same_and_reports_a_broken_photo(project):
    """Same seed on CPU: bit-identical scores from crops made by the Dask workers and from
    the crops the second run found in the store; a photo truncated afterwards is reported
    and left out of training, with every other crop reused."""
    kedro_run(project, "mask", ONE_DASK_WORKER)  # crops made by a Dask worker process
    kedro_run(project, "mask")  # crops found in the store
    first, second = _runs(project)
    assert first.data.metrics["mask/report/crops/train/reused"] == 0
    assert second.data.metrics["mask/report/crops/train/reused"] == 12 * 7
    assert second.data.metrics["mask/report/crops/eval/reused"] == 2 * 7
    assert _scores(first) == _scores(second) and _scores(first)
    assert all(v == v for v in _scores(first).values())  # no NaN

    index = pd.read_parquet(project / "data" / "02_intermediate" / "mask" / "train_index.parquet")
    broken = Path(index.loc[9, "path"])
    broken.write_bytes(broken.read_bytes()[:200])
    kedro_run(project, "mask")
    third = _runs(project)[-1]
    assert third.info.status == "FINISHED"
    assert third.data.metrics["mask/report/crops/train/unreadable"] == 1
    assert third.data.metrics["mask/report/crops/train/cropped"] == 12 * 7 - 1
    assert third.data.metrics["mask/report/crops/train/reused"] == 12 * 7 - 1
    report = pd.read_csv(project / "data" / "08_reporting" / "mask" / "train_crop_report.csv")
    assert len(report) == 12 * 7 and report["path"].tolist() == index["path"].tolist()
    assert report.loc[9, "status"] == "unreadable" and str(broken) in report.loc[9, "reason"]
    table = pd.read_parquet(project / "data" / "04_feature" / "mask" / "training_table.parquet")
    assert len(table) == 12 * 7 - 1 and 9 not in set(table["row"])


@pytest.mark.slow
def test_an_unreadable_evaluation_photo_is_marked_in_the_submission_report_or_stops_the_run(
    project,
):
    info = pd.read_csv(project / "data" / "01_raw" / "mask" / "eval" / "info.csv")
    broken_id = info["ImageID"].iloc[1]
    broken = project / "data" / "01_raw" / "mask" / "eval" / "images" / broken_id
    broken.write_bytes(broken.read_bytes()[:200])

    with pytest.raises(Exception, match=f"evaluation photo.*{broken_id}") as stopped:
        kedro_run(project, "mask", {"mask": {"ensemble": {"unusable_photos": "stop"}}})
    assert "unusable_photos: answer" in str(stopped.value)
    assert not (project / "data" / "06_models" / "mask" / "weights.safetensors").exists()

    kedro_run(project, "mask")
    (path,) = (project / "data" / "08_reporting" / "mask" / "submission_report.csv").glob("*/*")
    report = pd.read_csv(path).set_index("ImageID")
    assert report.index.tolist() == info["ImageID"].tolist()  # every row answered
    assert report["blank_crop"].tolist() == [i == broken_id for i in info["ImageID"]]
    assert report.loc[broken_id, "crop_status"] == "unreadable"
    assert report["ans"].between(0, 17).all()
