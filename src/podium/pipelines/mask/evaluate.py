"""Voting, scores and confusion matrices of the mask pipeline. No kedro or mlflow imports.

Scores always use the competition's age bins (old = 60+), whatever threshold trained the
models: macro F1 (the competition metric) and accuracy on the 18 classes and on each task.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import accuracy_score, f1_score

from podium.core.config import ParameterError
from podium.core.ensemble import hard_vote, soft_vote
from podium.core.plots import confusion_matrix_figure
from podium.layouts.mask import (
    AGE_NAMES,
    GENDER_NAMES,
    MASK_NAMES,
    N_CLASSES,
    class_name,
    decode_class,
)

TASK_NAMES = {"mask": MASK_NAMES, "gender": GENDER_NAMES, "age": AGE_NAMES}
PROBABILITY_COLUMNS = [f"p{c}" for c in range(N_CLASSES)]


def _model_weights(
    models: list[str], backbones: list[str], weights: Mapping[str, float] | None
) -> list[float]:
    """One weight per model: its backbone's weight (1 for every backbone when not given)."""
    if not weights:
        return [1.0] * len(models)
    missing = sorted(set(backbones) - set(weights))
    if missing:
        raise ParameterError(
            "mask.ensemble.backbone_weights", f"no weight for backbone(s) {missing}"
        )
    return [float(weights[b]) for b in backbones]


def vote(
    predictions: pd.DataFrame, id_column: str, backbone_weights: Mapping[str, float] | None
) -> pd.DataFrame:
    """Soft (weighted mean probability) and hard (weighted majority) votes per id.

    ``predictions`` is long-format: one row per (id, model) with ``backbone`` and ``p0..p17``.
    Rows of one id across models are aligned by sorting on the id.
    """
    models = predictions.drop_duplicates("model")[["model", "backbone"]]
    weights = _model_weights(
        models["model"].tolist(), models["backbone"].tolist(), backbone_weights
    )
    per_model = []
    for name in models["model"]:
        part = predictions[predictions["model"] == name].sort_values(id_column)
        per_model.append(part)
    ids = per_model[0][id_column].to_numpy()
    for part in per_model[1:]:
        if not np.array_equal(part[id_column].to_numpy(), ids):
            raise ValueError("every model must predict the same ids")
    probabilities = [part[PROBABILITY_COLUMNS].to_numpy() for part in per_model]
    return pd.DataFrame(
        {
            id_column: ids,
            "soft": soft_vote(probabilities, weights).argmax(axis=1),
            "hard": hard_vote(probabilities, weights, n_classes=N_CLASSES),
        }
    )


def vote_out_of_fold(
    out_of_fold: pd.DataFrame, backbone_weights: Mapping[str, float] | None
) -> pd.DataFrame:
    """Each training row is predicted by one fold model per backbone: vote across backbones."""
    by_backbone = out_of_fold.assign(model=out_of_fold["backbone"])
    return vote(by_backbone, "row", backbone_weights)


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Macro F1 and accuracy on the 18 classes and on each task (mask, gender, age).

    Macro F1 averages over the classes present in truth or prediction, as the competition's
    scorer (sklearn's default) did.
    """
    out = {
        "f1_macro": f1_score(y_true, y_pred, average="macro", zero_division=0),
        "accuracy": accuracy_score(y_true, y_pred),
    }
    for task, true, pred in zip(
        TASK_NAMES, decode_class(np.asarray(y_true)), decode_class(np.asarray(y_pred)), strict=True
    ):
        out[f"{task}/f1_macro"] = f1_score(true, pred, average="macro", zero_division=0)
        out[f"{task}/accuracy"] = accuracy_score(true, pred)
    return {key: float(value) for key, value in out.items()}


def vote_scores(truth: np.ndarray, votes: pd.DataFrame) -> dict[str, float]:
    """``{"<vote>/<score>": value}`` for both votes."""
    return {
        f"{method}/{key}": value
        for method in ("soft", "hard")
        for key, value in scores(truth, votes[method].to_numpy()).items()
    }


def confusion_figures(y_true: np.ndarray, y_pred: np.ndarray, title: str) -> dict[str, Figure]:
    """Row-normalised confusion matrices: ``classes`` (18-way) and one per task."""
    figures = {
        "classes": confusion_matrix_figure(
            y_true, y_pred, [class_name(c) for c in range(N_CLASSES)], title=f"{title}: 18 classes"
        )
    }
    for task, true, pred in zip(
        TASK_NAMES, decode_class(np.asarray(y_true)), decode_class(np.asarray(y_pred)), strict=True
    ):
        figures[task] = confusion_matrix_figure(
            true, pred, TASK_NAMES[task], title=f"{title}: {task}"
        )
    return figures
