"""Nodes of the uda pipeline: thin wrappers over data.py, train.py, inference.py,
evaluate.py and submission.py.

Splits travel as index tables (ids, paths, sizes), never as pixels: the torch datasets
read images in DataLoader workers, predictions stream into a folder of per-image class
maps, scoring and the submission read those maps one at a time.

Metrics leave as ``{name: {"value", "step"}}`` (or lists of them for curves) for
kedro-mlflow's metrics dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from podium.core.ddp import resolve_distributed
from podium.core.device import resolve_runtime
from podium.core.distributed import dask_client
from podium.core.params import RuntimeParams
from podium.layouts.uda import NUM_CLASSES, SPLITS, index_uda, read_image, read_label
from podium.pipelines.tracking import Metrics, as_metrics, metric_curves
from podium.pipelines.uda import data as data_module
from podium.pipelines.uda import evaluate
from podium.pipelines.uda.data import PredictDataset
from podium.pipelines.uda.inference import inference_settings, load_members, stream_class_maps
from podium.pipelines.uda.params import (
    DataParams,
    EvaluationParams,
    InferenceParams,
    ModelsParams,
    TrainingParams,
)
from podium.pipelines.uda.submission import (
    EMPTY,
    submission_groups,
    submission_rows,
    to_submission_size,
)
from podium.pipelines.uda.train import train_members

log = logging.getLogger(__name__)


def index_data(raw_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every split's rows (``split, id, img_path, gt_path``) and the submission's ids."""
    frames = index_uda(raw_root)
    template = frames.pop("sample_submission", None)
    index = pd.concat(
        [frame.assign(split=split) for split, frame in frames.items()], ignore_index=True
    )
    if "gt_path" not in index:
        index["gt_path"] = None
    index = index[["split", "id", "img_path", "gt_path"]]
    if template is None:  # the competition's order: every class of an image, image by image
        tests = index.loc[index["split"] == "test", "id"]
        template = pd.DataFrame(
            {"id": [f"{t}_class_{k}" for t in tests for k in range(NUM_CLASSES)]}
        )
    return index, template[["id"]]


def _split_sizes(data: DataParams) -> dict[str, tuple[int, int]]:
    """The working size (h, w) of every split: source splits at ``source_size``."""
    return {split: data.source_size if "source" in split else data.target_size for split in SPLITS}


def _split(table: pd.DataFrame, split: str) -> pd.DataFrame:
    return table[table["split"] == split].reset_index(drop=True)


