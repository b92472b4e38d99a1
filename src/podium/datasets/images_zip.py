"""``ImagesZipDataset``: ``{file name: image bytes}`` <-> a flat zip, the format of Kaggle's
``images.zip`` submissions (no folders inside; Kaggle unzips and scores every image)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version


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
