"""Group-aware K-fold assignment: no person (or original video) in two folds.

Validation scores are only honest when the same identity never sits on both sides of a
split; the write-ups' biggest leaderboard surprises came from person leaks. Folds are a
column (one fold index per row) so they can be stored, inspected and reused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from podium.core.config import ParameterError


def assign_folds(
    labels: Sequence | np.ndarray | None,
    groups: Sequence | np.ndarray,
    n_splits: int,
    seed: int,
    stratified: bool = True,
    *,
    parameter: str = "n_splits",
) -> np.ndarray:
    """Fold index (0..n_splits-1) per row, every group inside exactly one fold.

    ``stratified`` balances ``labels`` across folds as far as whole groups allow
    (StratifiedGroupKFold); otherwise GroupKFold balances fold sizes. Both shuffle with
    ``seed``. Raises ParameterError when there are fewer distinct groups than folds.
    """
    groups_arr = np.asarray(groups)
    n_rows = len(groups_arr)
    if isinstance(n_splits, bool) or not isinstance(n_splits, int | np.integer) or n_splits < 2:
        raise ParameterError(parameter, f"expected an integer >= 2, got {n_splits!r}")
    if groups_arr.ndim != 1:
        raise ValueError(f"groups must be one value per row, got shape {groups_arr.shape}")
    n_groups = len(np.unique(groups_arr))
    if n_groups < n_splits:
        raise ParameterError(
            parameter,
            f"{n_splits} folds need at least {n_splits} distinct groups, but the data has only "
            f"{n_groups} distinct groups ({n_rows} rows); lower it or add data",
        )
    if stratified:
        if labels is None:
            raise ValueError("stratified=True needs labels; pass stratified=False to ignore them")
        labels_arr = np.asarray(labels)
        if labels_arr.shape != (n_rows,):
            raise ValueError(f"labels has shape {labels_arr.shape}, groups has {n_rows} rows")
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        split_labels = labels_arr
    else:
        splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        split_labels = None
    folds = np.full(n_rows, -1, dtype=np.int64)
    placeholder = np.zeros((n_rows, 1))
    for fold, (_train, valid) in enumerate(splitter.split(placeholder, split_labels, groups_arr)):
        folds[valid] = fold
    assert (folds >= 0).all(), "every row is in exactly one validation fold"
    return folds


def check_group_disjoint(folds: np.ndarray, groups: Sequence | np.ndarray) -> None:
    """Raise ValueError naming a group found in more than one fold (a leak)."""
    folds = np.asarray(folds)
    groups_arr = np.asarray(groups)
    order = np.argsort(groups_arr, kind="stable")
    sorted_groups, sorted_folds = groups_arr[order], folds[order]
    same_group = sorted_groups[1:] == sorted_groups[:-1]
    leaking = same_group & (sorted_folds[1:] != sorted_folds[:-1])
    if leaking.any():
        group = sorted_groups[1:][leaking][0]
        raise ValueError(f"group {group!r} appears in more than one fold")
