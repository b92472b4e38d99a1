"""Nodes of the mask pipeline: thin wrappers over data.py, train.py, evaluate.py and
submission.py (model.py's networks are built by train.py).

Each node turns parameters into arguments and catalog data into the shapes the modules
expect; metrics leave as ``{name: {"value", "step"}}`` for kedro-mlflow's metrics dataset.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from podium.core.ddp import resolve_distributed
from podium.core.device import resolve_runtime, select_device
from podium.core.distributed import dask_client
from podium.core.params import RuntimeParams
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
from podium.pipelines.mask.data import (
    FACE_NOT_FOUND,
    REPORT_COLUMNS,
    USABLE,
    CropFiles,
    crop_settings,
    crop_to_store,
)
from podium.pipelines.mask.params import (
    MaskAugment,
    MaskCropParams,
    MaskEnsembleParams,
    MaskFoldsParams,
    MaskLossParams,
    MaskModelParams,
    MaskOptimizerParams,
    MaskPreprocess,
    MaskResamplingParams,
    MaskSchedulerParams,
    MaskTrainParams,
)
from podium.pipelines.mask.submission import submission_report, submission_table
from podium.pipelines.mask.train import predict_with_saved_models, train_cross_validated
from podium.pipelines.tracking import Metrics, as_metrics, metric_curves

log = logging.getLogger(__name__)


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


def photo_keys(index: pd.DataFrame) -> list[str]:
    """Each photo's name in the crop store: ``<person folder>/<file>`` for training photos,
    the ``ImageID`` for evaluation photos."""
    if "ImageID" in index:
        return index["ImageID"].astype(str).tolist()
    return [
        f"{person}/{Path(path).name}"
        for person, path in zip(index["person"], index["path"], strict=True)
    ]


def crop_photos(
    index: pd.DataFrame, store: Path, crop: MaskCropParams, runtime: RuntimeParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every photo of ``index`` cropped into the crop store by Dask workers (``runtime.dask``:
    a scheduler address, else a LocalCluster of ``n_workers``; 0 crops here); returns the
    crop index (one row per photo, its entry in the store) and the crop report."""
    runtime = RuntimeParams.of(runtime)
    device = str(select_device(runtime.device, parameter="runtime.device"))
    address, n_workers = runtime.dask.scheduler_address, runtime.dask.n_workers
    arguments = (index["path"].tolist(), photo_keys(index), crop, store)
    if address or n_workers > 0:
        threads = runtime.dask.threads_per_worker
        with dask_client(address, n_workers=n_workers, threads_per_worker=threads) as client:
            crop_index = crop_to_store(*arguments, client=client, device=device)
    else:
        crop_index = crop_to_store(*arguments, client=None, device=device)
    report_unusable(crop_index)
    return crop_index, crop_index[list(REPORT_COLUMNS)]


