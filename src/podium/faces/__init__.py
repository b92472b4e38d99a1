"""Face detection and cropping shared by the pipelines (mask photos, deepfake video frames).

No kedro or mlflow imports: a notebook or a bare GPU box can use it directly.
"""

from podium.faces.detect import (
    CROP_MODES,
    DEFAULT_THRESHOLDS,
    CropLayout,
    Detection,
    crop_face,
    crop_layout,
    detect_faces,
    isotropic_pad_layout,
    load_detector,
)

__all__ = [
    "CROP_MODES",
    "DEFAULT_THRESHOLDS",
    "CropLayout",
    "Detection",
    "crop_face",
    "crop_layout",
    "detect_faces",
    "isotropic_pad_layout",
    "load_detector",
]
