"""Votes, scores (competition bins, overall and per task) and confusion figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from podium.core.config import ParameterError
from podium.layouts.mask import encode_class
from podium.pipelines.mask.evaluate import (
    PROBABILITY_COLUMNS,
    confusion_figures,
    scores,
    vote,
)


def _predictions(per_model: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    frames = []
    for (backbone, model), probabilities in per_model.items():
        frame = pd.DataFrame(probabilities, columns=PROBABILITY_COLUMNS)
        frames.append(
            frame.assign(
                ImageID=[f"{i}.jpg" for i in range(len(frame))], backbone=backbone, model=model
            )
        )
    return pd.concat(frames, ignore_index=True)


def _one_hot(classes, confidence=0.9):
    p = np.full((len(classes), 18), (1 - confidence) / 17)
    p[np.arange(len(classes)), classes] = confidence
    return p


def test_soft_and_hard_votes_differ_where_they_should():
    # two weak models say class 1, one confident model says class 2
    weak = np.full((1, 18), 0.0)
    weak[0, [1, 2]] = [0.5, 0.45]
    weak[0, 0] = 0.05
    predictions = _predictions(
        {("a", "a/fold0"): weak, ("a", "a/fold1"): weak, ("b", "b/fold0"): _one_hot([2], 0.99)}
    )
    votes = vote(predictions, "ImageID", None)
    assert votes["hard"].tolist() == [1]  # majority
    assert votes["soft"].tolist() == [2]  # mean probability
    # a backbone weight that outweighs the other two models flips the hard vote
    assert vote(predictions, "ImageID", {"a": 1.0, "b": 3.0})["hard"].tolist() == [2]


def test_backbone_weights_must_cover_every_backbone():
    predictions = _predictions({("a", "a/fold0"): _one_hot([0]), ("b", "b/fold0"): _one_hot([0])})
    with pytest.raises(ParameterError, match="backbone_weights"):
        vote(predictions, "ImageID", {"a": 1.0})


def test_scores_overall_and_per_task():
    truth = np.array([encode_class(0, 0, 0), encode_class(1, 1, 2), encode_class(2, 0, 1)])
    assert scores(truth, truth)["f1_macro"] == pytest.approx(1.0)
    # only the age is wrong in the second photo: mask and gender stay perfect
    wrong_age = truth.copy()
    wrong_age[1] = encode_class(1, 1, 1)
    result = scores(truth, wrong_age)
    assert result["mask/accuracy"] == 1.0 and result["gender/accuracy"] == 1.0
    assert result["age/accuracy"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(2 / 3)


def test_confusion_figures_cover_the_classes_and_each_task():
    figures = confusion_figures(np.arange(18), np.arange(18), "test")
    assert set(figures) == {"classes", "mask", "gender", "age"}
    assert len(figures["classes"].axes[0].get_xticklabels()) == 18
    assert len(figures["gender"].axes[0].get_xticklabels()) == 2
