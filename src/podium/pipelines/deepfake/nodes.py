"""Nodes of the deepfake and deepfake_inference pipelines: thin wrappers that connect
catalog entries to the modules beside this file (data, splits, embeddings, train, scoring,
stacking, inference, evaluate, submission)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from podium.core.params import RuntimeParams
from podium.core.plots import reliability_diagram_figure
from podium.layouts.deepfake import index_deepfake, index_test_videos
from podium.pipelines.deepfake import (
    embeddings,
    inference,
    scoring,
    splits,
    stacking,
)
from podium.pipelines.deepfake.data import (
    BAD_VIDEO_COLUMNS,
    TRUTH_FILE,
    ExtractionStats,
    check_cache,
    current_rows,
    detection_recall,
    extraction_client,
    face_index,
    face_rows,
    load_truth_actors,
    load_truth_boxes,
    load_truth_families,
    partition_name,
    plan_extraction,
    record_loaders,
    record_problem,
    settings_key,
    stream_extraction,
)
from podium.pipelines.deepfake.evaluate import (
    FAMILY_COLUMNS,
    IN_DISTRIBUTION,
    constant_log_loss,
    constant_prior_log_loss,
    face_grid_figure,
    per_folder_log_loss,
    roc_figure,
    video_metrics,
)
from podium.pipelines.deepfake.evaluate import family_metrics as family_table
from podium.pipelines.deepfake.params import (
    CalibrationParams,
    DiagnosticsParams,
    EmbeddingParams,
    ExtractionParams,
    InferenceParams,
    PersonClusterParams,
    SplitParams,
    StackingParams,
    TrainingParams,
    VideoScoreParams,
    split_fold_key,
    typed,
)
from podium.pipelines.deepfake.submission import submission_frame, submission_table
from podium.pipelines.deepfake.train import predict_frame_models, train_frame_models
from podium.pipelines.tracking import as_metrics, metric_curves
from podium.sample_data.manipulations import FAMILIES

EXTRACTION_COLUMNS = ["video", "folder", "path", "label", "original"]
#: The columns of ``deepfake_held_out``: the fakes a leave-one-family-out run never trains on.
HELD_OUT_COLUMNS = ["partition", "video", "fold", "family"]
#: How many names a console warning lists before "... and N more".
_LISTED = 10

log = logging.getLogger(__name__)


def _listed(reasons: Mapping[str, str]) -> str:
    shown = [f"{name}: {why}" for name, why in list(reasons.items())[:_LISTED]]
    more = f"\n  ... and {len(reasons) - _LISTED} more" if len(reasons) > _LISTED else ""
    return "\n  " + "\n  ".join(shown) + more


def _with_partitions(table: pd.DataFrame) -> pd.DataFrame:
    names = [partition_name(f, v) for f, v in zip(table["folder"], table["video"], strict=True)]
    return table.assign(partition=names)


# ---------------------------------------------------------------------------- data


def index_training_videos(deepfake_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every video listed in a ``dfdc_train_part_*/metadata.json``, and the mp4s listed
    nowhere (reported, not trained on)."""
    videos, unlisted = index_deepfake(deepfake_root)
    return _with_partitions(videos), unlisted


def index_test(deepfake_root: Path) -> pd.DataFrame:
    return _with_partitions(index_test_videos(deepfake_root))


def _extraction_table(videos: pd.DataFrame, test_videos: pd.DataFrame) -> pd.DataFrame:
    # test labels stay out of extraction: a test video is never treated as a known FAKE
    unlabelled_test = test_videos.assign(label=None, original=None)
    return pd.concat([videos[EXTRACTION_COLUMNS], unlabelled_test[EXTRACTION_COLUMNS]])


