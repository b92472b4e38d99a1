"""Batched MTCNN face detection (facenet-pytorch) and margin crops around the found boxes.

MTCNN batches only images of one size, so ``detect_faces`` groups its inputs by shape and
returns the detections in input order, boxes always in full-size pixel coordinates even
when detection ran on a downscaled copy (faster: about 2x at half size, 4x at quarter).
MTCNN's three stage thresholds (P-, R-, O-net) are a parameter: facenet-pytorch's default
is ``(0.6, 0.7, 0.7)``; the DFDC 1st place used ``(0.85, 0.95, 0.95)`` for its training
crops and ``(0.7, 0.8, 0.8)`` when scoring test videos.

:func:`crop_face` has two crop modes (:data:`CROP_MODES`):

``aspect``
    podium's own: the box grown by ``margin`` of its size on every side, then widened with
    real pixels to the output's aspect ratio, clipped to the image and resized (INTER_AREA).
``isotropic_pad``
    the DFDC 1st place's (selimsef ``extract_crops.py``, ``kernel_utils.py``
    ``isotropically_resize_image`` and ``put_to_center``), in its integer arithmetic: see
    :func:`isotropic_pad_layout`. The output must be square.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` is (x1, y1, x2, y2) in pixels of the full-size image."""

    box: tuple[float, float, float, float]
    confidence: float


#: facenet-pytorch's MTCNN stage thresholds (P-net, R-net, O-net), its default.
DEFAULT_THRESHOLDS: tuple[float, float, float] = (0.6, 0.7, 0.7)
#: How :func:`crop_face` turns a box into a crop of the output size.
CROP_MODES = ("aspect", "isotropic_pad")
# isotropic_pad grows a side by floor(length * margin); this slack makes a margin written
# with ten 3s (0.3333333333) or 1/3 in floating point give exactly length // 3, the
# winner's padding, for every length below 30,000 pixels.
_FLOOR_SLACK = 1e-6


def _thresholds(thresholds: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in thresholds)
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(
            f"thresholds must be three numbers in [0, 1] (P-, R-, O-net), got {thresholds!r}"
        )
    return values  # type: ignore[return-value]


def load_detector(device: str = "cpu", thresholds: Sequence[float] = DEFAULT_THRESHOLDS):
    """An MTCNN returning every face (``keep_all``) with these stage ``thresholds``; one per
    ``(device, thresholds)``, built once. Its weights ship in the wheel."""
    return _load_detector(str(device), _thresholds(thresholds))


@cache
def _load_detector(device: str, thresholds: tuple[float, float, float]):
    from facenet_pytorch import MTCNN  # imported late: installed apart from torch's pins

    return MTCNN(keep_all=True, thresholds=list(thresholds), device=torch.device(device))


