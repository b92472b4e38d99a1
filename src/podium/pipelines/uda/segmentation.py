"""Semantic segmentation building blocks: IoU from a confusion matrix, sliding-window and
test-time-augmented prediction.

Inputs are class-index maps and (N, C, H, W) tensors, so any segmentation pipeline (and a
bare GPU box with only torch) can use them. No kedro or mlflow imports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]


def confusion_matrix(
    prediction: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int
) -> np.ndarray:
    """(num_classes, num_classes) pixel counts, rows = true class, columns = predicted.

    Pixels whose target is ``ignore_index`` (or any value outside 0..num_classes-1) are
    not counted; a prediction outside that range counts as wrong for its true class.
    """
    prediction = np.asarray(prediction).astype(np.int64).ravel()
    target = np.asarray(target).astype(np.int64).ravel()
    if prediction.shape != target.shape:
        raise ValueError(f"prediction has {prediction.size} pixels, target {target.size}")
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    prediction, target = prediction[keep], target[keep]
    valid = (prediction >= 0) & (prediction < num_classes)
    counts = np.bincount(
        target[valid] * num_classes + prediction[valid], minlength=num_classes**2
    ).reshape(num_classes, num_classes)
    return counts


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class, NaN for a class absent from both truth and prediction (it is
    then left out of the mean rather than counted as 0 or 1)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in truth or prediction."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets covering ``size``; the last window is moved back to end at the border."""
    if size <= window:
        return [0]
    n = math.ceil((size - window) / stride) + 1
    return sorted({min(i * stride, size - window) for i in range(n)})


@torch.no_grad()
def sliding_window(
    forward: Forward,
    images: torch.Tensor,
    window: Sequence[int],
    stride: Sequence[int],
    num_classes: int,
) -> torch.Tensor:
    """Average of ``forward`` over overlapping crops of ``images`` (N, C, H, W).

    ``forward`` maps an (N, C, h, w) crop to (N, num_classes, h, w) scores (logits or
    probabilities). Windows of ``window`` (h, w) slide by ``stride`` (h, w); an image
    smaller than the window is predicted whole, so a window covering the image gives
    exactly the whole-image prediction.
    """
    n, _, height, width = images.shape
    wh, ww = int(window[0]), int(window[1])
    sh, sw = int(stride[0]), int(stride[1])
    if min(wh, ww, sh, sw) < 1:
        raise ValueError(f"window {window} and stride {stride} must be positive")
    total = images.new_zeros((n, num_classes, height, width), dtype=torch.float32)
    count = images.new_zeros((1, 1, height, width), dtype=torch.float32)
    for top in _starts(height, wh, sh):
        for left in _starts(width, ww, sw):
            crop = images[:, :, top : top + wh, left : left + ww]
            out = forward(crop).float()
            total[:, :, top : top + crop.shape[2], left : left + crop.shape[3]] += out
            count[:, :, top : top + crop.shape[2], left : left + crop.shape[3]] += 1
    return total / count


@torch.no_grad()
def tta_probabilities(
    forward: Forward,
    images: torch.Tensor,
    *,
    window: Sequence[int],
    stride: Sequence[int],
    num_classes: int,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> torch.Tensor:
    """Softmax probabilities (N, C, H, W) averaged over ``scales`` and, with ``flip``, the
    horizontally mirrored image; every view is predicted by sliding window and resized back."""
    n, _, height, width = images.shape

    def probabilities(x: torch.Tensor) -> torch.Tensor:
        return sliding_window(
            lambda crop: torch.softmax(forward(crop).float(), dim=1),
            x,
            window,
            stride,
            num_classes,
        )

    total = images.new_zeros((n, num_classes, height, width), dtype=torch.float32)
    views = 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        x = (
            images
            if size == (height, width)
            else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        )
        for flipped in (False, True) if flip else (False,):
            view = torch.flip(x, dims=[3]) if flipped else x
            p = probabilities(view)
            if flipped:
                p = torch.flip(p, dims=[3])
            if p.shape[-2:] != (height, width):
                p = F.interpolate(p, size=(height, width), mode="bilinear", align_corners=False)
            total += p
            views += 1
    return total / views
