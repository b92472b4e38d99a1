"""uda: Samsung AI Challenge 2023 camera-invariant domain adaptation (pinhole -> fisheye
segmentation), DACS / DAFormer / MIC self-training with every component a switch."""

from podium.pipelines.uda.pipeline import create_pipeline

__all__ = ["create_pipeline"]
