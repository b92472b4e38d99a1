"""DFDC deepfake detection: videos -> faces -> splits -> CNNs -> stacking -> calibrated ensemble."""

from podium.pipelines.deepfake.pipeline import create_pipeline

__all__ = ["create_pipeline"]
