"""A folder of files in a competition's own on-disk layout, as one catalog entry.

Loading gives the folder's ``Path``: the competition loaders (``podium.layouts``) and
Dask workers read videos and images by path, and never need the whole tree in memory.
Saving takes ``{relative path: bytes}`` (what the sample generators produce) and
replaces the tree, but only a tree that podium's generator wrote itself: a folder
holding a real download is never deleted.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

SAMPLE_MARKER = "_podium_sample.json"


class FileTreeDataset(AbstractDataset[Mapping[str, bytes], Path]):
    """``load() -> Path`` of an existing folder; ``save({rel_path: bytes})`` writes it.

    Args:
        path: the folder, e.g. ``data/01_raw/deepfake``.
        marker: file written beside the tree on save, naming it as generated sample
            data (``None`` to write no marker and refuse to replace any non-empty folder).
        missing_hint: what the error says to do when the folder does not exist.
        metadata: free-form (kedro-viz reads ``layer`` from it).
    """

    def __init__(
        self,
        path: str,
        marker: str | None = SAMPLE_MARKER,
        missing_hint: str = "run `kedro run --pipeline=sample_data` or copy the real data there",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._path = Path(path)
        self._marker = marker
        self._missing_hint = missing_hint
        self.metadata = metadata

    def load(self) -> Path:
        if not self._path.is_dir():
            raise DatasetError(
                f"Raw data folder '{self._path}' does not exist: {self._missing_hint}."
            )
        return self._path.resolve()

    def save(self, data: Mapping[str, bytes]) -> None:
        self._check_replaceable()
        staging = self._path.with_name(self._path.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        for relative, content in sorted(data.items()):
            target = staging / _safe_relative(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        if self._marker:
            summary = {"files": len(data), "bytes": sum(len(v) for v in data.values())}
            (staging / self._marker).write_text(json.dumps(summary, indent=2) + "\n")
        # Swap in the finished tree only once it is complete: an interrupted run leaves
        # the previous sample intact rather than half a tree.
        shutil.rmtree(self._path, ignore_errors=True)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(self._path)

    def _exists(self) -> bool:
        return self._path.is_dir() and any(self._path.iterdir())

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "marker": self._marker}

    def _check_replaceable(self) -> None:
        if not self._path.exists() or not any(self._path.iterdir()):
            return
        if self._marker and (self._path / self._marker).exists():
            return
        raise DatasetError(
            f"Refusing to overwrite '{self._path}': it holds files that podium's sample "
            f"generator did not write (no '{self._marker}' in it), e.g. a real download. "
            "Move it away, or point this catalog entry at another folder in conf/local/."
        )


def _safe_relative(relative: str) -> PurePosixPath:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts:
        raise DatasetError(f"File name '{relative}' escapes its folder; use a relative path.")
    return path
