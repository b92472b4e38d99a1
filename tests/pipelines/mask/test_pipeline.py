"""`kedro run --pipelines=mask` end to end in a throwaway project on a tiny sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from safetensors import safe_open

from podium.core.config import ParameterError
from podium.layouts.mask import MaskLayoutError
from tests.conftest import kedro_run, make_project
from tests.pipelines.mask.conftest import TINY_PARAMS


@pytest.fixture
def project(tmp_path, monkeypatch, pristine_mask_root) -> Path:
    root = make_project(tmp_path / "project", TINY_PARAMS, git=False)
    shutil.copytree(pristine_mask_root, root / "data" / "01_raw" / "mask")
    monkeypatch.chdir(root)
    return root


def _only_run(project: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("podium")
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


@pytest.mark.slow
def test_the_mask_pipeline_runs_end_to_end_and_tracks_everything(project):
    kedro_run(project, "mask")
    client, run = _only_run(project)
    assert run.info.run_name == "mask" and run.info.status == "FINISHED"
    metrics = run.data.metrics
    for prefix in ("oof.soft", "oof.hard", "eval.soft", "eval.hard", "eval.submission"):
        for key in ("f1_macro", "accuracy", "mask.f1_macro", "gender.accuracy", "age.f1_macro"):
            assert 0.0 <= metrics[f"{prefix}.{key}"] <= 1.0, f"{prefix}.{key}"
    assert metrics["crop.train.cropped"] == 12 * 7
    assert any(k.startswith("train.resnet10t/fold1/model/train_loss") for k in metrics)
    assert run.data.params["mask.model.variant"] == "multihead"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "mask")}
    assert {
        f"mask/oof_confusion_{t}.png" for t in ("classes", "mask", "gender", "age")
    } <= artifacts

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
