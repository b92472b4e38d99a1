"""Nodes of the deepfake pipeline: thin wrappers that connect catalog entries to the
modules beside this file (extraction, splits, training, scoring, stacking, evaluation)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from podium.core.plots import reliability_diagram_figure
from podium.layouts.dfdc import index_dfdc, index_test_videos
from podium.pipelines.deepfake import embeddings, evaluation, scoring, splits, stacking
from podium.pipelines.deepfake.extraction import (
    cached_names,
    detection_recall,
    extract_videos,
    load_truth_actors,
    load_truth_boxes,
    partition_name,
    select_records,
    settings_key,
)
from podium.pipelines.deepfake.training import predict_frame_models, train_frame_models
from podium.pipelines.tracking import as_metrics

EXTRACTION_COLUMNS = ["video", "folder", "path", "label", "original"]


def _with_partitions(table: pd.DataFrame) -> pd.DataFrame:
    names = [partition_name(f, v) for f, v in zip(table["folder"], table["video"], strict=True)]
    return table.assign(partition=names)


# ---------------------------------------------------------------------------- data


def index_training_videos(dfdc_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every video listed in a ``dfdc_train_part_*/metadata.json``, and the mp4s listed
    nowhere (reported, not trained on)."""
    videos, unlisted = index_dfdc(dfdc_root)
    return _with_partitions(videos), unlisted


def index_test(dfdc_root: Path) -> pd.DataFrame:
    return _with_partitions(index_test_videos(dfdc_root))


def extract_faces(
    videos: pd.DataFrame,
    test_videos: pd.DataFrame,
    cached_faces: Mapping[str, Any],
    extraction: Mapping[str, Any],
    dask: Mapping[str, Any],
) -> tuple[dict[str, dict], pd.DataFrame, dict]:
    """Face records of the videos not yet extracted with these settings (the rest are in
    the cache), the videos that failed with their reason, and extraction statistics."""
    key = settings_key(extraction)
    # test labels stay out of extraction: a test video is never treated as a known FAKE
    unlabelled_test = test_videos.assign(label=None, original=None)
    table = pd.concat([videos[EXTRACTION_COLUMNS], unlabelled_test[EXTRACTION_COLUMNS]])
    records, bad_videos, stats = extract_videos(
        table,
        extraction,
        already_extracted=cached_names(cached_faces, key),
        scheduler_address=dask["scheduler_address"],
        n_workers=dask["n_workers"],
    )
    new_partitions = {f"{key}/{name}": record for name, record in records.items()}
    return new_partitions, bad_videos, as_metrics(stats)


def measure_detection_recall(
    faces: Mapping[str, Any], dfdc_root: Path, extraction: Mapping[str, Any], iou: float
) -> dict:
    """MTCNN recall on the sampled frames of REAL videos against the sample's truth boxes
    (diagnostics: real DFDC has no truth, and then nothing is logged)."""
    truth = load_truth_boxes(dfdc_root)
    records = select_records(faces, settings_key(extraction))
    real = {n: r for n, r in records.items() if r["label"] == "REAL" and n in truth}
    if not real:
        return {}
    return as_metrics({"mtcnn_recall_iou50": detection_recall(real, truth, iou)})


# ---------------------------------------------------------------------------- splits


def _person_clusters(
    videos: pd.DataFrame,
    records: Mapping[str, dict],
    embedding: Mapping[str, Any],
    clustering: Mapping[str, Any],
    seed: int,
) -> pd.Series:
    """Cluster id per REAL video from its faces; a REAL without faces is its own cluster."""
    reals = videos[(videos["label"] == "REAL") & videos["partition"].isin(records)]
    crops = [records[p]["crops"] for p in reals["partition"]]
    owners = np.concatenate([[v] * len(c) for v, c in zip(reals["video"], crops, strict=True)])
    faces = embeddings.embed_faces(np.concatenate(crops), seed=seed, **embedding)
    per_video = embeddings.video_embeddings(faces, owners)
    labels = splits.cluster_people(per_video, seed=seed, **clustering)
    clusters = pd.Series(labels, index=per_video.index, name="person_cluster")
    faceless = videos.loc[(videos["label"] == "REAL") & ~videos["video"].isin(clusters.index)]
    extra = pd.Series(
        range(labels.max() + 1, labels.max() + 1 + len(faceless)), index=faceless["video"]
    )
    return pd.concat([clusters, extra])


