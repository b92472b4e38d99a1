"""A PickleDataset whose files appear whole or not at all.

kedro-datasets' PickleDataset writes straight to its final path, so a run killed
mid-save leaves a truncated file that the next run takes for finished work (a 0-byte
``.joblib`` face record, say). This one writes beside it under a temporary name and
renames it into place: the rename is atomic on a local file system, so a reader sees
the old file, the new one, or none. Inside a PartitionedDataset the temporary name does
not end with the partition suffix, so a leftover from a killed run is never listed.
"""

from __future__ import annotations

import importlib
import os
import uuid
from typing import Any

from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets.pickle import PickleDataset

#: Marks a file that is still being written (or was, by a run that was killed).
PARTIAL_MARK = ".partial-"


class AtomicPickleDataset(PickleDataset):
    """``pickle.PickleDataset`` (any backend: pickle, joblib, ...) with atomic saves."""

    def save(self, data: Any) -> None:
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        partial = f"{save_path}{PARTIAL_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            with self._fs.open(partial, **self._fs_open_args_save) as fs_file:
                backend = importlib.import_module(self._backend)
                backend.dump(data, fs_file, **self._save_args)
            self._fs.mv(partial, save_path)
        except Exception as exc:
            if self._fs.exists(partial):
                self._fs.rm(partial)
            raise DatasetError(f"{data.__class__} was not saved to {save_path}: {exc}") from exc
        self._invalidate_cache()
