"""A run's trained weights and submission, back from MLflow by run id.

Every ``kedro run`` logs the weights it trained under ``models/<pipeline>/`` and its
submission under ``submissions/<pipeline>/`` of its MLflow run (catalog entries with
``metadata: {mlflow: {artifact_path: ...}}``, logged by ``podium.hooks``): each file is the
exact bytes of the local version the run saved, e.g.
``data/06_models/mask/weights.safetensors/<version>/weights.safetensors`` becomes
``models/mask/weights.safetensors``::

    from podium.models_registry import download_model, load_weights

    paths = download_model(run_id, "mask")  # {"weights.safetensors": Path(...)}
    tensors = load_weights(run_id, "mask")  # {"resnet10t/fold0/model/conv1.weight": ...}

=========  ===================================================  =========================
pipeline   models/<pipeline>/                                   submissions/<pipeline>/
=========  ===================================================  =========================
deepfake   frame_models.safetensors (``<model>::<tensor>``)     submission.csv
mask       weights.safetensors                                  submission.csv
uda        weights.safetensors (``<member>/{student,ema}/..``)  submission.csv
monet      generator_photo_to_monet.safetensors, ... (four)     images.zip
=========  ===================================================  =========================

The tracking store is the one given, else MLflow's current one (``MLFLOW_TRACKING_URI``, or
what kedro-mlflow set inside a Kedro session or notebook), else the project's embedded
``sqlite:///mlflow.db`` in the current folder. Weights load with safetensors: no pickled
code runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import torch
from mlflow.tracking import MlflowClient

from podium.core.checkpoints import load_state_dict

MODELS = "models"
SUBMISSIONS = "submissions"
#: The embedded store of conf/base/mlflow.yml, relative to the project root.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


class ModelNotLoggedError(LookupError):
    """The run has no artifact where the models (or the submission) should be."""


def model_artifact_path(pipeline: str) -> str:
    """``models/<pipeline>``: where a run's trained weights are in its artifacts."""
    return f"{MODELS}/{pipeline}"


def submission_artifact_path(pipeline: str) -> str:
    """``submissions/<pipeline>``: where a run's submission is in its artifacts."""
    return f"{SUBMISSIONS}/{pipeline}"


def download_model(
    run_id: str,
    pipeline: str,
    dst_path: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Path]:
    """Download the weights run ``run_id`` logged under ``models/<pipeline>/``:
    ``{file name: local path}`` (into ``dst_path``, else a fresh temporary folder)."""
    return _download(run_id, model_artifact_path(pipeline), dst_path, tracking_uri)


def download_submission(
    run_id: str,
    pipeline: str,
    dst_path: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Path]:
    """Download the submission run ``run_id`` logged under ``submissions/<pipeline>/``:
    ``{file name: local path}``."""
    return _download(run_id, submission_artifact_path(pipeline), dst_path, tracking_uri)


def load_weights(
    run_id: str,
    pipeline: str,
    name: str | None = None,
    device: str | torch.device = "cpu",
    tracking_uri: str | None = None,
) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file of the run's models (``name``, e.g.
    ``"generator_photo_to_monet.safetensors"``; may be left out when there is only one),
    flat ``{key: tensor}`` as stored, on ``device``."""
    uri = resolve_tracking_uri(tracking_uri)
    files = [
        n for n in _list(run_id, model_artifact_path(pipeline), uri) if n.endswith(".safetensors")
    ]
    if name is None:
        if len(files) != 1:
            raise ValueError(
                f"run {run_id} logged {len(files)} weight files under "
                f"{model_artifact_path(pipeline)}/ ({', '.join(files) or 'none'}): pass name="
            )
        name = files[0]
    elif name not in files:
        raise ModelNotLoggedError(
            f"run {run_id} has no {model_artifact_path(pipeline)}/{name} "
            f"(it logged: {', '.join(files) or 'nothing'})"
        )
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path=f"{model_artifact_path(pipeline)}/{name}",
        tracking_uri=uri,
    )
    return load_state_dict(path, device=device)


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The given URI, else MLflow's current one when set, else ``sqlite:///mlflow.db``
    of the project in the current folder (MLflow 3 refuses its own ``./mlruns`` default)."""
    if tracking_uri:
        return tracking_uri
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if is_tracking_uri_set():
        return mlflow.get_tracking_uri()
    return f"sqlite:///{Path.cwd() / DEFAULT_TRACKING_URI.removeprefix('sqlite:///')}"


def _list(run_id: str, artifact_path: str, tracking_uri: str) -> list[str]:
    client = MlflowClient(tracking_uri=tracking_uri)
    client.get_run(run_id)  # an unknown run id fails here, naming it
    return sorted(
        Path(info.path).name
        for info in client.list_artifacts(run_id, artifact_path)
        if not info.is_dir
    )


def _download(
    run_id: str,
    artifact_path: str,
    dst_path: str | os.PathLike[str] | None,
    tracking_uri: str | None,
) -> dict[str, Path]:
    uri = resolve_tracking_uri(tracking_uri)
    names = _list(run_id, artifact_path, uri)
    if not names:
        raise ModelNotLoggedError(
            f"run {run_id} logged nothing under {artifact_path}/: not a training run of "
            "that pipeline, or one recorded before models were logged (its local versions "
            "are under data/06_models/ and data/07_model_output/)"
        )
    folder = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path=artifact_path,
        dst_path=None if dst_path is None else str(dst_path),
        tracking_uri=uri,
    )
    return {name: Path(folder) / name for name in names}
