"""Per-class IoU and mIoU as the competition scores them, and the figures: IoU bars and
colour overlays of predictions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from podium.core.plots import image_grid_figure
from podium.layouts.uda import CLASSES, NUM_CLASSES, colorize

#: ``uda.evaluation.background``: how a background (label 255) pixel is scored.
BACKGROUND_SCORING = ("count", "ignore")
#: Row and column of background (label or prediction 255, or any value outside 0..11) in
#: :func:`scoring_confusion`.
BG = NUM_CLASSES


def scoring_confusion(prediction: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(13, 13) pixel counts, rows = truth, columns = prediction, the 12 classes and then
    background (label or prediction :data:`~podium.layouts.uda.IGNORE_INDEX`, or any value
    outside 0..11) at index :data:`BG`."""
    prediction = np.asarray(prediction).astype(np.int64).ravel()
    label = np.asarray(label).astype(np.int64).ravel()
    if prediction.shape != label.shape:
        raise ValueError(f"prediction has {prediction.size} pixels, label {label.size}")
    n = NUM_CLASSES + 1
    prediction = np.where((prediction >= 0) & (prediction < NUM_CLASSES), prediction, BG)
    label = np.where((label >= 0) & (label < NUM_CLASSES), label, BG)
    return np.bincount(label * n + prediction, minlength=n * n).reshape(n, n)


def class_iou(
    predictions: np.ndarray, labels: np.ndarray, background: str = "count"
) -> pd.DataFrame:
    """One row per class: IoU (NaN when the class is in neither truth nor prediction)
    and its pixel count in the truth, over the whole split (see :func:`streamed_class_iou`)."""
    return _iou_table(scoring_confusion(predictions, labels), background)


def streamed_class_iou(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], background: str = "count"
) -> pd.DataFrame:
    """:func:`class_iou` over ``(prediction, label)`` pairs, one image at a time: the
    confusion matrix is summed image by image, so only one pair is held.

    ``background="count"`` scores as the competition does: class k's IoU is that of the
    mask ``prediction == k`` against ``label == k`` over every pixel, so a background
    pixel given class k counts against k and a class-k pixel predicted background is a
    miss of k. ``"ignore"`` (podium before) leaves background-labelled pixels out."""
    confusion = np.zeros((NUM_CLASSES + 1, NUM_CLASSES + 1), np.int64)
    for prediction, label in pairs:
        confusion += scoring_confusion(prediction, label)
    return _iou_table(confusion, background)


def _iou_table(confusion: np.ndarray, background: str) -> pd.DataFrame:
    if background not in BACKGROUND_SCORING:
        raise ValueError(f"background must be one of {BACKGROUND_SCORING}, got {background!r}")
    confusion = np.asarray(confusion, dtype=np.float64).copy()
    if background == "ignore":
        confusion[BG] = 0  # background-labelled pixels are not scored
    tp = np.diag(confusion)[:NUM_CLASSES]
    union = confusion.sum(axis=0)[:NUM_CLASSES] + confusion.sum(axis=1)[:NUM_CLASSES] - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    pixels = confusion.sum(axis=1)[:NUM_CLASSES].astype(np.int64)
    return pd.DataFrame({"class": list(CLASSES), "iou": iou, "pixels": pixels})


def iou_metrics(table: pd.DataFrame, prefix: str) -> dict[str, float]:
    """``{prefix}_miou`` and ``{prefix}_iou/<class>`` for every class with a finite IoU."""
    iou = table.set_index("class")["iou"]
    finite = iou[np.isfinite(iou)]
    metrics = {f"{prefix}_iou/{name.replace(' ', '_')}": float(v) for name, v in finite.items()}
    if len(finite):
        metrics[f"{prefix}_miou"] = float(finite.mean())
    return metrics


def iou_figure(tables: dict[str, pd.DataFrame], title: str) -> Figure:
    """Grouped bars: per-class IoU of each evaluated split, mIoU in the legend."""
    fig = Figure(figsize=(9, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(NUM_CLASSES)
    width = 0.8 / max(len(tables), 1)
    for k, (split, table) in enumerate(tables.items()):
        iou = table["iou"].to_numpy(np.float64)
        bars = ax.bar(
            x + (k - (len(tables) - 1) / 2) * width,
            np.nan_to_num(iou),
            width,
            label=f"{split} (mIoU {np.nanmean(iou) if np.isfinite(iou).any() else 0:.3f})",
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.set(xticks=x, ylim=(0, 1.05), ylabel="IoU", title=title)
    ax.set_xticklabels(CLASSES, rotation=45, ha="right")
    ax.legend(fontsize=8)
    return fig


def overlay_figure(
    images: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None,
    ids: Sequence[str],
    n: int,
    title: str,
) -> Figure:
    """Rows of image | prediction overlay | truth overlay (when labeled), ``n`` images."""
    tiles, titles = [], []
    for i in range(min(n, len(images))):
        height, width = predictions[i].shape
        image = images[i]
        if image.shape[:2] != (height, width):  # images were resized for the network
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        tiles += [image, (0.4 * image + 0.6 * colorize(predictions[i])).astype(np.uint8)]
        titles += [ids[i], "prediction"]
        if labels is not None:
            tiles.append((0.4 * image + 0.6 * colorize(labels[i])).astype(np.uint8))
            titles.append("truth")
    return image_grid_figure(tiles, titles, ncols=3 if labels is not None else 2, title=title)