def extract_faces(
    videos: pd.DataFrame,
    test_videos: pd.DataFrame,
    cached_rows: Mapping[str, Any],
    extraction: ExtractionParams,
    dask: Mapping[str, Any],
    cached_records: Mapping[str, Any] | None = None,
) -> Iterator[tuple[dict[str, dict], dict[str, pd.DataFrame], pd.DataFrame, dict]]:
    """Face records of the videos not yet extracted with these settings, saved chunk by
    chunk as Dask finishes them (a generator node: Kedro saves each yield at once, so the
    driver holds about ``extraction.window`` records, not the collection).

    Each yield: the new records, their face-index rows (written after the record, so a
    video whose rows exist is whole), the bad videos so far with their reason, and the
    running statistics (logged as MLflow metric histories at tenths of the work).

    A cached video counts as done only while its rows load and match the video file's
    content (size, mtime, edge digest); a changed video, or one whose rows (or, given
    ``cached_records``, the records as a CachedPartitionsDataset gives them) are partial
    or empty from an older crash, is extracted again under the same name, with a warning
    and the counts ``reextracted_changed`` / ``reextracted_broken``.
    """
    key = settings_key(extraction)
    table = _extraction_table(videos, test_videos)
    cache = check_cache(table, cached_rows, key, cached_records)
    if cache.changed:
        log.warning(
            "extract_faces: %d video(s) changed since their faces were extracted; "
            "extracting them again:%s",
            len(cache.changed),
            _listed(cache.changed),
        )
    if cache.broken:
        log.warning(
            "extract_faces: %d cached face record(s) or row file(s) are partial or do not "
            "load (an older run was killed while saving?); extracting them again:%s",
            len(cache.broken),
            _listed(cache.broken),
        )
    plan = plan_extraction(table, extraction, cache.done)
    stats = ExtractionStats(len(plan.members), plan.skipped)
    stats.reextracted_changed, stats.reextracted_broken = len(cache.changed), len(cache.broken)
    bad: list[dict] = []
    every = max(1, len(plan.jobs) // 10)
    logged_at = 0
    with extraction_client(
        plan, dask["scheduler_address"], dask["n_workers"], True, dask["threads_per_worker"]
    ) as client:
        for chunk in stream_extraction(plan, client):
            stats.add(chunk)
            bad.extend(chunk.bad)
            last = chunk.jobs_done == chunk.jobs_total
            metrics = {}
            if last or chunk.jobs_done - logged_at >= every:
                metrics, logged_at = (
                    as_metrics(stats.as_dict(), step=chunk.jobs_done),
                    chunk.jobs_done,
                )
            rows = {f"{key}/{name}": face_rows(name, r) for name, r in chunk.records.items()}
            yield (
                _handed_over({f"{key}/{name}": r for name, r in chunk.records.items()}),
                rows,
                pd.DataFrame(bad, columns=BAD_VIDEO_COLUMNS),
                metrics,
            )
            del chunk, rows  # saved by now: Kedro asks for the next chunk after saving it
    if bad:
        log.warning(
            "extract_faces: %d of the %d video(s) extracted this run could not be read and were "
            "skipped (listed with their reason in deepfake_bad_videos):%s",
            len(bad),
            stats.videos - stats.skipped_existing,
            _listed({str(b["path"]): str(b["reason"]) for b in bad}),
        )


def _handed_over(records: dict[str, dict]) -> dict[str, Any]:
    """The records as lazy partitions that give each record up as it is saved.

    Kedro splits a multi-output generator's yields with ``itertools.tee``, which keeps the
    yielded values of up to 57 yields alive (a whole chunk of crops each); what it keeps
    here is a small function per record, and the record itself lives only until the
    PartitionedDataset has written it."""
    return {name: partial(records.pop, name) for name in list(records)}


def index_faces(
    face_rows_store: Mapping[str, Any],
    videos: pd.DataFrame,
    test_videos: pd.DataFrame,
    extraction: ExtractionParams,
) -> pd.DataFrame:
    """The per-crop face index of this run's videos (training and test), from the small
    per-video rows that extraction wrote beside each record; no record is opened.

    Rows that no longer match their video's content (a video changed and its
    re-extraction failed, or extraction was not run since) are left out with a warning,
    so no node reads a stale record: those videos count as without faces."""
    rows = record_loaders(face_rows_store, settings_key(extraction))
    columns = ["folder", "video", "path"]
    table = pd.concat([videos[columns], test_videos[columns]], ignore_index=True)
    stale: dict[str, str] = {}

    def matching() -> Iterator[pd.DataFrame]:
        for partition, found, problem, _ in current_rows(table, rows):
            if problem is None:
                yield found
            else:
                stale[partition] = problem

    index = face_index(matching())
    if stale:
        log.warning(
            "index_faces: %d video(s) left out of the face index, their cached faces do not "
            "match the video now (scored with the prior; kedro run --pipelines=deepfake "
            "--nodes=deepfake.faces.extract_faces extracts them again):%s",
            len(stale),
            _listed(stale),
        )
    return index


# ---------------------------------------------------------------------------- split


def _person_clusters(
    videos: pd.DataFrame,
    loaders: Mapping[str, Any],
    embedding: EmbeddingParams,
    clustering: PersonClusterParams,
    seed: int,
) -> pd.Series:
    """Cluster id per REAL video from its faces, read one video at a time; a REAL without
    faces is its own cluster."""
    reals = videos[(videos["label"] == "REAL") & videos["partition"].isin(list(loaders))]
    crops = (
        (v, loaders[p]()["crops"]) for v, p in zip(reals["video"], reals["partition"], strict=True)
    )
    options = {k: v for k, v in embedding.items() if k != "method"}
    faces, owners = embeddings.embed_videos(crops, embedding.method, seed=seed, **options)
    per_video = embeddings.video_embeddings(faces, owners)
    labels = splits.cluster_people(per_video, seed=seed, **dict(clustering))
    clusters = pd.Series(labels, index=per_video.index, name="person_cluster")
    faceless = videos.loc[(videos["label"] == "REAL") & ~videos["video"].isin(clusters.index)]
    extra = pd.Series(
        range(labels.max() + 1, labels.max() + 1 + len(faceless)), index=faceless["video"]
    )
    return pd.concat([clusters, extra])


def _check_records(loaders: Mapping[str, Any], partitions: Iterable[str]) -> None:
    """Before any training: every indexed video's record is there and not empty (a
    ``stat`` each). deepfake.faces.extract_faces re-extracts such records when it is given
    the records (``cached_records``); this stops the run with the files and the fix
    otherwise, never with a bare ``EOFError`` from a record that cannot be unpickled."""
    problems = {
        p: (f"no record for {p}" if p not in loaders else record_problem(loaders[p]))
        for p in partitions
    }
    problems = {p: why for p, why in problems.items() if why is not None}
    if problems:
        raise ValueError(
            f"{len(problems)} face record(s) of the face index are missing or empty (an older "
            f"run killed while saving?):{_listed(problems)}\nfix: delete each such record "
            "and its rows (the file of the same name under deepfake_face_rows' folder), then "
            "run `kedro run --pipelines=deepfake --nodes=deepfake.faces.extract_faces`: it "
            "extracts exactly those videos"
        )


def assign_folds(
    videos: pd.DataFrame,
    index: pd.DataFrame,
    faces: Mapping[str, Any],
    split: SplitParams,
    embedding: EmbeddingParams,
    person_cluster: PersonClusterParams,
    extraction: ExtractionParams,
    seed: int,
) -> pd.DataFrame:
    """The videos with their validation fold (fakes always with their original) and
    whether faces were found (videos without are scored with the prior, never dropped).

    Only ``person_cluster`` opens records (the REAL videos' crops, one at a time); every
    other strategy reads the face index alone."""
    split = typed(SplitParams, split)
    clusters = None
    loaders = record_loaders(faces, settings_key(extraction))
    _check_records(loaders, index["partition"].unique())
    if split.strategy == "person_cluster":
        with_faces = {p: loaders[p] for p in index["partition"].unique() if p in loaders}
        embedding = typed(EmbeddingParams, embedding)
        person_cluster = typed(PersonClusterParams, person_cluster)
        clusters = _person_clusters(videos, with_faces, embedding, person_cluster, seed)
    folds = splits.assign_video_folds(
        videos, split.strategy, split.n_folds, seed, person_clusters=clusters
    )
    table = videos.assign(fold=folds, has_faces=videos["partition"].isin(index["partition"]))
    if clusters is not None:
        family = splits.families(videos)
        table["person_cluster"] = family.map(clusters).to_numpy()
    return table


def split_diagnostics(folds: pd.DataFrame, deepfake_root: Path) -> dict:
    """Leakage the split leaves (share of validation videos whose actor is in training)
    and, for person clusters, their purity; from the sample's truth, diagnostics only.
    Videos without a truth entry are left out and counted (``videos_without_truth``), never
    a crash of the run."""
    actors = load_truth_actors(deepfake_root)
    if not actors:
        return {}
    known = folds["video"].astype(str).isin(list(actors))
    skipped = int((~known).sum())
    if skipped:
        log.warning(
            "split_diagnostics: %d of %d video(s) have no entry in a %s sidecar and are left "
            "out of the leakage and purity diagnostics, e.g. %s",
            skipped,
            len(folds),
            TRUTH_FILE,
            folds.loc[~known, "video"].head(3).tolist(),
        )
    values: dict[str, float] = {"videos_without_truth": skipped}
    folds = folds[known]
    if folds.empty:
        return as_metrics(values)
    leak = splits.leakage(folds, folds["fold"], actors)
    values.update(leakage_mean=leak["mean"], leakage_max=leak["max"])
    if "person_cluster" in folds:
        values["cluster_purity"] = splits.cluster_purity(
            folds["person_cluster"], folds["video"].map(actors)
        )
    return as_metrics(values)


def _no_held_out() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "partition": pd.Series(dtype=object),
            "video": pd.Series(dtype=object),
            "fold": pd.Series(dtype="int64"),
            "family": pd.Series(dtype=object),
        }
    )


