"""``RunArtifactDataset``: a trained model from its latest local version, or from the copy
an MLflow run logged, against a real sqlite tracking store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cloudpickle
import mlflow
import pytest
import torch
from kedro.io import DataCatalog, Version
from kedro.io.core import AbstractVersionedDataset, DatasetError
from kedro_datasets.json import JSONDataset
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from podium.datasets import RunArtifactDataset, SafetensorsModelsDataset

ARTIFACT_PATH = "models/deepfake"
FILEPATH = "data/06_models/deepfake/scorer.json"
PARAMETER = "deepfake_inference.model_run_id"
SCORER = {"threshold": 0.42, "weights": [1.0, -2.5, 3.25]}


def _config(run_id: str | None = None, **inner) -> dict:
    """The catalog entry of the inference pipeline (YAML, as a dict)."""
    return {
        "type": "podium.datasets.RunArtifactDataset",
        "run_id": run_id,
        "run_id_parameter": PARAMETER,
        "artifact_path": ARTIFACT_PATH,
        "dataset": {"type": "json.JSONDataset", "filepath": FILEPATH, "versioned": True, **inner},
    }


def _dataset(run_id: str | None = None) -> RunArtifactDataset:
    config = _config(run_id)
    config.pop("type")
    return RunArtifactDataset(**config)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One real sqlite tracking store for the module (a fresh one takes seconds) as
    MLflow's current one, restored afterwards; and the id of a run that logged the
    scorer under ``models/deepfake/`` as the training hook does (the file of a local
    version), plus the id of a run that logged nothing there."""
    root = tmp_path_factory.mktemp("store")
    previous, previous_env = tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment = MlflowClient(tracking_uri=uri).create_experiment("run-artifact")
        version = "2024-01-01T00.00.00.000Z"
        JSONDataset(filepath=str(root / "scorer.json"), version=Version(None, version)).save(SCORER)
        with mlflow.start_run(experiment_id=experiment) as trained:
            mlflow.log_artifact(str(root / "scorer.json" / version / "scorer.json"), ARTIFACT_PATH)
        with mlflow.start_run(experiment_id=experiment) as empty:
            mlflow.log_text("not a model", "notes/readme.txt")
        yield {"uri": uri, "experiment": experiment, "trained": trained.info.run_id,
               "empty": empty.info.run_id}  # fmt: skip
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A fresh project folder as the current one: no local version of the scorer."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _save_local(version: str, data) -> None:
    JSONDataset(filepath=FILEPATH, version=Version(None, version)).save(data)


# ------------------------------------------------------------------ from a run


def test_loads_the_file_the_run_logged(store, project):
    loaded = _dataset(store["trained"]).load()
    assert loaded == SCORER
    assert not (project / "data").exists()  # read from the run, nothing written locally


def test_a_run_id_wins_over_a_local_version(store, project):
    _save_local("2030-01-01T00.00.00.000Z", {"local": True})
    assert _dataset(store["trained"]).load() == SCORER
    assert _dataset(None).load() == {"local": True}


def test_loads_safetensors_models_the_run_logged(store, project):
    models = {"effnet/fold0": {"w": torch.arange(6.0).reshape(3, 2)}}
    name = "frame_models.safetensors"
    SafetensorsModelsDataset(name, version=Version(None, "v1")).save(models)
    with mlflow.start_run(experiment_id=store["experiment"]) as run:
        mlflow.log_artifact(str(project / name / "v1" / name), ARTIFACT_PATH)
    dataset = RunArtifactDataset(
        dataset={
            "type": "podium.datasets.SafetensorsModelsDataset",
            "filepath": "elsewhere/frame_models.safetensors",
            "versioned": True,
        },
        artifact_path=ARTIFACT_PATH,
        run_id=run.info.run_id,
    )
    loaded = dataset.load()
    assert loaded.keys() == models.keys()
    assert torch.equal(loaded["effnet/fold0"]["w"], models["effnet/fold0"]["w"])


def test_an_unknown_run_names_it_and_what_to_check(store, project):
    unknown = "0" * 32
    with pytest.raises(DatasetError) as error:
        _dataset(unknown).load()
    message = str(error.value)
    assert unknown in message and f"{ARTIFACT_PATH}/scorer.json" in message
    assert "mlflow runs" in message and f"--params={PARAMETER}=" in message


def test_a_run_without_the_artifact_names_it_and_what_to_check(store, project):
    with pytest.raises(DatasetError) as error:
        _dataset(store["empty"]).load()
    message = str(error.value)
    assert store["empty"] in message and f"{ARTIFACT_PATH}/scorer.json" in message
    assert "artifacts" in message and "training run" in message
    assert not _dataset(store["empty"]).exists()
    assert _dataset(store["trained"]).exists()


# ------------------------------------------------------------------ local versions


def test_without_a_run_id_the_newest_local_version_loads(project):
    _save_local("2024-01-01T00.00.00.000Z", {"model": "old"})
    _save_local("2024-06-01T00.00.00.000Z", {"model": "new"})
    for run_id in (None, ""):
        assert _dataset(run_id).load() == {"model": "new"}
    assert _dataset(None).exists()


def test_no_local_version_names_the_file_and_both_fixes(project):
    dataset = _dataset(None)
    assert not dataset.exists()
    with pytest.raises(DatasetError) as error:
        dataset.load()
    message = str(error.value)
    assert FILEPATH in message and "training pipeline" in message
    assert f"--params={PARAMETER}=<run id>" in message


def test_an_unversioned_inner_file_that_is_missing_names_the_fixes(project):
    config = _config(None, versioned=False)
    config.pop("type")
    with pytest.raises(DatasetError, match="run the training pipeline"):
        RunArtifactDataset(**config).load()


# ------------------------------------------------------------------ the dataset itself


def test_save_is_refused(project):
    with pytest.raises(DatasetError, match="load-only.*training pipeline's own entry"):
        _dataset(None).save({"x": 1})


def test_describe_names_the_run_the_artifact_path_and_the_inner_dataset():
    description = _dataset("abc")._describe()
    assert description["run_id"] == "abc" and description["artifact_path"] == ARTIFACT_PATH
    assert FILEPATH in str(description["dataset"]["filepath"])


def test_a_bad_inner_config_fails_when_built():
    with pytest.raises(DatasetError):
        RunArtifactDataset(dataset={"type": "no.SuchDataset", "filepath": "x"}, artifact_path="m")
    with pytest.raises(DatasetError, match="filepath"):
        RunArtifactDataset(dataset={"type": "json.JSONDataset"}, artifact_path="m")


def test_it_pickles_with_cloudpickle(store, project):
    dataset = cloudpickle.loads(cloudpickle.dumps(_dataset(store["trained"])))
    assert dataset.load() == SCORER


def test_the_catalog_builds_it_from_config_and_loads_either_copy(store, project):
    _save_local("2024-01-01T00.00.00.000Z", {"local": True})
    catalog = DataCatalog.from_config(
        {
            "local_scorer": _config(None),
            "run_scorer": _config(store["trained"]),
        },
        save_version="2099-01-01T00.00.00.000Z",
    )
    dataset = catalog.get("local_scorer")
    assert isinstance(dataset, RunArtifactDataset)
    assert not isinstance(dataset, AbstractVersionedDataset)
    assert catalog.load("local_scorer") == {"local": True}
    assert catalog.load("run_scorer") == SCORER
    with pytest.raises(DatasetError, match="load-only"):
        catalog.save("run_scorer", {"x": 1})
    assert json.loads(next((project / FILEPATH).glob("*/scorer.json")).read_text()) == {
        "local": True
    }
