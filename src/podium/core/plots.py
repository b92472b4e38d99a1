"""Figures people would rather see than read, as pure functions returning a Figure.

Figures are built with ``matplotlib.figure.Figure`` (Agg canvas), not pyplot: nothing is
registered globally, nothing is shown, so nodes can return them to a MatplotlibDataset and
hundreds of runs never pile up open pyplot figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

#: Above this many classes cell values are not printed (unreadable).
MAX_ANNOTATED_CLASSES = 20


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def confusion_matrix_figure(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> Figure:
    """Rows are true classes, columns predictions; ``normalize`` makes each row sum to 1.

    Two axes: the matrix and its colour bar.
    """
    n = len(class_names)
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(n))).astype(np.float64)
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    size = max(4.0, 0.45 * n + 2.5)
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(class_names, rotation=90)
    ax.set_yticklabels(class_names)
    if n <= MAX_ANNOTATED_CLASSES:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                text = f"{value:.2f}" if normalize else f"{int(value)}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > threshold else "black",
                )
    return fig


def reliability_bins(
    y_true: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of predicted probability: mean prediction, positive rate, count.

    Empty bins hold NaN for the two rates and 0 for the count.
    """
    y = np.asarray(y_true, dtype=np.float64)
    prob = np.asarray(p, dtype=np.float64)
    if y.shape != prob.shape:
        raise ValueError(f"y_true {y.shape} and p {prob.shape} differ in shape")
    index = np.clip((prob * n_bins).astype(np.int64), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, weights=prob, minlength=n_bins) / counts
        accuracy = np.bincount(index, weights=y, minlength=n_bins) / counts
    return confidence, accuracy, counts.astype(np.int64)


def expected_calibration_error(
    y_true: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, n_bins: int = 10
) -> float:
    """Count-weighted mean gap between predicted probability and observed positive rate."""
    confidence, accuracy, counts = reliability_bins(y_true, p, n_bins)
    filled = counts > 0
    if not filled.any():
        return float("nan")
    gaps = np.abs(confidence[filled] - accuracy[filled])
    return float((gaps * counts[filled]).sum() / counts.sum())


def reliability_diagram_figure(
    y_true: Sequence[int] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    n_bins: int = 10,
    title: str = "Reliability diagram",
) -> Figure:
    """Observed positive rate against predicted probability, with a count histogram below.

    Two axes; the title carries the expected calibration error (ECE).
    """
    confidence, accuracy, counts = reliability_bins(y_true, p, n_bins)
    ece = expected_calibration_error(y_true, p, n_bins)
    edges = np.linspace(0, 1, n_bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = _figure(5, 6)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    filled = counts > 0
    top.bar(
        centers[filled],
        accuracy[filled],
        width=1 / n_bins,
        alpha=0.6,
        edgecolor="black",
        label="observed",
    )
    top.plot(confidence[filled], accuracy[filled], marker="o", color="tab:red", label="model")
    top.set(ylim=(0, 1), ylabel="fraction positive", title=f"{title} (ECE {ece:.3f})")
    top.legend(loc="upper left")
    bottom.bar(centers, counts, width=1 / n_bins, color="tab:blue", edgecolor="black")
    bottom.set(xlim=(0, 1), xlabel="predicted probability", ylabel="count")
    return fig


def image_grid_figure(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    title: str | None = None,
) -> Figure:
    """One axes per image (HxWx3 uint8, or HxW grayscale), ``ncols`` per row."""
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    n = max(len(images), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = _figure(2.2 * ncols, 2.2 * nrows + (0.4 if title else 0))
    for i, image in enumerate(images):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        array = np.asarray(image)
        ax.imshow(array, cmap="gray" if array.ndim == 2 else None)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def history_to_curves(history: Sequence[Mapping[str, float]]) -> dict[str, list[float]]:
    """Per-epoch dicts (as ``training.fit`` returns) -> name -> values (NaN where missing)."""
    names: list[str] = []
    for row in history:
        names.extend(k for k in row if k not in names and k != "epoch")
    return {k: [float(row.get(k, float("nan"))) for row in history] for k in names}


def curves_figure(
    history: Mapping[str, Sequence[float]] | Sequence[Mapping[str, float]],
    title: str | None = None,
    xlabel: str = "epoch",
    ncols: int = 3,
) -> Figure:
    """One axes per curve (losses, learning rate and metrics have different scales)."""
    curves = dict(history) if isinstance(history, Mapping) else history_to_curves(history)
    n = max(len(curves), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = _figure(3.6 * ncols, 2.8 * nrows)
    for i, (name, values) in enumerate(curves.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        steps = np.arange(1, len(values) + 1)
        ax.plot(steps, np.asarray(values, dtype=np.float64), marker="o", markersize=3)
        ax.set(title=name, xlabel=xlabel)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def bar_figure(
    names: Sequence[str],
    values: Sequence[float],
    title: str = "",
    ylabel: str = "",
) -> Figure:
    """A labelled bar per name (per-class IoU, per-fold score, model comparison)."""
    if len(names) != len(values):
        raise ValueError(f"{len(names)} names for {len(values)} values")
    fig = _figure(max(4.0, 0.5 * len(names) + 2), 4)
    ax = fig.add_subplot()
    bars = ax.bar([str(n) for n in names], np.asarray(values, dtype=np.float64), color="tab:blue")
    ax.bar_label(bars, fmt="%.3g", fontsize=7)
    ax.set(title=title, ylabel=ylabel)
    ax.tick_params(axis="x", labelrotation=90 if len(names) > 6 else 0)
    return fig
