"""deepfake_inference: scoring new videos with a trained deepfake ensemble."""

from podium.pipelines.deepfake_inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
