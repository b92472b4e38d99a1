"""A PartitionedDataset that may be empty: the cache of work already done.

Kedro's PartitionedDataset refuses to load a folder with no partitions; a node that
skips what an earlier run already produced must be able to read "nothing yet".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kedro_datasets.partitions import PartitionedDataset


class CachedPartitionsDataset(PartitionedDataset):
    """``load()`` gives ``{}`` where there are no partitions yet, else as PartitionedDataset."""

    def load(self) -> dict[str, Callable[[], Any]]:
        if not self._list_partitions():
            return {}
        return super().load()
