"""Kedro datasets that write a collection as it is produced, atomically.

``ClassMapsDataset``: per-image class maps (uint8 label images) as one PNG each in a
(versioned) folder. ``save`` takes a mapping or any iterable of ``(image id, class map)``
pairs, e.g. a generator that predicts one image at a time: each map is written as soon as
it arrives, so memory holds one map, never the split. ``load`` gives ``{image id: loader}``
(lazy, like a PartitionedDataset's): call a loader to read that one map.

``CsvChunksDataset``: a CSV written from a DataFrame or an iterable of DataFrame chunks
(header once, then the rows of each chunk as it arrives), e.g. a submission built image by
image.

``AtomicParquetDataset`` (a table), ``AtomicJSONDataset`` (a document) and
``AtomicSafetensorsDataset`` (a flat ``{name: tensor}`` dict, loaded without unpickling
anything) write the same way.

Both write under a temporary name beside the target and rename it into place only once the
last item is written: a run killed halfway leaves a ``*.partial-*`` entry that no load and
no version lookup sees, and the previous version stays the latest complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from kedro.io.core import DatasetError, Version

from podium.core.checkpoints import atomic_path, load_state_dict, save_state_dict
from podium.datasets.local import LocalVersionedDataset

SUFFIX = ".png"


def _partial_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _items(data: Any) -> Iterable[tuple[Any, Any]]:
    return data.items() if isinstance(data, Mapping) else data


def read_class_map(path: str) -> np.ndarray:
    """One stored class map as an (H, W) uint8 array."""
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"class map {path} cannot be read as a PNG")
    return image


def _replace_dir(staging: Path, target: Path) -> None:
    """Move the finished folder ``staging`` to ``target`` (replacing an unversioned one)."""
    old = None
    if target.exists():
        old = _partial_name(target)
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class ClassMapsDataset(LocalVersionedDataset):
    """A folder of ``<image id>.png`` class maps; see the module docstring."""

    def load(self) -> dict[str, Callable[[], np.ndarray]]:
        folder = Path(self._get_load_path())
        if not folder.is_dir():
            raise DatasetError(f"class-map folder {folder} does not exist; run the prediction")
        return {
            path.name[: -len(SUFFIX)]: partial(read_class_map, str(path))
            for path in sorted(folder.glob(f"*{SUFFIX}"))
        }

    def save(self, data: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> None:
        target = self._target()
        staging = _partial_name(target)
        staging.mkdir()
        try:
            for image_id, class_map in _items(data):
                name = str(image_id)
                if not name or "/" in name or "\\" in name or name.startswith("."):
                    raise DatasetError(f"image id {name!r} cannot name a file")
                array = np.asarray(class_map)
                if array.dtype != np.uint8 or array.ndim != 2:
                    raise DatasetError(
                        f"class map of {name!r} must be a 2-D uint8 array, got "
                        f"{array.dtype} {array.shape}"
                    )
                if not cv2.imwrite(str(staging / f"{name}{SUFFIX}"), array):
                    raise DatasetError(f"could not write the class map of {name!r}")
                del class_map, array  # hold no map while the next one is produced
            _replace_dir(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


class CsvChunksDataset(LocalVersionedDataset):
    """A CSV written chunk by chunk; see the module docstring.

    Args:
        filepath: the csv file.
        load_args: passed to ``pandas.read_csv`` (default: ``keep_default_na=False``, so
            strings such as ``-1`` or ``NA`` come back as written).
    """

    def __init__(
        self,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(filepath, version, metadata)
        self._load_args = {"keep_default_na": False, **(load_args or {})}

    def load(self) -> pd.DataFrame:
        return pd.read_csv(Path(self._get_load_path()), **self._load_args)

    def save(self, data: pd.DataFrame | Iterable[pd.DataFrame]) -> None:
        target = self._target()
        staging = _partial_name(target)
        chunks = [data] if isinstance(data, pd.DataFrame) else data
        try:
            columns = None
            with open(staging, "w", encoding="utf-8", newline="") as handle:
                for chunk in chunks:
                    if columns is None:
                        columns = list(chunk.columns)
                        chunk.to_csv(handle, index=False)
                    elif list(chunk.columns) != columns:
                        raise DatasetError(
                            f"chunk columns {list(chunk.columns)} differ from the first "
                            f"chunk's {columns}"
                        )
                    else:
                        chunk.to_csv(handle, index=False, header=False)
                if columns is None:
                    raise DatasetError("no chunk to write: the csv would have no header")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, target)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise


class AtomicParquetDataset(LocalVersionedDataset):
    """A pandas table as parquet, written under a temporary name and renamed into place."""

    def load(self) -> pd.DataFrame:
        return pd.read_parquet(Path(self._get_load_path()))

    def save(self, data: pd.DataFrame) -> None:
        with atomic_path(self._target()) as tmp:
            data.to_parquet(tmp, index=False)


class AtomicSafetensorsDataset(LocalVersionedDataset):
    """A flat ``{name: tensor}`` dict as one safetensors file, written atomically."""

    def load(self) -> dict[str, torch.Tensor]:
        return load_state_dict(Path(self._get_load_path()))

    def save(self, data: Mapping[str, torch.Tensor]) -> None:
        save_state_dict(self._target(), data)


class AtomicJSONDataset(LocalVersionedDataset):
    """A JSON document (a dict of plain values), written atomically: a run killed while
    saving leaves the previous version readable, never a cut-off file."""

    def load(self) -> Any:
        path = Path(self._get_load_path())
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path} is not valid JSON ({error}); delete it") from error

    def save(self, data: Any) -> None:
        with atomic_path(self._target()) as tmp:
            Path(tmp).write_text(json.dumps(data, indent=1, sort_keys=True))
