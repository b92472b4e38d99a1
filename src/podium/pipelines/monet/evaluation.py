"""Scoring the generated images as the competition does: FID and MiFID against the Monets.

Kaggle scores the images in images.zip, so the images are read back from the jpgs that were
written (compression included). The training Monets are both the FID reference and the
memorisation set here; Kaggle's FID reference is its own Monet set.

:func:`score` takes the generated images as any iterable of uint8 batches (a DataLoader
over the zip's members, :class:`podium.pipelines.monet.data.ZipJpegs`): each batch becomes
2048-d features and is folded into running statistics (:mod:`.running_fid`), so scoring
holds one batch of pixels and ``d x d`` floats, whatever the number of images.

No kedro or mlflow imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from podium.core.config import check_choice, check_int, check_keys, check_range
from podium.core.fid import (
    FID_METHODS,
    FeatureExtractor,
    build_inception_extractor,
    extract_features,
    mifid,
)
from podium.pipelines.monet.data import decode_jpeg, encode_jpeg
from podium.pipelines.monet.running_fid import (
    RunningMemorization,
    RunningStatistics,
    streamed_fid,
)

__all__ = ["check_evaluation", "decode_jpeg", "encode_jpeg", "features_of", "score"]

#: PIL's highest useful JPEG quality (above it PIL warns that files only grow).
MAX_JPEG_QUALITY = 95
EVALUATION_KEYS = (
    "inception_weights",
    "standin_seed",
    "standin_centering",
    "image_size",
    "batch_size",
    "fid_method",
    "cosine_distance_eps",
)
_SECTION = "monet.evaluation"
#: Inception-v3's smallest usable input side.
MIN_INCEPTION_SIZE = 75


def check_evaluation(evaluation: Mapping[str, Any]) -> Mapping[str, Any]:
    check_keys(_SECTION, evaluation, EVALUATION_KEYS, required=EVALUATION_KEYS)
    check_int(f"{_SECTION}.standin_seed", evaluation["standin_seed"], low=0)
    check_int(f"{_SECTION}.image_size", evaluation["image_size"], low=MIN_INCEPTION_SIZE)
    check_int(f"{_SECTION}.batch_size", evaluation["batch_size"], low=1)
    check_choice(f"{_SECTION}.fid_method", evaluation["fid_method"], FID_METHODS)
    check_range(f"{_SECTION}.cosine_distance_eps", evaluation["cosine_distance_eps"], low=0.0)
    return evaluation


def features_of(
    extractor: FeatureExtractor,
    batch: torch.Tensor | np.ndarray,
    evaluation: Mapping[str, Any],
    device: torch.device | str,
) -> np.ndarray:
    """``(n, 2048)`` float64 features of one uint8 (n, H, W, 3) batch. The batch is laid out
    C-contiguous first, as decoded images are: the network's kernels (and so the last bits
    of the features) depend on the memory layout of its input."""
    images = batch.numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
    images = np.ascontiguousarray(images)
    return extract_features(
        extractor,
        images,
        batch_size=max(1, len(images)),
        image_size=evaluation["image_size"],
        device=device,
    )


def score(
    generated: Iterable[torch.Tensor | np.ndarray],
    monets: Iterable[torch.Tensor | np.ndarray],
    evaluation: Mapping[str, Any],
    device: torch.device | str = "cpu",
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """FID, MiFID, the raw and thresholded memorisation distance, and the extractor's name.

    ``generated`` and ``monets``: uint8 (n, H, W, 3) batches (of ``evaluation.batch_size``
    for the figures to match an all-at-once extraction bit for bit). The Monets' features
    are kept (the memorisation reference: 300 rows in the competition); the generated ones
    are folded in batch by batch.
    """
    check_evaluation(evaluation)
    extractor = build_inception_extractor(
        evaluation["inception_weights"],
        evaluation["standin_seed"],
        parameter=f"{_SECTION}.inception_weights",
    )
    reference = [
        features_of(extractor, batch, evaluation, device)
        for batch in tqdm(monets, desc="inception features (Monets)", disable=not progress)
    ]
    if not reference:
        raise ValueError("monet: no Monet images to score against")
    monet_features = np.concatenate(reference)
    centered = extractor.is_standin and bool(evaluation["standin_centering"])
    statistics = RunningStatistics(keep_rows=evaluation["fid_method"] == "nuclear")
    memorization = RunningMemorization(monet_features, center=centered)
    for batch in tqdm(generated, desc="inception features (images.zip)", disable=not progress):
        features = features_of(extractor, batch, evaluation, device)
        statistics.add(features)
        memorization.add(features)
    fid = streamed_fid(
        statistics,
        monet_features,
        evaluation["fid_method"],
        parameter=f"{_SECTION}.fid_method",
    )
    distance = memorization.distance()
    value, thresholded = mifid(fid, distance, evaluation["cosine_distance_eps"])
    return {
        "fid": fid,
        "mifid": value,
        "memorization_distance": distance,
        "memorization_distance_thresholded": thresholded,
        "generated_images": statistics.count,
        "reference_images": len(monet_features),
        "fid_extractor": extractor.name,
        "memorization_centered": centered,
        "fid_method": evaluation["fid_method"],
    }
