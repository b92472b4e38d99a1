"""The sample_data pipeline's parameter blocks (conf/base/parameters_sample_data.yml).

Each generator's model lives next to the generator (a building block usable without
Kedro, with a plain dict); the generators' signatures carry them, so Kedro checks every
``sample_data.<competition>`` block when the session starts, before the first node.
``sample_data.seed`` stays a plain integer.
"""

from podium.sample_data.deepfake import DeepfakeSampleParams, VideoFormat
from podium.sample_data.mask import MaskSampleParams
from podium.sample_data.monet import MonetSampleParams
from podium.sample_data.uda import UdaSampleParams

__all__ = [
    "DeepfakeSampleParams",
    "MaskSampleParams",
    "MonetSampleParams",
    "UdaSampleParams",
    "VideoFormat",
]
