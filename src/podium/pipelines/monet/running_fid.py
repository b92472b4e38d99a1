"""FID and MiFID over features that arrive one batch at a time.

:class:`RunningStatistics` keeps a count, a mean and a scatter matrix (float64), merged
batch by batch with Chan et al.'s pairwise update, so the Gaussian FID fits to 7,038 (or
70,000) generated images takes ``d x d`` floats, never the images or their features.
:class:`RunningMemorization` keeps Kaggle's memorisation term the same way: each batch's
smallest cosine distances to the (small, fixed) training-feature set are summed on the
spot. Their results equal :func:`podium.core.fid.feature_statistics` and
:func:`podium.core.fid.memorization_distance` over all features at once, up to float64
rounding.

The ``nuclear`` FID method needs the rows themselves (its cross-product is n1 x n2), so
with it :class:`RunningStatistics` also keeps the features: 2048 floats per image, no
pixels.

No kedro or mlflow imports.
"""

from __future__ import annotations

import numpy as np

from podium.core.config import check_choice
from podium.core.fid import FID_METHODS, feature_statistics, fid_from_features, frechet_distance

__all__ = ["RunningMemorization", "RunningStatistics", "streamed_fid"]


class RunningStatistics:
    """Mean and unbiased covariance of feature rows added in batches.

    ``keep_rows``: also keep the rows (for the ``nuclear`` FID method).
    """

    def __init__(self, keep_rows: bool = False) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.scatter: np.ndarray | None = None  # sum of (x - mean)(x - mean)'
        self.rows: list[np.ndarray] | None = [] if keep_rows else None

    def add(self, features: np.ndarray) -> None:
        batch = np.asarray(features, dtype=np.float64)
        if batch.ndim != 2:
            raise ValueError(f"features must be (n, d), got shape {batch.shape}")
        n = len(batch)
        if n == 0:
            return
        if self.rows is not None:
            self.rows.append(batch.copy())
        batch_mean = batch.mean(axis=0)
        centred = batch - batch_mean
        batch_scatter = centred.T @ centred
        if self.count == 0:
            self.count, self.mean, self.scatter = n, batch_mean, batch_scatter
            return
        if batch.shape[1] != len(self.mean):
            raise ValueError(f"features of width {batch.shape[1]}, expected {len(self.mean)}")
        total = self.count + n
        delta = batch_mean - self.mean
        self.scatter += batch_scatter + np.outer(delta, delta) * (self.count * n / total)
        self.mean = self.mean + delta * (n / total)
        self.count = total

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, covariance)`` as :func:`podium.core.fid.feature_statistics` gives them."""
        if self.count < 2:
            raise ValueError(f"need at least two feature rows, got {self.count}")
        return self.mean.copy(), self.scatter / (self.count - 1)

    def features(self) -> np.ndarray:
        if self.rows is None:
            raise ValueError("rows were not kept: RunningStatistics(keep_rows=True)")
        return np.concatenate(self.rows) if self.rows else np.zeros((0, 0))


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


def streamed_fid(
    generated: RunningStatistics,
    reference: np.ndarray,
    method: str = "sqrtm",
    *,
    parameter: str = "method",
) -> float:
    """FID between streamed generated features and the reference rows: ``sqrtm`` from the
    running mean and covariance, ``nuclear`` from the kept rows."""
    check_choice(parameter, method, FID_METHODS)
    if method == "nuclear":
        return fid_from_features(generated.features(), reference, method, parameter=parameter)
    mu1, sigma1 = generated.statistics()
    mu2, sigma2 = feature_statistics(reference)
    return frechet_distance(mu1, sigma1, mu2, sigma2)
