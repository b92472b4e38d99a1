"""Kaggle's memorisation distance over features that arrive one batch at a time.

FID's own running state (feature sums and cross-products, float64) is torchmetrics'
``FrechetInceptionDistance`` (:func:`podium.core.fid.fid_metric`); MiFID's memorisation
term is podium's, kept here the same way: :class:`RunningMemorization` sums each batch's
smallest cosine distances to the (small, fixed) training-feature set on the spot, so
scoring 7,038 (or 70,000) generated images holds one batch of features, never all of them.
Its result equals :func:`podium.core.fid.memorization_distance` over all features at once,
up to float64 rounding.

No kedro or mlflow imports.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RunningMemorization"]


class RunningMemorization:
    """Kaggle's memorisation distance, batch by batch: the mean over generated images of the
    smallest ``1 - |cos|`` to any training feature row. All-zero rows are left out as
    Kaggle does; ``center`` subtracts the training mean first (for the stand-in extractor,
    see :func:`podium.core.fid.memorization_distance`)."""

    def __init__(self, training: np.ndarray, *, center: bool = False) -> None:
        training = np.asarray(training, dtype=np.float64)
        self.offset = training.mean(axis=0) if center else None
        if self.offset is not None:
            training = training - self.offset
        self.training = _unit_rows(training)
        if not len(self.training):
            raise ValueError("memorization distance needs non-zero training features")
        self.total = 0.0
        self.count = 0

    def add(self, generated: np.ndarray) -> None:
        generated = np.asarray(generated, dtype=np.float64)
        if self.offset is not None:
            generated = generated - self.offset
        rows = _unit_rows(generated)
        if len(rows):
            self.total += float((1.0 - np.abs(rows @ self.training.T)).min(axis=1).sum())
            self.count += len(rows)

    def distance(self) -> float:
        if not self.count:
            raise ValueError("memorization distance needs non-zero generated features")
        return self.total / self.count


def _unit_rows(features: np.ndarray) -> np.ndarray:
    features = features[features.sum(axis=1) != 0]
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.nan_to_num(features / norms)
