"""The MLflow models a training run logs: its inference pipeline, ready to score new data.

kedro-mlflow's pattern (``pipeline_ml_factory``): a training pipeline is paired with an
inference pipeline whose inputs are the training run's saved outputs plus one input to
predict on, and the run logs the inference pipeline as an MLflow pyfunc model (kedro-mlflow's
``KedroPipelineModel``) with those outputs as the model's artifacts::

    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/deepfake_scorer")
    model.predict(["data/01_raw/deepfake/test_videos/aaqaifqrwn.mp4", ...])

podium logs it from :class:`InferenceModelHooks` rather than by registering a
``PipelineML``: kedro-mlflow takes each artifact's ``_filepath``, which for podium's
``versioned: true`` entries is the folder of every version ever saved, so each model would
carry all of them; here each artifact is the one version this run saved. The model is
logged as soon as the run has saved every artifact it needs (while the MLflow run is
active), so a run filtered to other nodes (``--tags``, ``--to-nodes``) logs none.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline

from podium.hooks import saved_path

log = logging.getLogger(__name__)

#: Installed distributions pinned in each model's requirements (what its pipeline imports).
REQUIREMENTS = (
    "podium",
    "kedro",
    "kedro-datasets",
    "kedro-mlflow",
    "mlflow",
    "torch",
    "torchvision",
    "timm",
    "albumentations",
    "opencv-python-headless",
    "facenet-pytorch",
    "lightgbm",
    "safetensors",
    "pandas",
    "numpy",
    "distributed",
)


@dataclass(frozen=True)
class InferenceModel:
    """An inference pipeline logged as the MLflow model ``name`` by a training run.

    ``artifacts``: inference input -> the training output it is (the file that run saved);
    ``input_name``: what ``predict`` is given; the pipeline's other inputs are parameters,
    stored with the model at the run's values."""

    name: str
    pipeline: Callable[[], Pipeline]
    input_name: str
    artifacts: Mapping[str, str]


def _deepfake_scorer() -> InferenceModel:
    from podium.pipelines.deepfake_inference.pipeline import (
        INFERENCE_ARTIFACTS,
        INFERENCE_INPUT,
        create_scoring_model_pipeline,
    )

    return InferenceModel(
        "deepfake_scorer", create_scoring_model_pipeline, INFERENCE_INPUT, INFERENCE_ARTIFACTS
    )


def inference_models() -> list[InferenceModel]:
    """Every model a training run may log (one per competition that has one)."""
    return [_deepfake_scorer()]


def requirements() -> list[str]:
    """``name==version`` of each installed distribution of :data:`REQUIREMENTS`, so MLflow
    need not load the model in a subprocess to guess them."""
    pinned = []
    for name in REQUIREMENTS:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pinned


def _unversioned(dataset: Any, path: Path) -> Any:
    """The dataset's type at the one file ``path`` (the version a run saved), unversioned."""
    return type(dataset)(filepath=str(path))


def log_inference_model(
    model: InferenceModel,
    saved: Mapping[str, tuple[Any, Path]],
    catalog: DataCatalog,
) -> str:
    """Log ``model`` under the active MLflow run; ``saved``: training output -> (dataset,
    the file this run saved). Returns the model's URI."""
    from kedro_mlflow.mlflow import KedroPipelineModel

    pipeline = model.pipeline()
    model_catalog = DataCatalog()
    for name in sorted(pipeline.inputs()):
        if name in model.artifacts:
            dataset, path = saved[model.artifacts[name]]
            model_catalog[name] = _unversioned(dataset, path)
        elif name.startswith("params:"):
            model_catalog[name] = MemoryDataset(catalog.load(name))
        elif name != model.input_name:
            raise ValueError(f"{model.name}: input {name!r} is neither an artifact nor params")
    python_model = KedroPipelineModel(
        pipeline=pipeline, catalog=model_catalog, input_name=model.input_name
    )
    with tempfile.TemporaryDirectory() as folder:
        artifacts = python_model.extract_pipeline_artifacts(parameters_saving_folder=Path(folder))
        mlflow.pyfunc.log_model(
            name=model.name,
            python_model=python_model,
            artifacts=artifacts,
            pip_requirements=requirements(),
        )
    run_id = mlflow.active_run().info.run_id
    return f"runs:/{run_id}/{model.name}"


class InferenceModelHooks:
    """Logs each :class:`InferenceModel` once the run has saved all its artifacts."""

    def __init__(self, models: Callable[[], list[InferenceModel]] = inference_models) -> None:
        self._models = models
        self._catalog: DataCatalog | None = None
        self._saved: dict[str, tuple[Any, Path]] = {}
        self._logged: set[str] = set()

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Pipeline, catalog: DataCatalog):
        self._catalog, self._saved, self._logged = catalog, {}, set()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if self._catalog is None:
            return
        models = [m for m in self._models() if dataset_name in m.artifacts.values()]
        if not models:
            return
        dataset = self._catalog.get(dataset_name)
        path = saved_path(dataset)
        if path is None or not path.is_file():
            return
        self._saved[dataset_name] = (dataset, path)
        for model in models:
            ready = all(name in self._saved for name in model.artifacts.values())
            if not ready or model.name in self._logged or mlflow.active_run() is None:
                continue
            uri = log_inference_model(model, self._saved, self._catalog)
            self._logged.add(model.name)
            log.info(
                "Logged the MLflow model %s: mlflow.pyfunc.load_model(%r).predict(<video paths>)",
                model.name,
                uri,
            )

    @hook_impl
    def after_pipeline_run(self, run_params: dict, pipeline: Pipeline, catalog: DataCatalog):
        self._catalog = None

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict, pipeline, catalog):
        self._catalog = None
