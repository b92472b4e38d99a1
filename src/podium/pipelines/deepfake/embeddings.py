"""Face embeddings for the ``person_cluster`` split: who is in each video, without labels.

DFDC publishes no actor ids, so the write-ups clustered face embeddings to keep one person's
videos in one fold. Three extractors, one interface (:func:`embed_faces`):

* ``pca`` (the offline default; always available): grey crops, the central
  ``inner_fraction`` kept (the crops carry a generous margin of background), resized to
  ``size`` x ``size``, each standardised to zero mean and unit variance (removes lighting),
  then PCA (``n_components``; ``whiten`` optional, off by default: on the sample's faces
  whitening blurred identities) fitted on the given crops, rows L2-normalised. It sees
  appearance (skin, hair, face shape), not a learned identity.
* ``dlib``: dlib's 128-D ResNet face descriptor (99.38% on LFW) with its 5-point shape
  predictor, from the ``dlib-bin`` and ``face-recognition-models`` packages (weights ship in
  the wheel; no download). The face box inside a crop is derived from ``crop_margin``, the
  margin the crop was made with (see :func:`podium.faces.detect.crop_face`). About 0.08 s
  per face on one CPU core.
* ``facenet``: facenet-pytorch's InceptionResnetV1 (512-D), only when its VGGFace2 weights
  exist at ``facenet_weights`` (they download at run time, which is impossible offline).

:func:`video_embeddings` averages the face embeddings of each video.
No kedro or mlflow imports.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA

from podium.core.config import ParameterError
from podium.pipelines.deepfake.params import EmbeddingParams

__all__ = [
    "EMBED_METHODS",
    "embed_faces",
    "embed_videos",
    "grey_face_vectors",
    "video_embeddings",
]

#: Methods of :func:`embed_faces`.
EMBED_METHODS = ("pca", "dlib", "facenet")
_SECTION = "deepfake.embedding"
#: Input side of InceptionResnetV1 and its fixed standardisation (facenet-pytorch's own).
_FACENET_SIZE = 160
_FACENET_MEAN, _FACENET_SCALE = 127.5, 128.0
#: dlib's model files inside the face_recognition_models package.
_DLIB_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
_DLIB_SHAPE = "shape_predictor_5_face_landmarks.dat"


def _check_crops(crops: np.ndarray) -> np.ndarray:
    arr = np.asarray(crops)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected crops of shape (n, H, W, 3), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 crops, got {arr.dtype}")
    if len(arr) == 0:
        raise ValueError("no face crops to embed")
    return arr


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _central(image: np.ndarray, fraction: float) -> np.ndarray:
    h, w = image.shape[:2]
    dh, dw = round(h * (1 - fraction) / 2), round(w * (1 - fraction) / 2)
    return image[dh : h - dh or h, dw : w - dw or w]


def grey_face_vectors(crops: np.ndarray, size: int, inner_fraction: float) -> np.ndarray:
    """Aligned, normalised grey faces as rows: centre ``inner_fraction`` of each crop,
    ``size`` x ``size``, zero mean and unit variance per face."""
    arr = _check_crops(crops)
    rows = []
    for crop in arr:
        grey = cv2.cvtColor(_central(crop, inner_fraction), cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)
        small -= small.mean()
        std = small.std()
        rows.append((small / std if std > 0 else small).ravel())
    return np.stack(rows)


def _embed_pca(crops, size, inner_fraction, n_components, whiten, seed) -> np.ndarray:
    return _pca_rows(grey_face_vectors(crops, size, inner_fraction), n_components, whiten, seed)


def _pca_rows(x: np.ndarray, n_components: int, whiten: bool, seed: int) -> np.ndarray:
    k = int(min(n_components, len(x), x.shape[1]))
    if len(x) < 2:  # PCA needs two faces; one face is its own direction
        return _l2(x[:, :k])
    model = PCA(n_components=k, whiten=bool(whiten), random_state=seed)
    return _l2(model.fit_transform(x))


def _dlib_model_dir() -> Path:
    # face_recognition_models' __init__ imports pkg_resources (setuptools); find its folder
    # without importing it
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ParameterError(
            f"{_SECTION}.method",
            "'dlib' needs the packages dlib-bin and face-recognition-models, which are not "
            "installed; `pip install dlib-bin face-recognition-models` or choose 'pca'",
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@cache
def _load_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise ParameterError(
            f"{_SECTION}.method",
            "'dlib' needs the package dlib-bin (prebuilt dlib), which is not installed; "
            "`pip install dlib-bin face-recognition-models` or choose 'pca'",
        ) from exc
    folder = _dlib_model_dir()
    descriptor = dlib.face_recognition_model_v1(str(folder / _DLIB_DESCRIPTOR))
    shape = dlib.shape_predictor(str(folder / _DLIB_SHAPE))
    return dlib, descriptor, shape


def _embed_dlib(crops: np.ndarray, crop_margin: float, num_jitters: int) -> np.ndarray:
    dlib, descriptor, shape_predictor = _load_dlib()
    out = []
    for crop in crops:
        h, w = crop.shape[:2]
        # the face box of a crop made with `crop_margin` on every side
        fx, fy = w * crop_margin / (1 + 2 * crop_margin), h * crop_margin / (1 + 2 * crop_margin)
        rect = dlib.rectangle(round(fx), round(fy), round(w - fx) - 1, round(h - fy) - 1)
        image = np.ascontiguousarray(crop)
        shape = shape_predictor(image, rect)
        out.append(np.asarray(descriptor.compute_face_descriptor(image, shape, num_jitters)))
    return np.stack(out).astype(np.float32)


@cache
def _load_facenet(path: str):
    from facenet_pytorch import InceptionResnetV1  # late: installed apart from torch's pins

    model = InceptionResnetV1(pretrained=None, classify=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    # VGGFace2 / CASIA checkpoints carry the classifier of their training identities
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    model.load_state_dict(state)
    return model.eval()


def _embed_facenet(crops: np.ndarray, weights: str | Path | None, batch_size: int) -> np.ndarray:
    parameter = f"{_SECTION}.facenet_weights"
    if not weights or not Path(weights).is_file():
        raise ParameterError(
            parameter,
            f"InceptionResnetV1 weights not found at {weights!r}: facenet-pytorch downloads them "
            "at run time, which is impossible offline. Fix: copy the VGGFace2 checkpoint "
            "(20180402-114759-vggface2.pt) to a local path and set it here, or use "
            f"`{_SECTION}.method: pca` (offline default) or `dlib`",
        )
    model = _load_facenet(str(Path(weights).resolve()))
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            batch = [
                cv2.resize(c, (_FACENET_SIZE, _FACENET_SIZE), interpolation=cv2.INTER_AREA)
                for c in crops[start : start + batch_size]
            ]
            x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float()
            out.append(model((x - _FACENET_MEAN) / _FACENET_SCALE).numpy())
    return np.concatenate(out).astype(np.float32)


def _check_options(arguments: dict[str, Any]) -> None:
    """The arguments named as ``deepfake.embedding``'s keys, checked by its model."""
    given = {k: v for k, v in arguments.items() if k in EmbeddingParams.model_fields}
    if given.get("facenet_weights") is not None:
        given["facenet_weights"] = str(given["facenet_weights"])
    EmbeddingParams.model_validate(given)