def hold_out_family(
    folds: pd.DataFrame, deepfake_root: Path, diagnostics: DiagnosticsParams
) -> pd.DataFrame:
    """The fakes of ``deepfake.diagnostics.hold_out_family`` (leave-one-family-out, or
    several families out together): no fold model, stacker or calibration is fitted on
    them, and they are scored as unseen. Empty when the parameter is null, and, with a
    warning, when the data have no truth sidecar (real DFDC names no family) or no fake of
    those families: the run then trains on every video."""
    held_families = typed(DiagnosticsParams, diagnostics).held_families
    if not held_families:
        return _no_held_out()
    families = load_truth_families(deepfake_root)
    if not families:
        log.warning(
            "hold_out_family: no %s sidecar under %s (real DFDC names no manipulation "
            "family): nothing is held out, every video trains",
            TRUTH_FILE,
            deepfake_root,
        )
        return _no_held_out()
    fakes = folds[folds["label"] == "FAKE"]
    fakes = fakes.assign(family=fakes["partition"].map(families))
    held = fakes[fakes["family"].isin(held_families)]
    if held.empty:
        log.warning(
            "hold_out_family: no fake of family %s in the sample: nothing is held out",
            ", ".join(held_families),
        )
        return _no_held_out()
    log.info(
        "hold_out_family: %d of %d fake(s) are %s, left out of training and scored as unseen",
        len(held),
        len(fakes),
        ", ".join(held_families),
    )
    table = held.assign(fold=held["fold"].astype("int64"))
    return table[HELD_OUT_COLUMNS].reset_index(drop=True)


def _held(held_out: pd.DataFrame | None, table: pd.DataFrame) -> np.ndarray:
    """Which rows of ``table`` (by ``partition``) are held out."""
    if held_out is None or held_out.empty:
        return np.zeros(len(table), dtype=bool)
    return table["partition"].isin(held_out["partition"]).to_numpy()


