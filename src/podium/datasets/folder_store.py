"""``FolderStoreDataset``: a folder that Dask workers write into, item by item.

A collection whose items workers produce (the mask pipeline's crops of 18,900 photos) is
never one object in the driver: each worker writes what it makes straight into this
folder (the pipeline's module describes its entries), so the catalog hands the nodes the
folder itself, as ``FileTreeDataset`` hands them a raw data folder. Loading creates it when
absent; a node never saves it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError


class FolderStoreDataset(AbstractDataset[None, Path]):
    """``load() -> Path`` of the store (created if missing); ``save`` is refused.

    Args:
        path: the folder, e.g. ``data/03_primary/mask/train_crops``.
        metadata: free-form (kedro-viz reads ``layer`` from it).
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> Path:
        self._path.mkdir(parents=True, exist_ok=True)
        return self._path.resolve()

    def save(self, data: None) -> None:
        raise DatasetError(
            f"The store '{self._path}' is written by the workers themselves, one entry per "
            "item; no node saves it. Use it as a node input."
        )

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
