"""Face detection and cropping shared by the pipelines (mask photos, deepfake video frames).

No kedro or mlflow imports: a notebook or a bare GPU box can use it directly.
"""

from podium.faces.detect import Detection, crop_face, detect_faces, load_detector

__all__ = ["Detection", "crop_face", "detect_faces", "load_detector"]
