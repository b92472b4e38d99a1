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

Both modes' geometry is :func:`crop_layout`'s (a :class:`CropLayout`: the frame region a
crop covers, the scale and the padding), so whatever maps between a stored crop's pixels
and its frame's (the Self-Blended Images' face box, pair mixup's resampling) maps through
the very arithmetic the crop was cut with.
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
class CropLayout:
    """Where a :func:`crop_face` crop comes from in the frame and where it lands in the crop.

    ``unclipped``: (left, top, right, bottom) of the grown box in frame pixels, before
    clipping (it may reach past the frame); ``region``: the same clipped to the frame, the
    pixels taken (right, bottom exclusive); ``resized``: (height, width) of the region once
    resized; ``offset``: (top, left) of the resized region in the crop (``isotropic_pad``'s
    padding; (0, 0) for ``aspect``, whose region fills the crop); ``interpolation``: the cv2
    flag of the resize, None when the region is used as it is; ``size``: (height, width) of
    the crop.

    Frame and crop coordinates are continuous (a pixel spans [x, x + 1)): frame point ``x``
    lands at ``(x - region left) * scale x + offset left`` in the crop (:meth:`to_crop`),
    so the region's corners land on the corners of the resized region in the crop.
    """

    unclipped: tuple[int, int, int, int]
    region: tuple[int, int, int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]
    interpolation: int | None
    size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y): crop pixels per frame pixel."""
        left, top, right, bottom = self.region
        return self.resized[1] / (right - left), self.resized[0] / (bottom - top)

    def to_crop(self, x, y):
        """Frame coordinates ``x``, ``y`` (numbers or arrays) in crop coordinates."""
        (scale_x, scale_y), (off_y, off_x) = self.scale, self.offset
        return (x - self.region[0]) * scale_x + off_x, (y - self.region[1]) * scale_y + off_y

    def to_frame(self, x, y):
        """Crop coordinates ``x``, ``y`` (numbers or arrays) in frame coordinates."""
        (scale_x, scale_y), (off_y, off_x) = self.scale, self.offset
        return self.region[0] + (x - off_x) / scale_x, self.region[1] + (y - off_y) / scale_y


def _clipped(
    unclipped: tuple[int, int, int, int], box: Sequence[float], image_shape: Sequence[int]
) -> tuple[int, int, int, int]:
    height, width = int(image_shape[0]), int(image_shape[1])
    left, top, right, bottom = unclipped
    left, right = max(left, 0), min(right, width)
    top, bottom = max(top, 0), min(bottom, height)
    if right <= left or bottom <= top:
        raise ValueError(f"box {tuple(box)} lies outside the {width}x{height} image")
    return left, top, right, bottom


def isotropic_pad_layout(
    box: Sequence[float], margin: float, image_shape: Sequence[int], size: int
) -> CropLayout:
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
    unclipped = (x1 - pad_w, y1 - pad_h, x2 + pad_w, y2 + pad_h)
    region = _clipped(unclipped, box, image_shape)
    left, top, right, bottom = region
    w, h = right - left, bottom - top
    if max(w, h) == size:
        new_h, new_w, interpolation = h, w, None
    else:
        if w > h:
            scale = size / w
            new_h, new_w = max(1, int(h * scale)), size
        else:
            scale = size / h
            new_h, new_w = size, max(1, int(w * scale))
        interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    offset = ((size - new_h) // 2, (size - new_w) // 2)
    return CropLayout(unclipped, region, (new_h, new_w), offset, interpolation, (size, size))


def _aspect_layout(
    box: Sequence[float], margin: float, image_shape: Sequence[int], size: tuple[int, int] | None
) -> CropLayout:
    """podium's ``aspect`` crop: the box grown by ``margin`` on every side, widened to the
    aspect of ``size`` (height, width; None: not widened, not resized), rounded to whole
    pixels and clipped; the region then fills the crop (INTER_AREA)."""
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
    unclipped = (
        round(centre_x - half_w),
        round(centre_y - half_h),
        round(centre_x + half_w),
        round(centre_y + half_h),
    )
    region = _clipped(unclipped, box, image_shape)
    left, top, right, bottom = region
    if size is None:
        taken = (bottom - top, right - left)
        return CropLayout(unclipped, region, taken, (0, 0), None, taken)
    size = (int(size[0]), int(size[1]))
    return CropLayout(unclipped, region, size, (0, 0), cv2.INTER_AREA, size)


def crop_layout(
    box: Sequence[float],
    margin: float,
    image_shape: Sequence[int],
    size: Sequence[int] | None = None,
    mode: str = "aspect",
) -> CropLayout:
    """The geometry of :func:`crop_face`'s crop of ``box`` (x1, y1, x2, y2 pixels) grown by
    ``margin`` in an image of ``image_shape``, for an output ``size`` (height, width) and
    ``mode`` (:data:`CROP_MODES`). Raises ValueError for an unknown mode, a non-square
    ``isotropic_pad`` size, or a grown box that does not overlap the image."""
    if mode == "isotropic_pad":
        if size is None or size[0] != size[1]:
            raise ValueError(f"isotropic_pad crops are square: size must be (s, s), got {size}")
        return isotropic_pad_layout(box, margin, image_shape, int(size[0]))
    if mode != "aspect":
        raise ValueError(f"mode must be one of {', '.join(CROP_MODES)}, got {mode!r}")
    return _aspect_layout(box, margin, image_shape, size)


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
    :func:`isotropic_pad_layout`; ``size`` is required and must be square. The geometry is
    :func:`crop_layout`'s.
    """
    layout = crop_layout(box, margin, image.shape, size, mode)
    left, top, right, bottom = layout.region
    crop = image[top:bottom, left:right]
    (new_h, new_w), (off_y, off_x) = layout.resized, layout.offset
    if layout.interpolation is not None:
        crop = cv2.resize(crop, (new_w, new_h), interpolation=layout.interpolation)
    if mode == "aspect":  # the region fills the crop
        return crop
    out = np.zeros((*layout.size, *image.shape[2:]), image.dtype)
    out[off_y : off_y + new_h, off_x : off_x + new_w] = crop.reshape(new_h, new_w, *image.shape[2:])
    return out
