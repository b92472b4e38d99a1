"""Voting across folds and backbones, and the DFDC-style logit calibration.

Log loss punishes confident mistakes without bound, so the DFDC write-ups shrank every
logit by a constant below 1 before the sigmoid; probabilities are clipped first so 0 and 1
never turn into infinities or NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Default clipping margin: log loss of a clipped wrong answer is at most -log(1e-6) ~ 13.8.
EPS = 1e-6


def clip_probabilities(p: np.ndarray | Sequence[float], eps: float = EPS) -> np.ndarray:
    """Probabilities clipped to ``[eps, 1 - eps]`` as float64 (NaN raises: never hide it)."""
    arr = np.asarray(p, dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError("probabilities contain NaN")
    return np.clip(arr, eps, 1.0 - eps)


def logit(p: np.ndarray | Sequence[float], eps: float = EPS) -> np.ndarray:
    """``log(p / (1 - p))`` of clipped probabilities: always finite."""
    q = clip_probabilities(p, eps)
    return np.log(q) - np.log1p(-q)


def sigmoid(x: np.ndarray | Sequence[float]) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    exp_x = np.exp(x[~positive])
    out[~positive] = exp_x / (1.0 + exp_x)
    return out


def scale_logits(p: np.ndarray | Sequence[float], factor: float, eps: float = EPS) -> np.ndarray:
    """``sigmoid(logit(p) * factor)``: factor < 1 pulls every probability toward 0.5."""
    if not np.isfinite(factor) or factor < 0:
        raise ValueError(f"factor must be a finite number >= 0, got {factor!r}")
    return sigmoid(logit(p, eps) * factor)


def _weights(n: int, weights: Sequence[float] | None) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"expected {n} weights (one per model), got {w.shape}")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all zero, got {list(w)}")
    return w / w.sum()


def soft_vote(
    prob_list: Sequence[np.ndarray], weights: Sequence[float] | None = None
) -> np.ndarray:
    """Weighted mean of several models' probabilities (all of one shape), float64."""
    if len(prob_list) == 0:
        raise ValueError("soft_vote needs at least one prediction array")
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in prob_list])
    w = _weights(len(prob_list), weights)
    return np.tensordot(w, stacked, axes=1)


def hard_vote(
    predictions: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
    n_classes: int | None = None,
) -> np.ndarray:
    """Weighted majority vote; returns one class index per row.

    Each entry is either labels ``(n,)`` or probabilities ``(n, C)`` (its argmax votes).
    Each model adds its weight to the class it votes for. Ties (within 1e-9) are broken by
    the weighted sum of probabilities of the models that gave probabilities, and any tie
    left by the lowest class index.
    """
    if len(predictions) == 0:
        raise ValueError("hard_vote needs at least one prediction array")
    arrays = [np.asarray(p) for p in predictions]
    if n_classes is None:
        n_classes = max(a.shape[1] if a.ndim == 2 else int(a.max()) + 1 for a in arrays)
    w = _weights(len(arrays), weights)
    n_rows = len(arrays[0])
    votes = np.zeros((n_rows, n_classes))
    prob_sum = np.zeros((n_rows, n_classes))
    rows = np.arange(n_rows)
    for weight, arr in zip(w, arrays, strict=True):
        if len(arr) != n_rows:
            raise ValueError(f"all predictions need {n_rows} rows, got {len(arr)}")
        if arr.ndim == 2:
            if arr.shape[1] != n_classes:
                raise ValueError(f"expected {n_classes} classes, got {arr.shape[1]}")
            prob_sum += weight * arr
            labels = arr.argmax(axis=1)
        else:
            labels = arr.astype(np.int64)
            if labels.min() < 0 or labels.max() >= n_classes:
                raise ValueError(
                    f"labels must lie in [0, {n_classes}), got {labels.min()}..{labels.max()}"
                )
        np.add.at(votes, (rows, labels), weight)
    top = votes >= votes.max(axis=1, keepdims=True) - 1e-9
    tie_break = np.where(top, prob_sum, -np.inf)
    return tie_break.argmax(axis=1)  # argmax takes the lowest index among equal values