def inspect_images(
    index: pd.DataFrame, data: DataParams, dask: Mapping[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every image and label read once, image by image (over Dask with
    ``runtime.dask.n_workers`` > 0 or a scheduler address): the image table with each
    image's size, the source images' class pixels (what rare-class sampling draws from)
    and the images that could not be read, with their reason.

    A label of the wrong size or with unknown class values stops the run naming the file,
    its csv entry and the fix; an undecodable image is skipped, logged and reported.
    """
    sizes = _split_sizes(DataParams.of(data))
    address, n_workers = dask.get("scheduler_address"), int(dask.get("n_workers", 0) or 0)
    if address or n_workers > 0:
        with dask_client(
            address, n_workers=n_workers, threads_per_worker=dask.get("threads_per_worker", 1)
        ) as client:
            images, counts, bad = data_module.inspect_images(index, sizes, client)
    else:
        images, counts, bad = data_module.inspect_images(index, sizes, None)
    for row in bad.itertuples(index=False):
        log.warning("uda: skipped %s image %s (%s): %s", row.split, row.id, row.path, row.reason)
    if len(bad):
        log.warning(
            "uda: %d unreadable image(s) skipped, listed in the bad-images report", len(bad)
        )
    source_counts = _split(counts, "train_source").drop(columns="split")
    return images, source_counts, bad


def train_models(
    images: pd.DataFrame,
    class_pixels: pd.DataFrame,
    data: DataParams,
    models: ModelsParams,
    training: TrainingParams,
    seed: int,
    deterministic: bool,
    runtime: RuntimeParams,
    checkpoints: Path,
) -> tuple[dict[str, torch.Tensor], Metrics]:
    """Every member of ``uda.models`` trained in the configured regime, in
    ``runtime.distributed``'s processes, each resumable from its checkpoints in
    ``checkpoints`` (``uda.training.resume_from``): weights keyed
    ``<member>/{student,ema}/<tensor>`` and per-epoch curves keyed by member, stepped by
    iteration."""
    data, training = DataParams.of(data), TrainingParams.of(training)
    resolved = resolve_runtime(runtime)
    source, target = _split(images, "train_source"), _split(images, "train_target")
    results = train_members(
        source,
        target,
        class_pixels.set_index("id").loc[source["id"]].reset_index(),
        ModelsParams.of(models),
        training,
        seed=seed,
        deterministic=deterministic,
        runtime=resolved,
        sizes=(data.source_size, data.target_size),
        distributed=resolve_distributed(runtime.get("distributed"), device=resolved.device),
        checkpoints=checkpoints,
        background=data.background,
    )
    weights: dict[str, torch.Tensor] = {}
    curves: Metrics = {}
    for name, result in results.items():
        for key in ("student", "ema"):
            weights.update({f"{name}/{key}/{t}": v for t, v in result[key].items()})
        curves.update(
            metric_curves(
                result["history"],
                sorted({m for row in result["history"] for m in row} - {"epoch"}),
                name=f"{name}/{{metric}}",
                steps_per_unit=training.iterations_per_epoch,  # the iteration an epoch ends
            )
        )
        curves[f"{name}/train_seconds"] = [{"step": 0, "value": float(result["seconds"])}]
    return weights, curves


def predict_split(
    weights: dict[str, torch.Tensor],
    images: pd.DataFrame,
    split: str,
    data: DataParams,
    models: ModelsParams,
    inference: InferenceParams,
    runtime: RuntimeParams,
) -> Iterator[tuple[str, np.ndarray]]:
    """``(image id, class map (H, W) uint8 at the image's own size)`` of every image of
    ``split``, produced one image at a time for the class-map dataset to write as they come
    (the parameters are checked now, the images are predicted while it saves)."""
    data, models = DataParams.of(data), ModelsParams.of(models)
    settings = inference_settings(inference, list(models))
    members = load_members(weights, models, settings["weights"], data.background)
    frame = _split(images, split)
    size = _split_sizes(data)[split]
    resolved = resolve_runtime(runtime)

    def stream() -> Iterator[tuple[str, np.ndarray]]:
        dataset = PredictDataset(frame, size)
        ids = frame["id"].tolist()
        for index, class_map in stream_class_maps(members, dataset, settings, resolved):
            yield ids[index], class_map
            del class_map  # written by now: hold no map while the next one is predicted

    return stream()


def _predictor(split: str):
    def predict(
        weights: dict[str, torch.Tensor],
        images: pd.DataFrame,
        data: DataParams,
        models: ModelsParams,
        inference: InferenceParams,
        runtime: RuntimeParams,
    ) -> Iterator[tuple[str, np.ndarray]]:
        return predict_split(weights, images, split, data, models, inference, runtime)

    predict.__name__ = predict.__qualname__ = f"predict_{split}"
    predict.__doc__ = f"Class maps of the {split} images, streamed (see predict_split)."
    return predict


predict_val_source = _predictor("val_source")
predict_val_target = _predictor("val_target")
predict_test = _predictor("test")


def _labeled_pairs(frame: pd.DataFrame, predictions: Mapping[str, Callable[[], np.ndarray]]):
    for row in frame.itertuples(index=False):
        if row.id not in predictions:
            raise ValueError(
                f"no prediction for {row.split} image {row.id}; fix: rerun its prediction "
                f"node, `kedro run --pipelines=uda --nodes=uda.scoring.predict_{row.split}`"
            )
        prediction = predictions[row.id]()
        yield prediction, read_label(row.gt_path, prediction.shape)


def score_predictions(
    images: pd.DataFrame,
    source_predictions: Mapping[str, Callable[[], np.ndarray]],
    target_predictions: Mapping[str, Callable[[], np.ndarray]],
    evaluation: EvaluationParams | None = None,
) -> pd.DataFrame:
    """Per-class IoU on each labeled validation split (target only where it exists), from
    a confusion matrix accumulated image by image against the labels at full size.

    ``uda.evaluation.background``: ``count`` (the competition) scores each class's mask
    against its truth over every pixel, so a background pixel given a class counts against
    that class; ``ignore`` (podium before) leaves background pixels unscored. A labelled
    pixel predicted background counts against its class either way."""
    scoring = EvaluationParams.of(evaluation or {}).background
    tables = []
    for split, predictions in (
        ("target", target_predictions),
        ("source", source_predictions),
    ):
        frame = _split(images, f"val_{split}")
        if len(frame):
            table = evaluate.streamed_class_iou(_labeled_pairs(frame, predictions), scoring)
            tables.append(table.assign(split=split))
    return pd.concat(tables, ignore_index=True)[["split", "class", "iou", "pixels"]]


def iou_metrics(table: pd.DataFrame) -> Metrics:
    """``target_miou``, ``source_miou`` and ``<split>_iou/<class>``."""
    metrics: dict[str, float] = {}
    for split, rows in table.groupby("split", sort=False):
        metrics.update(evaluate.iou_metrics(rows, str(split)))
    return as_metrics(metrics)


def plot_iou(table: pd.DataFrame) -> Figure:
    tables = {str(s): rows for s, rows in table.groupby("split", sort=False)}
    return evaluate.iou_figure(tables, "Per-class IoU on the validation splits")


def plot_target_overlays(
    images: pd.DataFrame,
    predictions: Mapping[str, Callable[[], np.ndarray]],
    evaluation: EvaluationParams,
) -> Figure:
    """The first ``uda.evaluation.overlays`` target validation images with the prediction
    and the truth in class colours (only those images are read)."""
    n = EvaluationParams.of(evaluation).overlays
    frame = _split(images, "val_target")
    frame = frame[frame["id"].isin(list(predictions))].head(n)
    shown = [read_image(path) for path in frame["img_path"]]
    maps = [predictions[i]() for i in frame["id"]]
    labels = [read_label(p, m.shape) for p, m in zip(frame["gt_path"], maps, strict=True)]
    return evaluate.overlay_figure(
        shown, maps, labels if len(frame) else None, frame["id"].tolist(), n, "Target validation"
    )


def write_submission(
    test_predictions: Mapping[str, Callable[[], np.ndarray]],
    template: pd.DataFrame,
    bad_images: pd.DataFrame,
) -> Iterator[pd.DataFrame]:
    """``id, mask_rle`` in ``sample_submission.csv``'s order, masks at the submission size,
    as chunks of rows built one test image at a time for the csv dataset to append.

    A test image that could not be read (in the bad-images report) gets empty masks
    (``-1``) rather than no rows; a template id with neither stops the run now."""
    unreadable = set(bad_images.loc[bad_images["split"] == "test", "id"])
    groups = submission_groups(template["id"].tolist(), set(test_predictions) | unreadable)

    def chunks() -> Iterator[pd.DataFrame]:
        for image_id, rows in groups:
            if image_id in unreadable and image_id not in test_predictions:
                yield pd.DataFrame({"id": [r for r, _ in rows], "mask_rle": EMPTY})
                continue
            yield submission_rows(rows, to_submission_size(test_predictions[image_id]()))

    return chunks()


def submission_metrics(test_predictions: Mapping[str, Callable[[], np.ndarray]]) -> Metrics:
    """``labelled_share`` (and its ``_min``): the share of a test image's pixels at the
    submission size that lie in one of its 12 class masks, averaged over the test images
    (1: no pixel left as background, as podium's earlier runs). Read from the class maps the
    masks are encoded from, one at a time."""
    shares = []
    for image_id in sorted(test_predictions):
        resized = to_submission_size(test_predictions[image_id]())
        shares.append(float((resized < NUM_CLASSES).mean()))
    if not shares:
        return as_metrics({})
    return as_metrics({"labelled_share": float(np.mean(shares)), "labelled_share_min": min(shares)})
