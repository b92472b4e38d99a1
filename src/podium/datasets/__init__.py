"""Kedro datasets that podium adds to kedro-datasets' own."""

from podium.datasets.file_tree import FileTreeDataset
from podium.datasets.models import SafetensorsModelsDataset
from podium.datasets.partitions import CachedPartitionsDataset

__all__ = ["CachedPartitionsDataset", "FileTreeDataset", "SafetensorsModelsDataset"]
