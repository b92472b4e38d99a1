"""Two small Kedro datasets the monet pipeline needs and kedro-datasets lacks.

- ``ImagesZipDataset``: ``{file name: jpg bytes}`` <-> a flat zip, the competition's
  ``images.zip`` (no folders inside; Kaggle unzips and scores every image).
- ``MlflowTagsDataset``: ``{tag: value}`` set on the active MLflow run (kedro-mlflow logs
  parameters, metrics and artifacts but no tags); here, which feature extractor the FID
  was computed with, so a stand-in figure is never read as Kaggle's.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import mlflow
from kedro.io.core import AbstractDataset, AbstractVersionedDataset, DatasetError, Version


class ImagesZipDataset(AbstractVersionedDataset[Mapping[str, bytes], dict[str, bytes]]):
    """A flat zip of images, written in name order; versioned like any Kedro dataset."""

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        filesystem = fsspec.filesystem("file")
        super().__init__(
            filepath=PurePosixPath(filepath),
            version=version,
            exists_function=filesystem.exists,
            glob_function=filesystem.glob,
        )
        self.metadata = metadata

    def load(self) -> dict[str, bytes]:
        with zipfile.ZipFile(Path(self._get_load_path())) as archive:
            return {name: archive.read(name) for name in archive.namelist()}

    def save(self, data: Mapping[str, bytes]) -> None:
        bad = [name for name in data if "/" in name or "\\" in name or not name]
        if bad:
            raise DatasetError(f"images.zip must be flat; these names hold folders: {bad[:5]}")
        path = Path(self._get_save_path())
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        # jpgs are already compressed: storing them is as small and much faster
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for name in sorted(data):
                archive.writestr(name, data[name])
        path.write_bytes(buffer.getvalue())

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path()).exists()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}


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