def _trained_on_prior(folds: pd.DataFrame, held_out: pd.DataFrame | None) -> float:
    """The FAKE share of the videos the models were fitted on (none ``held_out``): what a
    video without a usable face is scored."""
    return scoring.training_prior(folds.loc[~_held(held_out, folds), "target"].astype(int))


# ---------------------------------------------------------------------------- models


def train_models(
    faces: Mapping[str, Any],
    index: pd.DataFrame,
    folds: pd.DataFrame,
    training: TrainingParams,
    runtime: RuntimeParams,
    extraction: ExtractionParams,
    seed: int,
    deterministic: bool,
    checkpoints: Path,
    held_out: pd.DataFrame | None = None,
) -> tuple[dict, pd.DataFrame, dict, dict]:
    """Every model x fold on the crops of the videos with faces, read lazily by the
    DataLoader workers, in ``runtime.distributed`` processes, each (model, fold) resumable
    from its checkpoint in ``checkpoints``: weights, per-epoch history (also as MLflow metric
    histories) and out-of-fold frame probabilities.

    The ``held_out`` fakes (leave-one-family-out) are in no fold's training or validation
    rows; each is then predicted by its own fold's models, which saw neither it nor its
    family, and joins the out-of-fold probabilities like any validation video."""
    key = settings_key(extraction)
    loaders = record_loaders(faces, key)
    trainable = folds.loc[folds["has_faces"], ["partition", "label", "fold"]]
    held = _held(held_out, trainable)
    if held.any():
        trainable = trainable[~held]
    states, history, oof = train_frame_models(
        loaders,
        index,
        trainable,
        training,
        runtime,
        seed,
        deterministic=deterministic,
        checkpoint_dir=checkpoints,
        data_key=key,
    )
    if held.any():
        unseen = folds.loc[folds["has_faces"]][held]
        for model, probs in _predict_held_out(loaders, index, unseen, states, training, runtime):
            oof.setdefault(model, {}).update(probs)
    curves = metric_curves(
        history.to_dict("records"),
        ("train_loss", "val_loss", "val_log_loss", "val_mask_iou"),
        name="{model}/fold{fold}/{metric}",
    )
    return states, history, oof, curves