def assign_folds(
    videos: pd.DataFrame,
    faces: Mapping[str, Any],
    split: Mapping[str, Any],
    embedding: Mapping[str, Any],
    person_cluster: Mapping[str, Any],
    extraction: Mapping[str, Any],
    seed: int,
) -> pd.DataFrame:
    """The videos with their validation fold (fakes always with their original) and
    whether faces were found (videos without are scored with the prior, never dropped)."""
    records = select_records(faces, settings_key(extraction))
    clusters = None
    if split["strategy"] == "person_cluster":
        clusters = _person_clusters(videos, records, embedding, person_cluster, seed)
    folds = splits.assign_video_folds(
        videos, split["strategy"], split["n_folds"], seed, person_clusters=clusters
    )
    table = videos.assign(fold=folds, has_faces=videos["partition"].isin(records))
    if clusters is not None:
        family = splits.families(videos)
        table["person_cluster"] = family.map(clusters).to_numpy()
    return table


def split_diagnostics(folds: pd.DataFrame, dfdc_root: Path) -> dict:
    """Leakage the split leaves (share of validation videos whose actor is in training)
    and, for person clusters, their purity; from the sample's truth, diagnostics only."""
    actors = load_truth_actors(dfdc_root)
    if not actors:
        return {}
    leak = splits.leakage(folds, folds["fold"], actors)
    values = {"leakage_mean": leak["mean"], "leakage_max": leak["max"]}
    if "person_cluster" in folds:
        values["cluster_purity"] = splits.cluster_purity(
            folds["person_cluster"], folds["video"].map(actors)
        )
    return as_metrics(values)


# ---------------------------------------------------------------------------- models


def train_models(
    faces: Mapping[str, Any],
    folds: pd.DataFrame,
    training: Mapping[str, Any],
    runtime: Mapping[str, Any],
    extraction: Mapping[str, Any],
    seed: int,
) -> tuple[dict, pd.DataFrame, dict, dict]:
    """Every model x fold on the frames of the videos with faces: weights, per-epoch
    history (also as MLflow metric histories) and out-of-fold frame probabilities."""
    records = select_records(faces, settings_key(extraction))
    trainable = folds.loc[folds["has_faces"], ["partition", "label", "fold"]]
    states, history, oof = train_frame_models(records, trainable, training, runtime, seed)
    curves: dict[str, list[dict[str, float]]] = {}
    for row in history.to_dict("records"):
        for column in ("train_loss", "val_loss", "val_log_loss", "val_mask_iou"):
            if column in row and pd.notna(row[column]):
                name = f"{row['model']}.fold{row['fold']}.{column}"
                curves.setdefault(name, []).append({"value": row[column], "step": row["epoch"]})
    return states, history, oof, curves


def predict_test_frames(
    faces: Mapping[str, Any],
    test_videos: pd.DataFrame,
    models: Mapping[str, Any],
    training: Mapping[str, Any],
    runtime: Mapping[str, Any],
    extraction: Mapping[str, Any],
) -> dict:
    records = select_records(faces, settings_key(extraction))
    test_records = {p: records[p] for p in test_videos["partition"] if p in records}
    return predict_frame_models(test_records, models, training, runtime)


# ---------------------------------------------------------------------------- scores


