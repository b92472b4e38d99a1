"""Batched MTCNN face detection (facenet-pytorch) and margin crops around the found boxes.

MTCNN batches only images of one size, so ``detect_faces`` groups its inputs by shape and
returns the detections in input order, boxes always in full-size pixel coordinates even
when detection ran on a downscaled copy (faster: about 2x at half size, 4x at quarter).
"""

from __future__ import annotations

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


@cache
def load_detector(device: str = "cpu"):
    """An MTCNN returning every face (``keep_all``); its weights ship in the wheel."""
    from facenet_pytorch import MTCNN  # imported late: installed apart from torch's pins

    return MTCNN(keep_all=True, device=torch.device(device))


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
) -> list[list[Detection]]:
    """Faces of each HxWx3 uint8 RGB image, most confident first (an empty list: none found).

    ``downscale`` < 1 detects on a smaller copy; boxes are mapped back to full size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 < downscale <= 1:
        raise ValueError(f"downscale must be in (0, 1], got {downscale}")
    detector = load_detector(str(device))
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


def crop_face(
    image: np.ndarray,
    box: Sequence[float],
    margin: float,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The face ``box`` grown by ``margin`` (a fraction of its size) on every side.

    With ``size`` (height, width) the region is first widened to that aspect ratio, so the
    resize does not stretch the face, then resized. The region is clipped to the image.
    """
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