def _predict_held_out(
    loaders: Mapping[str, Any],
    index: pd.DataFrame,
    videos: pd.DataFrame,
    states: Mapping[str, Any],
    training: TrainingParams,
    runtime: RuntimeParams,
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(model, partition -> frame probabilities) of ``videos`` (held out of training), each
    by the fold models of its own fold; a fold left untrained (``folds_to_train``) predicts
    none, as for its other videos."""
    for fold, part in videos.groupby("fold", sort=True):
        fold_states = {
            k: v for k, v in states.items() if (split := split_fold_key(k)) and split[1] == fold
        }
        if not fold_states:
            continue
        rows = index[index["partition"].isin(part["partition"])]
        yield from predict_frame_models(loaders, rows, fold_states, training, runtime).items()


# --------------------------------------------------------------------------- scoring


def predict_test_frames(
    faces: Mapping[str, Any],
    index: pd.DataFrame,
    test_videos: pd.DataFrame,
    models: Mapping[str, Any],
    training: TrainingParams,
    runtime: RuntimeParams,
    extraction: ExtractionParams,
) -> dict:
    """Per-crop FAKE probabilities of the test videos, streamed video by video."""
    loaders = record_loaders(faces, settings_key(extraction))
    test_index = index[index["partition"].isin(test_videos["partition"])]
    return predict_frame_models(loaders, test_index, models, training, runtime)


def score_videos(
    oof_frame_probs: Mapping[str, Mapping[str, np.ndarray]],
    test_frame_probs: Mapping[str, Mapping[str, np.ndarray]],
    folds: pd.DataFrame,
    test_videos: pd.DataFrame,
    video_score: VideoScoreParams,
    held_out: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One score per video and model (the rule is a parameter); a video without a usable
    face gets the training share of FAKE (of the videos not ``held_out``)."""
    video_score = typed(VideoScoreParams, video_score)
    prior = _trained_on_prior(folds, held_out)
    options = {k: v for k, v in video_score.items() if k != "rule"}

    def table(frame_probs: Mapping[str, Mapping[str, np.ndarray]], videos: pd.DataFrame):
        scores = videos.copy()
        for model, probs in frame_probs.items():
            per_video = scoring.score_videos(
                probs, list(videos["partition"]), video_score.rule, prior, **options
            )
            scores[f"score_{model}"] = per_video.to_numpy()
        return scores

    return table(oof_frame_probs, folds), table(test_frame_probs, test_videos)


def _features(
    frame_probs: Mapping[str, Mapping[str, np.ndarray]],
    videos: pd.DataFrame,
    index: pd.DataFrame,
) -> pd.DataFrame:
    """Stacking features of each video from the models' logit-averaged frame scores and
    the face index (confidences, face and sampled-frame counts)."""
    faces_of = dict(tuple(index.groupby("partition", sort=False)))
    rows = {}
    for partition in videos["partition"]:
        per_model = [probs[partition] for probs in frame_probs.values() if partition in probs]
        frame_scores = scoring.average_logits(per_model) if per_model else np.empty(0)
        faces = faces_of.get(partition)
        rows[partition] = stacking.video_features(
            frame_scores,
            faces["confidence"].to_numpy() if faces is not None else np.empty(0),
            len(faces) if faces is not None else 0,
            int(faces["sampled_frames"].iloc[0]) if faces is not None else 1,
        )
    return stacking.feature_table(rows)


def stack_videos(
    oof_frame_probs: Mapping[str, Mapping[str, np.ndarray]],
    test_frame_probs: Mapping[str, Mapping[str, np.ndarray]],
    folds: pd.DataFrame,
    test_videos: pd.DataFrame,
    index: pd.DataFrame,
    stacking_params: StackingParams,
    eps: float,
    seed: int,
    held_out: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict, str | None]:
    """LightGBM on per-video features, out of fold with the CNNs' folds, reported beside
    the plain mean of frame scores (the write-up found stacking did not pay); also the
    stacker fitted on every training video, as LightGBM's model text (None when off).

    No stacker is fitted on a ``held_out`` fake: each is scored by the stacker of its own
    fold, and the comparison with the mean leaves them out."""
    stacking_params = typed(StackingParams, stacking_params)
    if not stacking_params.enabled:
        empty = pd.DataFrame(columns=["partition", "stacked"])
        return empty, empty, {}, None
    held = _held(held_out, folds)
    y = folds["target"].astype(int).to_numpy()
    features = _features(oof_frame_probs, folds, index)
    train, y_fit, fold_fit = features, y, folds["fold"]
    if held.any():
        train, y_fit, fold_fit = features[~held], y[~held], fold_fit[~held]
    oof = stacking.stack_out_of_fold(train, y_fit, fold_fit, stacking_params.lgbm, seed)
    model = stacking.fit_stacker(train, y_fit, stacking_params.lgbm, seed)
    test = _features(test_frame_probs, test_videos, index)
    test_probs = stacking.predict_stacker(model, test) if len(test) else np.empty(0)
    prior = scoring.training_prior(y_fit)
    compared = stacking.compare_with_mean(y_fit, oof, train, prior, eps)
    if held.any():  # every video again, in the folds' order
        folds_of = folds["fold"].to_numpy()
        oof = _stack_held_out(features, y, folds_of, held, oof, stacking_params.lgbm, seed)
        train = features
    return (
        pd.DataFrame({"partition": train.index, "stacked": oof}),
        pd.DataFrame({"partition": test.index, "stacked": test_probs}),
        as_metrics(compared),
        model.model_to_string(),
    )


def _stack_held_out(
    features: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    held: np.ndarray,
    fitted_oof: np.ndarray,
    lgbm: Mapping[str, Any],
    seed: int,
) -> np.ndarray:
    """Out-of-fold stacked probabilities of every row: ``fitted_oof`` for the rows not
    held out; a held-out row by a stacker fitted on the other folds' rows that are not held
    out (the same fit that scored its fold's other videos)."""
    out = np.full(len(features), np.nan)
    out[~held] = fitted_oof
    for fold in np.unique(folds[held]):
        fit, rows = ~held & (folds != fold), held & (folds == fold)
        model = stacking.fit_stacker(features[fit], y[fit], lgbm, seed)
        out[rows] = stacking.predict_stacker(model, features[rows])
    return out


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
    stacking_params: StackingParams,
    calibration: CalibrationParams,
    held_out: pd.DataFrame | None = None,
    eps: float = 1e-15,
) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    """Average the models' logits (or take the stacker's score, with
    ``stacking.replace_mean``), then scale the logit by ``c`` < 1 and shift it by ``b``
    (each fixed, or fitted on the out-of-fold scores) and clip: confident mistakes cost the
    most log loss, and the shift restores the prior that class-balanced training hid.
    Also the calibration as fitted (``factor, shift, low, high``), for the scorer.

    The calibration is fitted (and its before/after log loss measured) without the
    ``held_out`` fakes; they are calibrated with it like every other video."""
    stacking_params = typed(StackingParams, stacking_params)
    calibration = typed(CalibrationParams, calibration)
    if stacking_params.enabled and stacking_params.replace_mean:
        oof_scores = _scores_from_stacker(oof_scores, oof_stacked)
        test_scores = _scores_from_stacker(test_scores, test_stacked)
    models = [c for c in oof_scores.columns if c.startswith("score_")]
    y = oof_scores["target"].astype(int).to_numpy()
    oof_raw = scoring.average_logits([oof_scores[m] for m in models])
    fit = ~_held(held_out, oof_scores)
    y, oof_raw_fit = (y, oof_raw) if fit.all() else (y[fit], oof_raw[fit])
    target_shift = scoring.prior_shift(scoring.training_prior(y), calibration.target_prior)
    factor, shift = scoring.fit_calibration(
        y,
        oof_raw_fit,
        factor=calibration.factor,
        shift=calibration.shift,
        bounds=tuple(calibration.scale_bounds),
    )
    clip = calibration.clip_low, calibration.clip_high
    before_after = scoring.log_loss_before_after(y, oof_raw_fit, factor, *clip, eps, shift=shift)
    oof = oof_scores.assign(
        ensemble=oof_raw, prob=scoring.calibrate(oof_raw, factor, *clip, shift=shift)
    )
    test_raw = (
        scoring.average_logits([test_scores[m] for m in models])
        if len(test_scores)
        else np.empty(0)
    )
    # the test videos at the deployment prior; out of fold, the training videos' own
    test = test_scores.assign(
        ensemble=test_raw,
        prob=scoring.calibrate(test_raw, factor, *clip, shift=shift + target_shift),
        prob_training_prior=scoring.calibrate(test_raw, factor, *clip, shift=shift),
    )
    fitted = {
        "factor": factor,
        "shift": shift,
        "low": clip[0],
        "high": clip[1],
        "target_shift": target_shift,
    }
    return oof, test, as_metrics({**before_after, "target_shift": target_shift}), fitted


