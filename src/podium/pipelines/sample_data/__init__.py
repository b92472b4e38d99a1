"""Generate the embedded sample of each competition in its own on-disk layout."""

from podium.pipelines.sample_data.pipeline import create_pipeline

__all__ = ["create_pipeline"]
