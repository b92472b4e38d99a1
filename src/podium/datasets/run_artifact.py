"""``RunArtifactDataset``: a trained model for inference, from the latest local version of
its versioned catalog file or, given an MLflow run id, from the file that run logged.

Every training run logs each model file it saves under ``<artifact_path>/<file name>`` of
its MLflow run (``podium.hooks``, ``after_dataset_saved``), so the same inner dataset
config reads either copy::

    deepfake_inference_scorer:
      type: podium.datasets.RunArtifactDataset
      run_id: ${runtime_params:deepfake_inference.model_run_id, null}
      run_id_parameter: deepfake_inference.model_run_id
      artifact_path: models/deepfake
      dataset:
        type: json.JSONDataset
        filepath: data/06_models/deepfake/scorer.json
        versioned: true

Without a run id the inner dataset loads as configured (its latest version); with one,
``models/deepfake/scorer.json`` is downloaded from that run to a temporary folder and read
by the inner dataset type built unversioned at that path. The data is what the inner
dataset returns. The tracking store is ``tracking_uri`` if given, else MLflow's current
one, else ``sqlite:///mlflow.db`` in the current folder (``resolve_tracking_uri``).

The dataset is load-only and not versioned itself: the catalog's save version does not
apply to it. It keeps only its config, so it pickles (e.g. into an MLflow pyfunc).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import mlflow
from kedro.io.core import AbstractDataset, DatasetError, VersionNotFoundError
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from podium.models_registry import resolve_tracking_uri

_PATH_KEYS = ("filepath", "path")


class RunArtifactDataset(AbstractDataset[None, Any]):
    """Load the inner ``dataset``: its latest local version, or, when ``run_id`` is set,
    the copy run ``run_id`` logged at ``<artifact_path>/<file name of its filepath>``.

    Args:
        dataset: The inner dataset's catalog config (``type``, ``filepath`` or ``path``,
            ``versioned``, ...), as it is for the entry the training pipeline saves.
        artifact_path: The folder of the run's artifacts the file is logged under,
            e.g. ``models/deepfake``.
        run_id: The MLflow run to load from; ``None`` or empty for the local version.
        run_id_parameter: The parameter that sets ``run_id`` (e.g.
            ``deepfake_inference.model_run_id``), named in the error messages only.
        tracking_uri: The tracking store; by default MLflow's current one, else the
            project's ``sqlite:///mlflow.db``.
        metadata: Kedro's free-form metadata, unused by the dataset.
    """

    def __init__(
        self,
        dataset: dict[str, Any],
        artifact_path: str,
        run_id: str | None = None,
        run_id_parameter: str | None = None,
        tracking_uri: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(dataset, dict) or "type" not in dataset:
            raise DatasetError(
                "RunArtifactDataset needs 'dataset': the inner dataset's config with its 'type'"
            )
        self._dataset_config = copy.deepcopy(dataset)
        self._path_key = next((k for k in _PATH_KEYS if k in dataset), None)
        if self._path_key is None:
            raise DatasetError(
                "RunArtifactDataset's inner dataset needs a 'filepath' (or 'path'): its file "
                "name is the name of the run's artifact"
            )
        self._artifact_path = str(artifact_path).strip("/")
        self._run_id = str(run_id).strip() if run_id else None
        self._run_id_parameter = run_id_parameter
        self._tracking_uri = tracking_uri
        self.metadata = metadata
        self._inner()  # a bad inner config fails when the catalog is built, not at load

    # ------------------------------------------------------------------ properties

    @property
    def _filepath(self) -> str:
        return str(self._dataset_config[self._path_key])

    @property
    def _file_name(self) -> str:
        return PurePosixPath(self._filepath).name

    @property
    def _artifact(self) -> str:
        """``<artifact_path>/<file name>``: where the run logged the file."""
        return (
            f"{self._artifact_path}/{self._file_name}" if self._artifact_path else self._file_name
        )

    def _inner(self, local_path: str | None = None) -> AbstractDataset:
        """The inner dataset as configured, or unversioned at ``local_path``."""
        config = copy.deepcopy(self._dataset_config)
        if local_path is not None:
            config[self._path_key] = local_path
            config.pop("versioned", None)
        return AbstractDataset.from_config(f"{self._filepath} (inner)", config)

    def _set_run_id_hint(self) -> str:
        if self._run_id_parameter:
            return f"pass --params={self._run_id_parameter}=<run id>"
        return "set this dataset's run_id to a run id"

    # ------------------------------------------------------------------ load / save

    def load(self) -> Any:
        if self._run_id:
            return self._load_from_run(self._run_id)
        return self._load_local()

    def save(self, data: None) -> None:
        raise DatasetError(
            f"RunArtifactDataset ({self._filepath}) is load-only: it is written by the "
            "training pipeline's own entry"
        )

    def _load_local(self) -> Any:
        inner = self._inner()
        try:
            return inner.load()
        except VersionNotFoundError as err:
            raise self._no_local_version() from err
        except DatasetError as err:
            if not _exists(inner):
                raise self._no_local_version() from err
            raise

    def _no_local_version(self) -> DatasetError:
        return DatasetError(
            f"No trained model at {self._filepath}: run the training pipeline that saves it "
            f"first, or load one logged by an MLflow run: {self._set_run_id_hint()} "
            f"(a run that logged {self._artifact})"
        )

    def _load_from_run(self, run_id: str) -> Any:
        uri = resolve_tracking_uri(self._tracking_uri)
        self._check_logged(run_id, uri)
        with tempfile.TemporaryDirectory(prefix="podium-run-artifact-") as folder:
            try:
                local = mlflow.artifacts.download_artifacts(
                    run_id=run_id,
                    artifact_path=self._artifact,
                    dst_path=folder,
                    tracking_uri=uri,
                )
            except MlflowException as err:
                raise DatasetError(
                    f"Could not download {self._artifact} of MLflow run {run_id} "
                    f"(tracking store {uri}): {err}"
                ) from err
            return self._inner(Path(local).as_posix()).load()

    def _logged(self, run_id: str, uri: str) -> list[str]:
        """The names logged under ``artifact_path`` of the run (files and folders); an
        unknown run raises ``DatasetError``."""
        client = MlflowClient(tracking_uri=uri)
        try:
            client.get_run(run_id)
        except MlflowException as err:
            raise DatasetError(
                f"No MLflow run {run_id} in the tracking store {uri} (looking for its "
                f"artifact {self._artifact}): check the run id ({self._set_run_id_hint()}) "
                f"against `mlflow runs list --experiment-id <id>` or the MLflow UI, and that "
                f"the tracking store is the one the training run used ({err.message})"
            ) from err
        infos = client.list_artifacts(run_id, self._artifact_path or None)
        return sorted(PurePosixPath(info.path).name for info in infos)

    def _check_logged(self, run_id: str, uri: str) -> None:
        names = self._logged(run_id, uri)
        if self._file_name not in names:
            raise DatasetError(
                f"MLflow run {run_id} has no artifact {self._artifact} (under "
                f"{self._artifact_path or 'its artifacts'}/ it logged: "
                f"{', '.join(names) or 'nothing'}): check the run's artifacts (the MLflow UI, "
                f"or `mlflow artifacts list --run-id {run_id}`) and pass the run id of a "
                "training run that saved this model"
            )

    # ------------------------------------------------------------------ kedro

    def _exists(self) -> bool:
        if self._run_id:
            try:
                self._check_logged(self._run_id, resolve_tracking_uri(self._tracking_uri))
            except (DatasetError, MlflowException):
                return False
            return True
        return _exists(self._inner())

    def _describe(self) -> dict[str, Any]:
        return {
            "run_id": self._run_id,
            "artifact_path": self._artifact_path,
            "dataset": self._inner()._describe(),
        }


def _exists(dataset: AbstractDataset) -> bool:
    try:
        return dataset.exists()
    except DatasetError:
        return False
