from __future__ import annotations

import numpy as np
import pytest

from podium.core.config import ParameterError
from podium.core.splits import assign_folds, check_group_disjoint


def _people(n_people: int = 60, seed: int = 0):
    """Each person has 7 photos; the label is the person's (age) class, like the mask data."""
    rng = np.random.default_rng(seed)
    person_label = rng.choice(3, size=n_people, p=[0.5, 0.35, 0.15])
    groups = np.repeat(np.arange(n_people), 7)
    labels = np.repeat(person_label, 7)
    return labels, groups


@pytest.mark.parametrize("stratified", [True, False])
def test_no_group_in_two_folds_and_every_row_assigned(stratified):
    labels, groups = _people()
    folds = assign_folds(labels, groups, n_splits=5, seed=0, stratified=stratified)
    assert folds.shape == labels.shape and set(folds) == set(range(5))
    check_group_disjoint(folds, groups)
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1


def test_stratified_folds_keep_class_proportions():
    labels, groups = _people(n_people=100)
    folds = assign_folds(labels, groups, n_splits=5, seed=1)
    overall = np.bincount(labels, minlength=3) / len(labels)
    for fold in range(5):
        share = np.bincount(labels[folds == fold], minlength=3) / (folds == fold).sum()
        assert np.abs(share - overall).max() < 0.08


def test_seed_changes_assignment_and_is_repeatable():
    labels, groups = _people()
    a = assign_folds(labels, groups, 5, seed=0)
    assert np.array_equal(a, assign_folds(labels, groups, 5, seed=0))
    assert not np.array_equal(a, assign_folds(labels, groups, 5, seed=1))


def test_too_few_groups_is_a_clear_error():
    with pytest.raises(ParameterError) as info:
        assign_folds(
            [0, 1, 0, 1], ["a", "a", "b", "c"], n_splits=5, seed=0, parameter="mask.n_folds"
        )
    message = str(info.value)
    assert "mask.n_folds" in message and "3 distinct groups" in message


def test_bad_inputs():
    with pytest.raises(ParameterError, match="n_splits"):
        assign_folds([0, 1], [0, 1], n_splits=1, seed=0)
    with pytest.raises(ValueError, match="labels"):
        assign_folds(None, [0, 1, 2], n_splits=2, seed=0)
    with pytest.raises(ValueError, match="shape"):
        assign_folds([0, 1], [0, 1, 2], n_splits=2, seed=0)
    assert assign_folds(None, [0, 1, 2, 3], n_splits=2, seed=0, stratified=False).max() == 1


def test_check_group_disjoint_finds_a_leak():
    with pytest.raises(ValueError, match="'p2'"):
        check_group_disjoint(np.array([0, 0, 1, 1, 0]), np.array(["p1", "p1", "p2", "p3", "p2"]))
