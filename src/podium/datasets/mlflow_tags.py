"""``MlflowTagsDataset``: ``{tag: value}`` set on the active MLflow run. kedro-mlflow logs
parameters, metrics and artifacts but no tags; a tag suits what describes a run rather
than measures it (e.g. which feature extractor an FID was computed with)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlflow
from kedro.io.core import AbstractDataset, DatasetError


class MlflowTagsDataset(AbstractDataset[Mapping[str, Any], dict[str, str]]):
    """Save sets the tags on the active MLflow run (nothing without one); load is refused."""

    def __init__(self, prefix: str = "", metadata: dict[str, Any] | None = None) -> None:
        self._prefix = prefix
        self.metadata = metadata
        self._last: dict[str, str] = {}

    def save(self, data: Mapping[str, Any]) -> None:
        self._last = {f"{self._prefix}{k}": str(v) for k, v in data.items()}
        if mlflow.active_run() is not None:
            mlflow.set_tags(self._last)

    def load(self) -> dict[str, str]:
        if not self._last:
            raise DatasetError("MlflowTagsDataset holds no tags until a node saves some")
        return dict(self._last)

    def _describe(self) -> dict[str, Any]:
        return {"prefix": self._prefix}