def embed_faces(
    crops: np.ndarray,
    method: str,
    *,
    seed: int = 0,
    size: int = 32,
    inner_fraction: float = 0.7,
    n_components: int = 16,
    whiten: bool = False,
    crop_margin: float = 0.0,
    num_jitters: int = 0,
    facenet_weights: str | Path | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """One embedding row per face crop ((n, H, W, 3) uint8 RGB), float32, L2-normalised.

    ``pca`` uses ``size``, ``inner_fraction``, ``n_components`` (capped by the number of
    crops), ``whiten`` and ``seed``; ``dlib`` uses ``crop_margin`` and ``num_jitters``; ``facenet``
    uses ``facenet_weights`` and ``batch_size``. The defaults are documented starting
    values; the pipeline passes every one from parameters. ``pca`` is fitted on the crops given, so embed
    all the videos to compare in one call.
    """
    _check_options(locals())
    arr = _check_crops(crops)
    if method == "pca":
        return _embed_pca(arr, int(size), float(inner_fraction), int(n_components), whiten, seed)
    if method == "dlib":
        return _l2(_embed_dlib(arr, float(crop_margin), int(num_jitters)))
    return _l2(_embed_facenet(arr, facenet_weights, int(batch_size)))


def embed_videos(
    videos: Iterable[tuple[str, np.ndarray]],
    method: str,
    *,
    seed: int = 0,
    size: int = 32,
    inner_fraction: float = 0.7,
    n_components: int = 16,
    whiten: bool = False,
    **extractor_options,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`embed_faces` over ``(video name, crops)`` pairs read one video at a time:
    ``(embeddings, video of each row)``, the same rows as one call on all the crops.

    Only one video's crops are held at once: ``pca`` keeps each face's small grey vector
    (``size`` x ``size`` floats) and fits on all of them at the end; ``dlib`` and
    ``facenet`` (``extractor_options``: see :func:`embed_faces`) embed each video as it comes.
    """
    _check_options(locals())
    parts, owners = [], []
    for name, crops in videos:
        arr = _check_crops(crops)
        if method == "pca":
            parts.append(grey_face_vectors(arr, int(size), float(inner_fraction)))
        else:
            parts.append(embed_faces(arr, method, **extractor_options))
        owners.extend([name] * len(arr))
    if not parts:
        raise ValueError("no face crops to embed")
    rows = np.concatenate(parts)
    if method == "pca":
        rows = _pca_rows(rows, int(n_components), whiten, seed)
    return rows, np.asarray(owners, dtype=object)


def video_embeddings(
    embeddings: np.ndarray, video_of_face: Sequence[str] | np.ndarray
) -> pd.DataFrame:
    """Mean face embedding per video (rows L2-normalised), indexed by video name in order of
    first appearance."""
    emb = np.asarray(embeddings, dtype=np.float64)
    names = np.asarray(video_of_face, dtype=object)
    if emb.ndim != 2 or len(emb) != len(names):
        raise ValueError(f"{len(names)} video names for embeddings of shape {emb.shape}")
    frame = pd.DataFrame(emb)
    means = frame.groupby(names, sort=False).mean()
    return pd.DataFrame(_l2(means.to_numpy()), index=means.index.rename("video"))