def _resized(image: np.ndarray, downscale: float) -> np.ndarray:
    if downscale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * downscale)), max(1, round(height * downscale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _detections(boxes, probs, downscale: float, min_confidence: float) -> list[Detection]:
    if boxes is None:
        return []
    # facenet-pytorch builds an object array under numpy 2
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) / downscale
    probs = np.asarray(probs, dtype=np.float32).reshape(-1)
    found = [
        Detection(tuple(float(v) for v in box), float(p))
        for box, p in zip(boxes, probs, strict=True)
        if p >= min_confidence
    ]
    return sorted(found, key=lambda d: d.confidence, reverse=True)


def detect_faces(
    images: Sequence[np.ndarray],
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    downscale: float = 1.0,
    min_confidence: float = 0.9,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> list[list[Detection]]:
    """Faces of each HxWx3 uint8 RGB image, most confident first (an empty list: none found).

    ``downscale`` < 1 detects on a smaller copy; boxes are mapped back to full size.
    ``thresholds``: MTCNN's three stage thresholds; ``min_confidence`` then filters the
    faces it returns by their (O-net) probability.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 < downscale <= 1:
        raise ValueError(f"downscale must be in (0, 1], got {downscale}")
    detector = load_detector(str(device), thresholds)
    results: list[list[Detection]] = [[] for _ in images]
    by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        by_shape[tuple(image.shape)].append(i)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            batch = np.stack([_resized(images[i], downscale) for i in chunk])
            boxes, probs = detector.detect(batch)
            for i, image_boxes, image_probs in zip(chunk, boxes, probs, strict=True):
                results[i] = _detections(image_boxes, image_probs, downscale, min_confidence)
    return results


@dataclass(frozen=True)
class PadLayout:
    """Where an ``isotropic_pad`` crop comes from and where it lands.

    ``region``: (left, top, right, bottom) of the image pixels taken (right, bottom
    exclusive); ``resized``: (height, width) of the region after the isotropic resize;
    ``offset``: (top, left) of the resized region in the zero ``size`` x ``size`` output;
    ``interpolation``: the cv2 flag of the resize, None when the long side is already
    ``size`` (the region is used as it is).
    """

    region: tuple[int, int, int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]
    interpolation: int | None


def isotropic_pad_layout(
    box: Sequence[float], margin: float, image_shape: Sequence[int], size: int
) -> PadLayout:
    """The DFDC 1st place's crop geometry of ``box`` in an image of ``image_shape``.

    1. the box corners are truncated to integers (``int``, as the winner's ``int(b * 2)``),
       ``w = x2 - x1`` and ``h = y2 - y1``;
    2. each side grows by ``floor(w * margin)`` (left, right) and ``floor(h * margin)``
       (top, bottom): with ``margin`` 1/3 that is the winner's ``w // 3`` and ``h // 3``;
    3. the region is clipped to the image;
    4. its long side is resized to ``size`` and its short side to ``int(short * (size /
       long))``, the winner's float arithmetic, truncated (so a region 175 wide and 105 tall
       becomes 380 x 227, not 228, at size 380; at least 1 pixel); a square region takes the height branch (``size``
       tall, ``int(w * (size / h))`` wide). INTER_CUBIC when the scale ``size / long`` is >
       1, INTER_AREA otherwise, no resize when the long side is ``size`` already;
    5. it is placed at ``((size - height) // 2, (size - width) // 2)`` in a zero square
       (``put_to_center``: the odd pixel of padding goes to the bottom or right).

    Raises ValueError when the grown box does not overlap the image.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    x1, y1, x2, y2 = (int(float(v)) for v in box)
    pad_w = math.floor((x2 - x1) * margin + _FLOOR_SLACK)
    pad_h = math.floor((y2 - y1) * margin + _FLOOR_SLACK)
    height, width = int(image_shape[0]), int(image_shape[1])
    left, right = max(x1 - pad_w, 0), min(x2 + pad_w, width)
    top, bottom = max(y1 - pad_h, 0), min(y2 + pad_h, height)
    if right <= left or bottom <= top:
        raise ValueError(f"box {tuple(box)} lies outside the {width}x{height} image")
    w, h = right - left, bottom - top
    if max(w, h) == size:
        return PadLayout(
            (left, top, right, bottom), (h, w), ((size - h) // 2, (size - w) // 2), None
        )
    if w > h:
        scale = size / w
        new_h, new_w = max(1, int(h * scale)), size
    else:
        scale = size / h
        new_h, new_w = size, max(1, int(w * scale))
    interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    offset = ((size - new_h) // 2, (size - new_w) // 2)
    return PadLayout((left, top, right, bottom), (new_h, new_w), offset, interpolation)


def _isotropic_pad(image: np.ndarray, box: Sequence[float], margin: float, size: int) -> np.ndarray:
    layout = isotropic_pad_layout(box, margin, image.shape, size)
    left, top, right, bottom = layout.region
    crop = image[top:bottom, left:right]
    (new_h, new_w), (off_y, off_x) = layout.resized, layout.offset
    if layout.interpolation is not None:
        crop = cv2.resize(crop, (new_w, new_h), interpolation=layout.interpolation)
    out = np.zeros((size, size, *image.shape[2:]), image.dtype)
    out[off_y : off_y + new_h, off_x : off_x + new_w] = crop.reshape(new_h, new_w, *image.shape[2:])
    return out


def crop_face(
    image: np.ndarray,
    box: Sequence[float],
    margin: float,
    size: tuple[int, int] | None = None,
    mode: str = "aspect",
) -> np.ndarray:
    """The face ``box`` grown by ``margin`` (a fraction of its size) on every side.

    ``mode="aspect"``: with ``size`` (height, width) the region is first widened to that
    aspect ratio, so the resize does not stretch the face, then resized. The region is
    clipped to the image. ``mode="isotropic_pad"`` (the DFDC 1st place's crop): see
    :func:`isotropic_pad_layout`; ``size`` is required and must be square.
    """
    if mode == "isotropic_pad":
        if size is None or size[0] != size[1]:
            raise ValueError(f"isotropic_pad crops are square: size must be (s, s), got {size}")
        return _isotropic_pad(image, box, margin, int(size[0]))
    if mode != "aspect":
        raise ValueError(f"mode must be one of {', '.join(CROP_MODES)}, got {mode!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
    half_w = (x2 - x1) * (1 + 2 * margin) / 2
    half_h = (y2 - y1) * (1 + 2 * margin) / 2
    if size is not None:
        aspect = size[1] / size[0]  # width / height
        if half_w / half_h < aspect:
            half_w = half_h * aspect
        else:
            half_h = half_w / aspect
    height, width = image.shape[:2]
    left, right = max(0, round(centre_x - half_w)), min(width, round(centre_x + half_w))
    top, bottom = max(0, round(centre_y - half_h)), min(height, round(centre_y + half_h))
    if right <= left or bottom <= top:
        raise ValueError(f"box {tuple(box)} lies outside the {width}x{height} image")
    crop = image[top:bottom, left:right]
    if size is None:
        return crop
    return cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_AREA)
