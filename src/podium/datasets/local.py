"""The base of podium's versioned datasets that live in one local file or folder."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version


class LocalVersionedDataset(AbstractVersionedDataset):
    """Kedro's versioning (``<filepath>/<version>/<name>``) on the local file system;
    subclasses add ``load`` and ``save``."""

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

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path()).exists()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

    def _target(self) -> Path:
        """The path to save to, its folder made."""
        path = Path(self._get_save_path())
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
