"""Kedro datasets that podium adds to kedro-datasets' own."""

from podium.datasets.file_tree import FileTreeDataset

__all__ = ["FileTreeDataset"]
