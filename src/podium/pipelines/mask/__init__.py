"""mask: the 2nd-place face-mask / gender / age solution, each decision a parameter."""

from podium.pipelines.mask.pipeline import create_pipeline

__all__ = ["create_pipeline"]