def crop_evaluation_photos(
    index: pd.DataFrame,
    store: Path,
    crop: MaskCropParams,
    runtime: RuntimeParams,
    ensemble: MaskEnsembleParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`crop_photos` for the evaluation photos. With ``mask.ensemble.unusable_photos:
    stop``, an evaluation photo without a usable crop stops the run here, before any
    training, naming the photos; with ``answer`` it is answered from a blank crop and marked
    in the submission report."""
    crop_index, report = crop_photos(index, store, crop, runtime)
    unusable = crop_index[~crop_index["status"].isin(USABLE)]
    if len(unusable) and MaskEnsembleParams.of(ensemble).unusable_photos == "stop":
        listed = "; ".join(
            f"{row.path} ({row.status}: {row.reason})" for row in unusable.head(10).itertuples()
        )
        raise ValueError(
            f"{len(unusable)} evaluation photo(s) have no usable crop: {listed}; fix: replace "
            "the files, or set mask.ensemble.unusable_photos: answer (answered from a blank "
            "crop and marked in mask_submission_report)"
        )
    return crop_index, report


def report_unusable(crop_index: pd.DataFrame, shown: int = 5) -> int:
    """Say on the console what the crop report holds: photos without a usable crop (left
    out of training, or answered from a blank crop at evaluation) and centre-crop
    fallbacks. Returns the number of unusable photos."""
    unusable = crop_index[~crop_index["status"].isin(USABLE)]
    fallbacks = int((crop_index["status"] == FACE_NOT_FOUND).sum())
    if fallbacks:
        log.info("mask: %d of %d photos had no face found: centre crop used", fallbacks,
                 len(crop_index))  # fmt: skip
    if len(unusable):
        examples = "; ".join(
            f"{row.path} ({row.status}: {row.reason})" for row in unusable.head(shown).itertuples()
        )
        log.warning(
            "mask: %d of %d photos have no usable crop, listed in the crop report, e.g. %s",
            len(unusable),
            len(crop_index),
            examples,
        )
    return len(unusable)


#: Catalog split name and crop node of each split, for error messages.
_SPLITS = {"train": "mask.crops.crop_training_images", "eval": "mask.crops.crop_evaluation_images"}


def _check_aligned(index: pd.DataFrame, crop_index: pd.DataFrame, split: str) -> None:
    if len(crop_index) != len(index) or not np.array_equal(
        crop_index["path"].to_numpy(), index["path"].to_numpy()
    ):
        raise ValueError(
            f"mask_{split}_crop_index does not list the photos of mask_{split}_index "
            f"({len(crop_index)} rows for {len(index)} photos): it is from another run; run "
            f"`kedro run --pipelines=mask --nodes={_SPLITS[split]}` before this node"
        )


def assign_person_folds(
    index: pd.DataFrame, crop_index: pd.DataFrame, folds: MaskFoldsParams, seed: int
) -> pd.DataFrame:
    """The training table: usable crops (``row`` is the photo's position in the index,
    ``crop`` its entry in the crop store) with a person-level stratified fold each; photos
    without a crop are left out (the crop report lists them with their reason)."""
    _check_aligned(index, crop_index, "train")
    usable = crop_index["status"].isin(USABLE).to_numpy()
    table = index.assign(row=np.arange(len(index)), crop=crop_index["crop"].to_numpy())[usable]
    # Stratify on what is fixed per person (gender x age): mask varies within a person.
    person_label = encode_class(0, table["gender"], table["age_class"])
    fold = assign_folds(
        person_label,
        table["person"],
        MaskFoldsParams.of(folds).n_splits,
        seed,
        parameter="mask.folds.n_splits",
    )
    check_group_disjoint(fold, table["person"])
    return table.assign(fold=fold).reset_index(drop=True)


def train_models(
    crops: Path,
    table: pd.DataFrame,
    checkpoints: Path,
    model: MaskModelParams,
    loss: MaskLossParams,
    optimizer: MaskOptimizerParams,
    scheduler: MaskSchedulerParams,
    train: MaskTrainParams,
    resampling: MaskResamplingParams,
    augment: MaskAugment,
    preprocess: MaskPreprocess,
    seed: int,
    deterministic: bool,
    runtime: RuntimeParams,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame, Metrics]:
    """Fold models' weights, their out-of-fold predictions and per-epoch training curves;
    ``crops`` is the crop store, read one entry per item by the DataLoader workers;
    ``checkpoints`` the folder of every network and fold's per-epoch checkpoint
    (``mask.train.resume_from``); ``runtime.distributed`` the processes of each training."""
    seed_everything(seed, deterministic=deterministic)
    resolved = resolve_runtime(runtime)
    result = train_cross_validated(
        CropFiles(crops, dict(zip(table["row"], table["crop"], strict=True))),
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
        runtime=resolved,
        deterministic=deterministic,
        distributed=resolve_distributed(runtime.get("distributed"), device=resolved.device),
        checkpoints=checkpoints,
    )
    curves = {
        key: points
        for name, history in result.history.items()
        for key, points in metric_curves(
            history, ("train_loss", "lr"), f"{name}/{{metric}}"
        ).items()
    }
    return result.weights, pd.concat(result.out_of_fold, ignore_index=True), curves


def predict_evaluation_images(
    weights: dict[str, torch.Tensor],
    crops: Path,
    crop_index: pd.DataFrame,
    eval_index: pd.DataFrame,
    crop: MaskCropParams,
    model: MaskModelParams,
    preprocess: MaskPreprocess,
    train: MaskTrainParams,
    seed: int,
    deterministic: bool,
    runtime: RuntimeParams,
) -> pd.DataFrame:
    """Every fold model's probabilities on every evaluation photo; one whose photo could not
    be cropped sees a black crop (the report lists it), so no row goes without an answer."""
    _check_aligned(eval_index, crop_index, "eval")
    blank = crop_settings(crop).output
    files = CropFiles(crops, dict(enumerate(crop_index["crop"].fillna(""))), blank=blank)
    seed_everything(seed, deterministic=deterministic)
    return predict_with_saved_models(
        weights,
        files,
        eval_index[["ImageID"]],
        model=model,
        preprocess=preprocess,
        batch_size=MaskTrainParams.of(train).batch_size,
        seed=seed,
        runtime=resolve_runtime(runtime),
    )


def vote_evaluation_images(predictions: pd.DataFrame, ensemble: MaskEnsembleParams) -> pd.DataFrame:
    return evaluate.vote(predictions, "ImageID", MaskEnsembleParams.of(ensemble).backbone_weights)


def write_submission(
    eval_index: pd.DataFrame,
    votes: pd.DataFrame,
    ensemble: MaskEnsembleParams,
    crop_index: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``ImageID, ans`` in info.csv's order, ``ans`` from the configured vote; and the
    submission report: each row with its photo's crop status and reason and whether its
    answer came from a blank crop (an unreadable or uncroppable photo)."""
    method = MaskEnsembleParams.of(ensemble).submission_vote
    submission = submission_table(eval_index, votes, method)
    if crop_index is not None:
        _check_aligned(eval_index, crop_index, "eval")
    return submission, submission_report(submission, crop_index)


def vote_out_of_fold(
    out_of_fold: pd.DataFrame, table: pd.DataFrame, ensemble: MaskEnsembleParams
) -> pd.DataFrame:
    """Soft and hard votes per training photo, with its label in the competition's bins."""
    weights = MaskEnsembleParams.of(ensemble).backbone_weights
    votes = evaluate.vote_out_of_fold(out_of_fold, weights)
    truth = table.set_index("row").loc[votes["row"], "competition_class"].to_numpy()
    return votes.assign(truth=truth)


def score_out_of_fold(votes: pd.DataFrame) -> Metrics:
    return as_metrics(evaluate.vote_scores(votes["truth"].to_numpy(), votes))


def plot_out_of_fold_confusion(
    votes: pd.DataFrame, ensemble: MaskEnsembleParams
) -> dict[str, Figure]:
    """Confusion matrices (18-way, mask, gender, age) of the submission's vote."""
    method = MaskEnsembleParams.of(ensemble).submission_vote
    return evaluate.confusion_figures(votes["truth"], votes[method], f"out-of-fold, {method} vote")


def score_evaluation(submission: pd.DataFrame, votes: pd.DataFrame, raw_root: Path) -> Metrics:
    """EVALUATION ONLY: the submission and both votes against the sample's hidden answers."""
    truth = read_eval_truth(raw_root).set_index("ImageID")["ans"]
    submitted = evaluate.scores(
        truth.loc[submission["ImageID"]].to_numpy(), submission["ans"].to_numpy()
    )
    by_vote = evaluate.vote_scores(truth.loc[votes["ImageID"]].to_numpy(), votes)
    return as_metrics({**{f"submission/{k}": v for k, v in submitted.items()}, **by_vote})


def count_crop_outcomes(train_report: pd.DataFrame, eval_report: pd.DataFrame) -> Metrics:
    """How many photos were cropped, fell back to the centre crop, could not be read or
    cropped, and (``reused``) how many crops an earlier run had made already."""
    counts = {}
    for split, report in (("train", train_report), ("eval", eval_report)):
        for status, n in report["status"].value_counts().items():
            counts[f"{split}/{status}"] = n
        if "reused" in report:
            counts[f"{split}/reused"] = int(report["reused"].astype(bool).sum())
    return as_metrics(counts)