def package_scorer(
    frame_models: Mapping[str, Any],
    folds: pd.DataFrame,
    stacker: str | None,
    calibration: Mapping[str, float],
    training: TrainingParams,
    extraction: ExtractionParams,
    video_score: VideoScoreParams,
    stacking_params: StackingParams,
    runtime: RuntimeParams,
    held_out: pd.DataFrame | None = None,
) -> dict:
    """What scores a new video beside the fold models' weights (``deepfake_scorer``): the
    settings, the training prior (of the videos not ``held_out``), the fitted calibration,
    the precision the test videos were predicted at and, with ``replace_mean``, the
    stacker; the ``deepfake_inference`` pipeline and the MLflow model read it."""
    stacking_params = typed(StackingParams, stacking_params)
    return inference.build_scorer(
        training=training,
        extraction=extraction,
        video_score=video_score,
        prior=_trained_on_prior(folds, held_out),
        calibration=calibration,
        stacker=stacker,
        replace_mean=stacking_params.enabled and stacking_params.replace_mean,
        weights=inference.weights_digest(frame_models),
        runtime=runtime,
    )


# ---------------------------------------------------------------------------- submission


def write_submission(test: pd.DataFrame) -> pd.DataFrame:
    """The test videos' calibrated probabilities in DFDC's format (``filename, label``)."""
    return submission_frame(list(test["video"]), test["prob"].to_numpy())


# ---------------------------------------------------------------------------- report


def evaluate(
    oof: pd.DataFrame,
    test: pd.DataFrame,
    eps: float,
    held_out: pd.DataFrame | None,
    calibration: CalibrationParams,
) -> tuple[dict, pd.DataFrame]:
    """Video-level log loss (the DFDC metric), AUC and accuracy out of fold and on the test
    videos (when labelled), beside the constant-prior log loss; per-folder log loss.

    On the test videos the constant answers the FAKE share of the videos trained on (none
    ``held_out``; ``test/prior_log_loss``) and, with ``calibration.target_prior``, that
    prior itself (``test/target_prior_log_loss``): the bar of a model shifted to it."""
    y = oof["target"].astype(int).to_numpy()
    values = {f"oof/{k}": v for k, v in video_metrics(y, oof["prob"], eps).items()}
    values["oof/prior_log_loss"] = constant_prior_log_loss(y, y, eps)
    if len(test) and test["target"].notna().all():
        y_test = test["target"].astype(int).to_numpy()
        scored = video_metrics(y_test, test["prob"], eps)
        values.update({f"test/{k}": v for k, v in scored.items()})
        prior = _trained_on_prior(oof, held_out)
        values["test/prior_log_loss"] = constant_log_loss(y_test, prior, eps)
        target_prior = typed(CalibrationParams, calibration).target_prior
        if target_prior is not None:
            values["test/target_prior_log_loss"] = constant_log_loss(y_test, target_prior, eps)
        if "prob_training_prior" in test:  # the same scores before the deployment prior shift
            values["test/log_loss_training_prior"] = scoring.binary_log_loss(
                y_test, test["prob_training_prior"].to_numpy(), eps
            )
    return as_metrics(values), per_folder_log_loss(oof, eps)


def _family_values(table: pd.DataFrame) -> dict[str, float]:
    """The metrics of :func:`family_metrics`' table: ``<family>/...`` of each family,
    ``in_distribution/...`` and ``held_out/...`` (the held-out families pooled), with the
    constant prior's log loss beside every figure of unseen fakes and the in-distribution
    one; an undefined figure (AUC without both classes) is left out."""
    values: dict[str, float] = {}
    for row in table.to_dict("records"):
        name = row["family"]
        keys = ["auc", "log_loss", "n_fakes"]
        keys += ["prior_log_loss"] if row["held_out"] or name == IN_DISTRIBUTION else []
        for key in keys:
            if np.isfinite(row[key]):
                values[f"{name}/{key}"] = float(row[key])
    return values