def score_videos(
    oof_frame_probs: Mapping[str, Mapping[str, np.ndarray]],
    test_frame_probs: Mapping[str, Mapping[str, np.ndarray]],
    folds: pd.DataFrame,
    test_videos: pd.DataFrame,
    video_score: Mapping[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One score per video and model (the rule is a parameter); a video without a usable
    face gets the training share of FAKE."""
    prior = scoring.training_prior(folds["target"].astype(int))
    options = {k: v for k, v in video_score.items() if k != "rule"}

    def table(frame_probs: Mapping[str, Mapping[str, np.ndarray]], videos: pd.DataFrame):
        scores = videos.copy()
        for model, probs in frame_probs.items():
            per_video = scoring.score_videos(
                probs, list(videos["partition"]), video_score["rule"], prior, **options
            )
            scores[f"score_{model}"] = per_video.to_numpy()
        return scores

    return table(oof_frame_probs, folds), table(test_frame_probs, test_videos)


def _features(
    frame_probs: Mapping[str, Mapping[str, np.ndarray]],
    videos: pd.DataFrame,
    records: Mapping[str, dict],
) -> pd.DataFrame:
    """Stacking features of each video from the models' logit-averaged frame scores."""
    rows = {}
    for partition in videos["partition"]:
        per_model = [probs[partition] for probs in frame_probs.values() if partition in probs]
        frame_scores = scoring.average_logits(per_model) if per_model else np.empty(0)
        record = records.get(partition)
        rows[partition] = stacking.video_features(
            frame_scores,
            record["confidences"] if record else np.empty(0),
            len(record["frame_indices"]) if record else 0,
            len(record["sampled_indices"]) if record else 1,
        )
    return stacking.feature_table(rows)


def stack_videos(
    oof_frame_probs: Mapping[str, Mapping[str, np.ndarray]],
    test_frame_probs: Mapping[str, Mapping[str, np.ndarray]],
    folds: pd.DataFrame,
    test_videos: pd.DataFrame,
    faces: Mapping[str, Any],
    extraction: Mapping[str, Any],
    stacking_params: Mapping[str, Any],
    eps: float,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """LightGBM on per-video features, out of fold with the CNNs' folds, reported beside
    the plain mean of frame scores (the write-up found stacking did not pay)."""
    if not stacking_params["enabled"]:
        empty = pd.DataFrame(columns=["partition", "stacked"])
        return empty, empty, {}
    y = folds["target"].astype(int).to_numpy()
    records = select_records(faces, settings_key(extraction))
    train = _features(oof_frame_probs, folds, records)
    oof = stacking.stack_out_of_fold(train, y, folds["fold"], stacking_params["lgbm"], seed)
    model = stacking.fit_stacker(train, y, stacking_params["lgbm"], seed)
    test = _features(test_frame_probs, test_videos, records)
    test_probs = stacking.predict_stacker(model, test) if len(test) else np.empty(0)
    prior = scoring.training_prior(y)
    compared = stacking.compare_with_mean(y, oof, train, prior, eps)
    return (
        pd.DataFrame({"partition": train.index, "stacked": oof}),
        pd.DataFrame({"partition": test.index, "stacked": test_probs}),
        as_metrics(compared),
    )


def _scores_from_stacker(scores: pd.DataFrame, stacked: pd.DataFrame) -> pd.DataFrame:
    """``scores`` with the models' columns replaced by the stacker's one (``score_stacked``)."""
    by_partition = stacked.set_index("partition")["stacked"]
    missing = sorted(set(scores["partition"]) - set(by_partition.index))
    if missing:
        raise ValueError(f"stacked predictions lack {len(missing)} videos, e.g. {missing[:3]}")
    kept = scores.drop(columns=[c for c in scores.columns if c.startswith("score_")])
    return kept.assign(score_stacked=by_partition.loc[scores["partition"]].to_numpy())


def ensemble_and_calibrate(
    oof_scores: pd.DataFrame,
    test_scores: pd.DataFrame,
    oof_stacked: pd.DataFrame,
    test_stacked: pd.DataFrame,
    stacking_params: Mapping[str, Any],
    calibration: Mapping[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Average the models' logits (or take the stacker's score, with
    ``stacking.replace_mean``), then scale the logit by ``c`` < 1 and shift it by ``b``
    (each fixed, or fitted on the out-of-fold scores) and clip: confident mistakes cost the
    most log loss, and the shift restores the prior that class-balanced training hid."""
    if stacking_params["enabled"] and stacking_params.get("replace_mean", False):
        oof_scores = _scores_from_stacker(oof_scores, oof_stacked)
        test_scores = _scores_from_stacker(test_scores, test_stacked)
    models = [c for c in oof_scores.columns if c.startswith("score_")]
    y = oof_scores["target"].astype(int).to_numpy()
    oof_raw = scoring.average_logits([oof_scores[m] for m in models])
    factor, shift = scoring.fit_calibration(
        y,
        oof_raw,
        factor=calibration["factor"],
        shift=calibration.get("shift", 0.0),
        bounds=tuple(calibration["scale_bounds"]),
    )
    clip = calibration["clip_low"], calibration["clip_high"]
    before_after = scoring.log_loss_before_after(
        y, oof_raw, factor, *clip, calibration["eps"], shift=shift
    )
    oof = oof_scores.assign(
        ensemble=oof_raw, prob=scoring.calibrate(oof_raw, factor, *clip, shift=shift)
    )
    test_raw = (
        scoring.average_logits([test_scores[m] for m in models])
        if len(test_scores)
        else np.empty(0)
    )
    test = test_scores.assign(
        ensemble=test_raw, prob=scoring.calibrate(test_raw, factor, *clip, shift=shift)
    )
    return oof, test, as_metrics(before_after)


# ---------------------------------------------------------------------------- evaluation


def evaluate(
    oof: pd.DataFrame, test: pd.DataFrame, eps: float
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Video-level log loss (the DFDC metric), AUC and accuracy out of fold and on the test
    videos (when labelled), beside the constant-prior log loss; per-folder log loss;
    the submission in DFDC's format."""
    y = oof["target"].astype(int).to_numpy()
    values = {f"oof_{k}": v for k, v in evaluation.video_metrics(y, oof["prob"], eps).items()}
    values["oof_prior_log_loss"] = evaluation.constant_prior_log_loss(y, y, eps)
    if len(test) and test["target"].notna().all():
        y_test = test["target"].astype(int).to_numpy()
        scored = evaluation.video_metrics(y_test, test["prob"], eps)
        values.update({f"test_{k}": v for k, v in scored.items()})
        values["test_prior_log_loss"] = evaluation.constant_prior_log_loss(y, y_test, eps)
    per_folder = evaluation.per_folder_log_loss(oof, eps)
    submission = evaluation.submission_frame(list(test["video"]), test["prob"].to_numpy())
    return as_metrics(values), per_folder, submission


def plot_reliability(oof: pd.DataFrame, n_bins: int) -> Figure:
    return reliability_diagram_figure(oof["target"].astype(int), oof["prob"], n_bins=n_bins)


def plot_roc(oof: pd.DataFrame) -> Figure:
    return evaluation.roc_figure(oof["target"].astype(int), oof["prob"])


def plot_face_grid(
    faces: Mapping[str, Any],
    oof: pd.DataFrame,
    extraction: Mapping[str, Any],
    n_videos: int,
) -> Figure:
    """A face crop of each of ``n_videos`` videos (half FAKE) with its manipulation mask
    tinted and the video's out-of-fold score."""
    records = select_records(faces, settings_key(extraction))
    shown = (
        oof[oof["has_faces"]].sort_values(["label", "video"]).groupby("label").head(n_videos // 2)
    )
    crops, masks, titles, scores = [], [], [], []
    for row in shown.itertuples():
        record = records[row.partition]
        middle = len(record["crops"]) // 2
        crops.append(record["crops"][middle])
        masks.append(None if record["masks"] is None else record["masks"][middle])
        scores.append(row.prob)
        titles.append(f"{row.label} {row.video}")
    return evaluation.face_grid_figure(crops, masks, scores, titles)
