"""Nodes of the uda pipeline: thin wrappers over data.py, train.py, inference.py,
evaluate.py and submission.py.

Metrics leave as ``{name: {"value", "step"}}`` (or lists of them for curves) for
kedro-mlflow's metrics dataset.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from podium.core.config import ParameterError, check_int, check_keys, check_size
from podium.core.device import resolve_runtime
from podium.core.seeding import seed_everything
from podium.layouts.uda import NUM_CLASSES, SUBMISSION_SIZE, index_uda
from podium.pipelines.tracking import Metrics, as_metrics
from podium.pipelines.uda import evaluate
from podium.pipelines.uda.data import Arrays, class_pixel_counts, load_split
from podium.pipelines.uda.inference import check_inference, load_members, predict_class_maps
from podium.pipelines.uda.network import check_model_spec
from podium.pipelines.uda.submission import submission_table
from podium.pipelines.uda.train import check_training, train_network

DATA_KEYS = ("source_size", "target_size")


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


def _size(data: Mapping[str, Any], key: str) -> tuple[int, int]:
    check_keys("uda.data", data, DATA_KEYS, required=DATA_KEYS)
    return check_size(f"uda.data.{key}", data[key], minimum=8)


def _split(index: pd.DataFrame, split: str) -> pd.DataFrame:
    return index[index["split"] == split].reset_index(drop=True)


def load_source_training(index: pd.DataFrame, data: Mapping[str, Any]) -> Arrays:
    return load_split(
        _split(index, "train_source"),
        _size(data, "source_size"),
        labeled=True,
        keep_original_labels=False,
    )


def load_target_training(index: pd.DataFrame, data: Mapping[str, Any]) -> Arrays:
    return load_split(
        _split(index, "train_target"),
        _size(data, "target_size"),
        labeled=False,
        keep_original_labels=False,
    )


def load_source_validation(index: pd.DataFrame, data: Mapping[str, Any]) -> Arrays:
    return load_split(
        _split(index, "val_source"),
        _size(data, "source_size"),
        labeled=True,
        keep_original_labels=True,
    )


def load_target_validation(index: pd.DataFrame, data: Mapping[str, Any]) -> Arrays:
    """EVALUATION ONLY: the sample's labeled fisheye split (empty on the real data)."""
    return load_split(
        _split(index, "val_target"),
        _size(data, "target_size"),
        labeled=True,
        keep_original_labels=True,
    )


def load_test(index: pd.DataFrame, data: Mapping[str, Any]) -> Arrays:
    return load_split(
        _split(index, "test"), _size(data, "target_size"), labeled=False, keep_original_labels=False
    )


def count_source_classes(source: Arrays) -> pd.DataFrame:
    """Pixels per class per source image: what rare-class sampling draws from."""
    return class_pixel_counts(source["labels"], source["ids"])


def _check_models(models: Mapping[str, Any]) -> dict[str, dict]:
    if not isinstance(models, Mapping) or not models:
        raise ParameterError("uda.models", f"expected {{name: model block}}, got {models!r}")
    return {name: check_model_spec(spec, f"uda.models.{name}") for name, spec in models.items()}


def train_models(
    source: Arrays,
    target: Arrays,
    class_pixels: pd.DataFrame,
    models: Mapping[str, Any],
    training: Mapping[str, Any],
    seed: int,
    deterministic: bool,
    runtime: Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], Metrics]:
    """Every member of ``uda.models`` trained in the configured regime: weights keyed
    ``<member>/{student,ema}/<tensor>`` and per-iteration curves keyed by member."""
    specs = _check_models(models)
    check_training(training)
    resolved = resolve_runtime(runtime)
    weights: dict[str, torch.Tensor] = {}
    curves: Metrics = {}
    for k, (name, spec) in enumerate(specs.items()):
        seed_everything(seed + k, deterministic=deterministic)
        started = time.perf_counter()
        result = train_network(
            spec, f"uda.models.{name}", source, target, class_pixels, training, seed + k, resolved
        )
        seconds = time.perf_counter() - started
        for state, key in ((result.student, "student"), (result.teacher, "ema")):
            weights.update({f"{name}/{key}/{t}": v for t, v in state.items()})
        for metric in sorted({m for row in result.history for m in row} - {"iteration"}):
            curves[f"{name}/{metric}"] = [
                {"step": int(row["iteration"]), "value": float(row[metric])}
                for row in result.history
                if metric in row
            ]
        curves[f"{name}/train_seconds"] = [{"step": 0, "value": seconds}]
    return weights, curves


def predict_split(
    weights: dict[str, torch.Tensor],
    arrays: Arrays,
    models: Mapping[str, Any],
    inference: Mapping[str, Any],
    runtime: Mapping[str, Any],
) -> dict[str, Any]:
    """Class maps (N, H, W) uint8 at the images' original size, with their ids."""
    specs = _check_models(models)
    settings = check_inference(inference, list(specs))
    members = load_members(weights, specs, settings["weights"])
    if len(arrays["images"]) == 0:
        return {"ids": [], "class_maps": np.zeros((0, *arrays["original_size"]), np.uint8)}
    maps = predict_class_maps(
        members, arrays["images"], arrays["original_size"], settings, resolve_runtime(runtime)
    )
    return {"ids": list(arrays["ids"]), "class_maps": maps}


def score_predictions(
    source: Arrays, source_predictions: dict, target: Arrays, target_predictions: dict
) -> pd.DataFrame:
    """Per-class IoU on each labeled validation split (target only where it exists)."""
    tables = []
    for split, arrays, predictions in (
        ("target", target, target_predictions),
        ("source", source, source_predictions),
    ):
        if len(arrays["ids"]):
            table = evaluate.class_iou(predictions["class_maps"], arrays["original_labels"])
            tables.append(table.assign(split=split))
    return pd.concat(tables, ignore_index=True)[["split", "class", "iou", "pixels"]]


def iou_metrics(table: pd.DataFrame) -> Metrics:
    """``target_miou``, ``source_miou`` and ``<split>_iou.<class>``."""
    metrics: dict[str, float] = {}
    for split, rows in table.groupby("split", sort=False):
        metrics.update(evaluate.iou_metrics(rows, str(split)))
    return as_metrics(metrics)


def plot_iou(table: pd.DataFrame) -> Figure:
    tables = {str(s): rows for s, rows in table.groupby("split", sort=False)}
    return evaluate.iou_figure(tables, "Per-class IoU on the validation splits")


def plot_target_overlays(
    target: Arrays, predictions: dict, evaluation: Mapping[str, Any]
) -> Figure:
    """Target validation images with the prediction and the truth in class colours."""
    check_keys("uda.evaluation", evaluation, ("overlays",), required=("overlays",))
    n = check_int("uda.evaluation.overlays", evaluation["overlays"], low=1)
    labels = target.get("original_labels")
    return evaluate.overlay_figure(
        target["images"],
        predictions["class_maps"],
        labels,
        predictions["ids"],
        n,
        "Target validation",
    )


def write_submission(test_predictions: dict, template: pd.DataFrame) -> pd.DataFrame:
    """``id, mask_rle`` in ``sample_submission.csv``'s order, masks at the submission size."""
    width, height = SUBMISSION_SIZE
    maps = [
        np.asarray(m)[
            (np.arange(height) * m.shape[0] // height)[:, None],
            (np.arange(width) * m.shape[1] // width)[None, :],
        ]  # nearest-neighbour resize of a class map
        for m in test_predictions["class_maps"]
    ]
    return submission_table(test_predictions["ids"], maps, template["id"].tolist())