def family_metrics(
    oof: pd.DataFrame, deepfake_root: Path, held_out: pd.DataFrame, eps: float
) -> tuple[dict, pd.DataFrame]:
    """Out-of-fold figures per manipulation family of the sample's truth: AUC and log loss
    of {every REAL video} against {that family's fakes}, their count, and the same over
    every video not held out (``in_distribution``, with the constant prior's log loss); in a
    leave-one-family-out run, ``held_out/...`` of the held-out families' fakes pooled (never
    trained on), with the prior's log loss on the same videos: the bar the detector must
    beat.

    Real DFDC names no family: no truth sidecar, nothing logged and an empty table. Videos
    without a truth entry are left out and counted (``videos_without_truth``)."""
    families = load_truth_families(deepfake_root)
    if not families:
        return {}, pd.DataFrame(columns=FAMILY_COLUMNS)
    known = oof["partition"].isin(list(families)).to_numpy()
    skipped = int((~known).sum())
    if skipped:
        log.warning(
            "family_metrics: %d of %d video(s) have no entry in a %s sidecar and are left "
            "out of the per-family figures, e.g. %s",
            skipped,
            len(oof),
            TRUTH_FILE,
            oof.loc[~known, "video"].head(3).tolist(),
        )
    scored = oof[known]
    scored = scored.assign(family=scored["partition"].map(families))
    held = sorted(held_out["family"].dropna().unique()) if len(held_out) else []
    table = family_table(scored, eps, held, FAMILIES)
    values = {
        **_family_values(table),
        "n_reals": float((scored["target"].astype(int) == 0).sum()),
        "videos_without_truth": float(skipped),
    }
    return as_metrics(values), table


def plot_reliability(oof: pd.DataFrame, n_bins: int) -> Figure:
    return reliability_diagram_figure(oof["target"].astype(int), oof["prob"], n_bins=n_bins)


def plot_roc(oof: pd.DataFrame) -> Figure:
    return roc_figure(oof["target"].astype(int), oof["prob"])


