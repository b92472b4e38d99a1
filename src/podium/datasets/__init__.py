"""Kedro datasets that podium adds to kedro-datasets' own."""

from podium.datasets.atomic import AtomicPickleDataset
from podium.datasets.file_tree import FileTreeDataset
from podium.datasets.folder_store import FolderStoreDataset
from podium.datasets.images_zip import ImagesZipDataset
from podium.datasets.metrics import MetricsDataset
from podium.datasets.mlflow_tags import MlflowTagsDataset
from podium.datasets.models import SafetensorsModelsDataset
from podium.datasets.partitions import CachedPartitionsDataset, LazyPartitionsDataset
from podium.datasets.run_artifact import RunArtifactDataset
from podium.datasets.streams import (
    AtomicJSONDataset,
    AtomicParquetDataset,
    AtomicSafetensorsDataset,
    ClassMapsDataset,
    CsvChunksDataset,
)

__all__ = [
    "AtomicJSONDataset",
    "AtomicParquetDataset",
    "AtomicPickleDataset",
    "AtomicSafetensorsDataset",
    "CachedPartitionsDataset",
    "ClassMapsDataset",
    "CsvChunksDataset",
    "FileTreeDataset",
    "FolderStoreDataset",
    "ImagesZipDataset",
    "LazyPartitionsDataset",
    "MetricsDataset",
    "MlflowTagsDataset",
    "RunArtifactDataset",
    "SafetensorsModelsDataset",
]
