"""PartitionedDatasets for collections of 100,000 partitions.

Kedro's PartitionedDataset builds one dataset object per partition when it is loaded,
about 44 kB each: 5 GB for DFDC's 119,154 face records before a single one is read.
``LazyPartitionsDataset`` lists the partitions the same way but hands out small load
functions that build their dataset only when called (in the node, or inside a DataLoader
worker), so a loaded collection costs its file names. ``CachedPartitionsDataset`` also
reads an empty folder as "nothing yet": the cache of work already done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from kedro.io.core import DatasetError
from kedro_datasets.partitions import PartitionedDataset


@dataclass(frozen=True)
class PartitionLoad:
    """Loads one partition when called (picklable: a DataLoader worker may call it)."""

    dataset_type: type
    config: Mapping[str, Any]
    filepath_arg: str
    filepath: str

    def __call__(self) -> Any:
        kwargs = deepcopy(dict(self.config))
        kwargs[self.filepath_arg] = self.filepath
        return self.dataset_type(**kwargs).load()


class PartitionLoaders(Mapping[str, PartitionLoad]):
    """Partition id -> :class:`PartitionLoad`, made on access; holds only the paths."""

    def __init__(self, dataset: PartitionedDataset, paths: Mapping[str, str]) -> None:
        self._type = dataset._dataset_type
        self._config = dataset._dataset_config
        self._arg = dataset._filepath_arg
        self._join = dataset._join_protocol
        self._paths = dict(paths)

    def __getitem__(self, partition: str) -> PartitionLoad:
        path = self._paths[partition]  # KeyError names the missing partition
        return PartitionLoad(self._type, self._config, self._arg, self._join(path))

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


class LazyPartitionsDataset(PartitionedDataset):
    """``load()`` gives a :class:`PartitionLoaders` mapping instead of a dict of bound
    ``load`` methods; saving is PartitionedDataset's."""

    def load(self) -> Mapping[str, Callable[[], Any]]:
        self._invalidate_caches()
        paths = {self._path_to_partition(p): p for p in self._list_partitions()}
        if not paths:
            raise DatasetError(f"No partitions found in '{self._path}'")
        return PartitionLoaders(self, paths)


class CachedPartitionsDataset(LazyPartitionsDataset):
    """``load()`` gives ``{}`` where there are no partitions yet, else as its parent."""

    def load(self) -> Mapping[str, Callable[[], Any]]:
        if not self._list_partitions():
            return {}
        return super().load()
