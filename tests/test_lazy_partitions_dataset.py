"""LazyPartitionsDataset: a loaded collection costs its file names, not a dataset each."""

from __future__ import annotations

import pickle
import tracemalloc

import pytest
from kedro.io.core import DatasetError
from kedro_datasets.partitions import PartitionedDataset

from podium.datasets import CachedPartitionsDataset, LazyPartitionsDataset

INNER = {"type": "podium.datasets.AtomicPickleDataset", "backend": "joblib"}


def _store(tmp_path, n: int):
    dataset = LazyPartitionsDataset(path=str(tmp_path), dataset=INNER, filename_suffix=".joblib")
    dataset.save({f"key/part_{i % 7}/v{i:05d}": {"i": i} for i in range(n)})
    return dataset


def test_loaders_read_their_partition_when_called_and_travel_to_workers(tmp_path):
    loaders = _store(tmp_path, 30).load()
    assert len(loaders) == 30 and "key/part_3/v00010" in loaders
    assert loaders["key/part_3/v00010"]() == {"i": 10}
    again = pickle.loads(pickle.dumps(loaders["key/part_0/v00007"]))  # a DataLoader worker
    assert again() == {"i": 7}
    with pytest.raises(KeyError, match="v99999"):
        loaders["key/part_0/v99999"]
    assert sorted(loaders) == sorted(PartitionedDataset(
        path=str(tmp_path), dataset=INNER, filename_suffix=".joblib"
    ).load())  # fmt: skip


def test_an_empty_folder_is_an_error_but_an_empty_cache(tmp_path):
    with pytest.raises(DatasetError, match="No partitions"):
        LazyPartitionsDataset(path=str(tmp_path), dataset=INNER).load()
    assert CachedPartitionsDataset(path=str(tmp_path), dataset=INNER).load() == {}


def _traced_load(dataset) -> tuple[int, object]:
    tracemalloc.start()
    try:
        loaded = dataset.load()
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return size, loaded


def test_a_loaded_collection_costs_a_fraction_of_kedros(tmp_path):
    _store(tmp_path, 2000)
    kedro_size, kedro = _traced_load(
        PartitionedDataset(path=str(tmp_path), dataset=INNER, filename_suffix=".joblib")
    )
    lazy_size, lazy = _traced_load(
        LazyPartitionsDataset(path=str(tmp_path), dataset=INNER, filename_suffix=".joblib")
    )
    assert len(kedro) == len(lazy) == 2000
    assert lazy_size * 5 < kedro_size, (lazy_size, kedro_size)  # RSS: 0.8 vs 44 kB a partition
