"""monet: CycleGAN photo -> Monet (Kaggle "I'm Something of a Painter Myself"), images.zip,
FID and MiFID."""

from podium.pipelines.monet.pipeline import create_pipeline

__all__ = ["create_pipeline"]
