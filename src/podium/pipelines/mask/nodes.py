"""Nodes of the mask pipeline: thin wrappers over data.py, train.py and evaluate.py.

Each node turns parameters into arguments and catalog data into the shapes the modules
expect; metrics leave as ``{name: {"value", "step"}}`` for kedro-mlflow's metrics dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from podium.core.device import resolve_runtime, select_device
from podium.core.seeding import seed_everything
from podium.core.splits import assign_folds, check_group_disjoint
from podium.layouts.mask import (
    age_class,
    encode_class,
    index_mask_eval,
    index_mask_train,
    read_eval_truth,
)
from podium.pipelines.mask import evaluate
from podium.pipelines.mask.data import UNREADABLE, crop_images
from podium.pipelines.mask.train import predict_with_saved_models, train_cross_validated
from podium.pipelines.tracking import Metrics, as_metrics


def index_training_images(raw_root: Path, age_threshold: int) -> pd.DataFrame:
    """One row per training photo, labelled with the training threshold for "old"; the
    ``competition_class`` column keeps the competition's bins for scoring."""
    index = index_mask_train(raw_root, age_threshold)
    competition_age = age_class(index["age"].to_numpy())
    return index.assign(
        competition_age_class=competition_age,
        competition_class=encode_class(index["mask"], index["gender"], competition_age),
    )


def index_evaluation_images(raw_root: Path) -> pd.DataFrame:
    return index_mask_eval(raw_root)


def crop_photos(
    index: pd.DataFrame, crop: Mapping[str, Any], runtime: Mapping[str, Any]
) -> tuple[np.ndarray, pd.DataFrame]:
    device = select_device(runtime["device"], parameter="runtime.device")
    return crop_images(index["path"].tolist(), crop, device)


def assign_person_folds(
    index: pd.DataFrame, crop_report: pd.DataFrame, folds: Mapping[str, Any], seed: int
) -> pd.DataFrame:
    """The training table: usable crops (``row`` indexes the crops) with a person-level
    stratified fold each; unreadable photos are left out (the crop report lists them)."""
    table = index.assign(row=np.arange(len(index)))[crop_report["status"].to_numpy() != UNREADABLE]
    # Stratify on what is fixed per person (gender x age): mask varies within a person.
    person_label = encode_class(0, table["gender"], table["age_class"])
    fold = assign_folds(
        person_label,
        table["person"],
        folds["n_splits"],
        seed,
        parameter="mask.folds.n_splits",
    )
    check_group_disjoint(fold, table["person"])
    return table.assign(fold=fold).reset_index(drop=True)


def train_models(
    crops: np.ndarray,
    table: pd.DataFrame,
    model: Mapping[str, Any],
    loss: Mapping[str, Any],
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any],
    train: Mapping[str, Any],
    resampling: Mapping[str, Any],
    augment: list,
    preprocess: list,
    seed: int,
    deterministic: bool,
    runtime: Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], pd.DataFrame, Metrics]:
    """Fold models' weights, their out-of-fold predictions and per-epoch training curves."""
    seed_everything(seed, deterministic=deterministic)
    result = train_cross_validated(
        crops,
        table,
        model=model,
        loss=loss,
        optimizer=optimizer,
        scheduler=scheduler,
        train=train,
        resampling=resampling,
        augment=augment,
        preprocess=preprocess,
        seed=seed,
        runtime=resolve_runtime(runtime),
    )
    curves = {
        f"{name}/{key}": [{"step": int(row["epoch"]), "value": float(row[key])} for row in history]
        for name, history in result.history.items()
        for key in ("train_loss", "lr")
    }
    return result.weights, pd.concat(result.out_of_fold, ignore_index=True), curves


def predict_evaluation_images(
    weights: dict[str, torch.Tensor],
    crops: np.ndarray,
    eval_index: pd.DataFrame,
    model: Mapping[str, Any],
    preprocess: list,
    train: Mapping[str, Any],
    seed: int,
    deterministic: bool,
    runtime: Mapping[str, Any],
) -> pd.DataFrame:
    seed_everything(seed, deterministic=deterministic)
    return predict_with_saved_models(
        weights,
        crops,
        eval_index[["ImageID"]],
        model=model,
        preprocess=preprocess,
        batch_size=train["batch_size"],
        seed=seed,
        runtime=resolve_runtime(runtime),
    )


def vote_evaluation_images(predictions: pd.DataFrame, ensemble: Mapping[str, Any]) -> pd.DataFrame:
    evaluate.check_ensemble(ensemble)
    return evaluate.vote(predictions, "ImageID", ensemble.get("backbone_weights"))


def write_submission(
    eval_index: pd.DataFrame, votes: pd.DataFrame, ensemble: Mapping[str, Any]
) -> pd.DataFrame:
    """``ImageID, ans`` in info.csv's order, ``ans`` from the configured vote."""
    method = evaluate.check_ensemble(ensemble)["submission_vote"]
    answers = votes.set_index("ImageID")[method]
    return pd.DataFrame(
        {"ImageID": eval_index["ImageID"], "ans": answers.loc[eval_index["ImageID"]].to_numpy()}
    )


def vote_out_of_fold(
    out_of_fold: pd.DataFrame, table: pd.DataFrame, ensemble: Mapping[str, Any]
) -> pd.DataFrame:
    """Soft and hard votes per training photo, with its label in the competition's bins."""
    evaluate.check_ensemble(ensemble)
    votes = evaluate.vote_out_of_fold(out_of_fold, ensemble.get("backbone_weights"))
    truth = table.set_index("row").loc[votes["row"], "competition_class"].to_numpy()
    return votes.assign(truth=truth)


def score_out_of_fold(votes: pd.DataFrame) -> Metrics:
    return as_metrics(evaluate.vote_scores(votes["truth"].to_numpy(), votes))


def plot_out_of_fold_confusion(
    votes: pd.DataFrame, ensemble: Mapping[str, Any]
) -> dict[str, Figure]:
    """Confusion matrices (18-way, mask, gender, age) of the submission's vote."""
    method = evaluate.check_ensemble(ensemble)["submission_vote"]
    return evaluate.confusion_figures(votes["truth"], votes[method], f"out-of-fold, {method} vote")


def score_evaluation(submission: pd.DataFrame, votes: pd.DataFrame, raw_root: Path) -> Metrics:
    """EVALUATION ONLY: the submission and both votes against the sample's hidden answers."""
    truth = read_eval_truth(raw_root).set_index("ImageID")["ans"]
    submitted = evaluate.scores(
        truth.loc[submission["ImageID"]].to_numpy(), submission["ans"].to_numpy()
    )
    by_vote = evaluate.vote_scores(truth.loc[votes["ImageID"]].to_numpy(), votes)
    return as_metrics({**{f"submission.{k}": v for k, v in submitted.items()}, **by_vote})


def count_crop_outcomes(train_report: pd.DataFrame, eval_report: pd.DataFrame) -> Metrics:
    """How many photos were cropped, fell back to the centre crop, or could not be read."""
    counts = {}
    for split, report in (("train", train_report), ("eval", eval_report)):
        for status, n in report["status"].value_counts().items():
            counts[f"{split}.{status}"] = n
    return as_metrics(counts)