def plot_face_grid(
    faces: Mapping[str, Any],
    oof: pd.DataFrame,
    extraction: ExtractionParams,
    n_videos: int,
) -> Figure:
    """A face crop of each of ``n_videos`` videos (half FAKE) with its manipulation mask
    tinted and the video's out-of-fold score; only the shown videos' records are opened."""
    loaders = record_loaders(faces, settings_key(extraction))
    shown = (
        oof[oof["has_faces"]].sort_values(["label", "video"]).groupby("label").head(n_videos // 2)
    )
    crops, masks, titles, scores = [], [], [], []
    for row in shown.itertuples():
        record = loaders[row.partition]()
        middle = len(record["crops"]) // 2
        crops.append(record["crops"][middle])
        masks.append(None if record["masks"] is None else record["masks"][middle])
        scores.append(row.prob)
        titles.append(f"{row.label} {row.video}")
    return face_grid_figure(crops, masks, scores, titles)


def measure_detection_recall(
    index: pd.DataFrame, deepfake_root: Path, diagnostics: DiagnosticsParams
) -> dict:
    """MTCNN recall on the sampled frames of REAL videos against the sample's truth boxes
    (diagnostics: real DFDC has no truth, and then nothing is logged)."""
    iou = typed(DiagnosticsParams, diagnostics).iou
    truth = load_truth_boxes(deepfake_root)
    real = index[(index["label"] == "REAL") & index["partition"].isin(list(truth))]
    if real.empty:
        return {}
    return as_metrics({"mtcnn_recall_iou50": detection_recall(real, truth, iou)})


# ---------------------------------------------------------------- deepfake_inference


def list_videos_to_score(settings: InferenceParams) -> pd.DataFrame:
    """Every ``*.mp4`` of ``deepfake_inference.videos_folder`` (``video``, ``path``)."""
    return inference.video_table(typed(InferenceParams, settings).videos_folder)


def _checked_ensemble(
    frame_models: Mapping[str, Any], scorer: Mapping[str, Any], settings: Mapping[str, Any]
) -> dict:
    scorer = inference.scoring_scorer(scorer, settings)
    if inference.weights_digest(frame_models) != scorer["weights"]:
        raise ValueError(
            "deepfake_inference_frame_models and deepfake_inference_scorer come from different "
            "training runs (the scorer names other weights); fix: load both from one run "
            "(the latest local versions, or --params=deepfake_inference.model_run_id=<run id>)"
        )
    return scorer


def score_new_videos(
    videos: pd.DataFrame,
    frame_models: Mapping[str, Any],
    scorer: Mapping[str, Any],
    stored: Mapping[str, Any],
    settings: InferenceParams,
    dask: Mapping[str, Any],
) -> Iterator[tuple[dict[str, dict], dict]]:
    """Score the videos without a current result for this ensemble, saving each task's
    results as it finishes (a generator node), so a re-run after a crash or a lost worker
    scores only what is missing, and a second run nothing.

    Each yield: the new results (``<scorer digest>/<video stem>`` -> result; ``failed``
    ones are not kept, so the next run tries them again) and the run's timing so far."""
    s = typed(InferenceParams, settings)
    scorer = _checked_ensemble(frame_models, scorer, s)
    digest = inference.scorer_digest(scorer)
    table = inference.video_table(videos)
    todo, stale = inference.pending_videos(table, stored, digest)
    if stale:
        log.warning(
            "score_new_videos: %d stored result(s) are not current and are scored again:%s",
            len(stale),
            _listed(stale),
        )
    device, workers, _ = inference.scoring_workers(s.device, dask)
    log.info(
        "score_new_videos: %d of %d video(s) to score with ensemble %s (%d already scored) "
        "on %d %s worker(s)",
        len(todo),
        len(table),
        digest,
        len(table) - len(todo),
        workers,
        device,
    )
    started, scored, failed = time.perf_counter(), 0, {}

    def timing() -> dict:
        return {
            "scorer": digest,
            "wall_seconds": time.perf_counter() - started,
            "scored_this_run": scored,
            "failed_this_run": len(failed),
            "workers": workers,
            "device": device,
            "failed": dict(failed),
        }

    for results in inference.stream_scores(todo, frame_models, scorer, s, dask):
        kept = {}
        for result in results:
            if result["status"] == "failed":
                failed[result["video"]] = result["reason"]
            else:
                kept[inference.result_partition(digest, result["video"])] = result
        scored += len(kept)
        yield kept, timing()
    if todo.empty:
        yield {}, timing()
    if failed:
        log.warning(
            "score_new_videos: %d video(s) could not be scored this run (given the fallback in "
            "the submission; a re-run tries them again):%s",
            len(failed),
            _listed(failed),
        )


def write_inference_submission(
    videos: pd.DataFrame,
    stored: Mapping[str, Any],
    timing: Mapping[str, Any],
    scorer: Mapping[str, Any],
    settings: InferenceParams,
) -> tuple[pd.DataFrame, pd.DataFrame, dict, pd.DataFrame]:
    """The submission (one row per listed video, in DFDC's ``filename, label``), the
    per-video report (status, reason, timings), the seconds per video by stage with the
    projected hours (as MLflow metrics) and the cost table of the configured instances."""
    s = typed(InferenceParams, settings)
    scorer = inference.scoring_scorer(scorer, s)
    digest = inference.scorer_digest(scorer)
    table = inference.video_table(videos)
    results = {}
    for video in table["video"]:
        partition = inference.result_partition(digest, video)
        if partition in stored:
            results[video] = stored[partition]()
        elif video in timing.get("failed", {}):
            results[video] = {
                "video": video,
                "status": "failed",
                "prob": None,
                "reason": timing["failed"][video],
            }
    submission, report = submission_table(table, results, scorer, s.fallback)
    fallback = report[report["status"] != "scored"]
    if len(fallback):
        log.warning(
            "write_inference_submission: %d of %d video(s) got the fallback probability "
            "(reasons in deepfake_inference_report):%s",
            len(fallback),
            len(report),
            _listed(dict(zip(fallback["video"], fallback["reason"].astype(str), strict=True))),
        )
    summary = inference.timing_summary(
        report,
        timing["wall_seconds"],
        timing["scored_this_run"],
        timing["workers"],
        s.projected_videos,
    )
    here = f"this machine ({timing['workers']} {timing['device']} worker(s))"
    costs = inference.cost_table(s.instances, summary["videos_per_hour"], s.projected_videos, here)
    log.info(
        "write_inference_submission: %d video(s), %.3f s a video (decode %.3f, detect %.3f, "
        "model %.3f), %.1f h for %d videos",
        len(report),
        summary["wall_seconds_per_video"],
        summary["decode_seconds_per_video"],
        summary["detect_seconds_per_video"],
        summary["model_seconds_per_video"],
        summary["projected_hours"],
        s.projected_videos,
    )
    return submission, report, as_metrics(summary), costs


def check_scoring_budget(
    report: pd.DataFrame, timing: Mapping[str, Any], settings: InferenceParams
) -> None:
    """Warn, or fail the run (``budget_action: fail``), when this run's seconds per video
    exceed ``budget_seconds_per_video``; the submission is saved either way."""
    s = typed(InferenceParams, settings)
    summary = inference.timing_summary(
        report, timing["wall_seconds"], timing["scored_this_run"], timing["workers"], 1
    )
    verdict = inference.budget_verdict(
        summary["wall_seconds_per_video"], s.budget_seconds_per_video
    )
    if verdict and s.budget_action == "fail":
        raise RuntimeError(f"{verdict}; the submission was saved")
    if verdict:
        log.warning("check_scoring_budget: %s", verdict)


def score_video_files(
    videos: Any,
    frame_models: Mapping[str, Any],
    scorer: Mapping[str, Any],
    settings: InferenceParams,
    dask: Mapping[str, Any],
) -> pd.DataFrame:
    """The MLflow model's one node: ``filename, label, status, reason`` of each video of
    ``videos`` (paths, or a table with a ``path`` column), nothing stored. Scored in the
    calling process (no cluster started per ``predict``), or on the Dask cluster at
    ``runtime.dask.scheduler_address`` when the run set one."""
    s = typed(InferenceParams, settings)
    scorer = _checked_ensemble(frame_models, scorer, s)
    table = inference.video_table(videos)
    cluster = {"n_workers": 0, "scheduler_address": dask.get("scheduler_address")}
    results: dict[str, dict] = {}
    for chunk in inference.stream_scores(table, frame_models, scorer, s, cluster, progress=False):
        results.update((r["video"], r) for r in chunk)
    submission, report = submission_table(table, results, scorer, s.fallback)
    return submission.assign(status=report["status"], reason=report["reason"])
