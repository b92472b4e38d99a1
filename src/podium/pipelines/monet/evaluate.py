"""Scoring the generated images as the competition does: FID and MiFID against the Monets.

Kaggle scores the images in images.zip, so the images are read back from the jpgs that were
written (compression included). The training Monets are both the FID reference and the
memorisation set here; Kaggle's FID reference is its own Monet set.

:func:`score` takes the generated images as any iterable of uint8 batches (a DataLoader
over the zip's members, :class:`podium.pipelines.monet.data.ZipJpegs`): each batch goes
through torchmetrics' ``FrechetInceptionDistance`` (podium's Inception extractor as its
``feature=`` module, folded into its running float64 sums), and the same features into
podium's running memorisation distance (:mod:`.running_fid`, Kaggle's definition), so
scoring holds one batch of pixels and ``d x d`` floats, whatever the number of images.

The Inception weights: the local file ``inception_weights`` (the cache), fetched once from
``inception_weights_url`` (pytorch-fid's) when it is absent and the network is reachable;
else the seeded stand-in. The summary's ``fid_extractor`` and ``fid_weights`` say which.

No kedro or mlflow imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from podium.core.fid import (
    FeatureExtractor,
    WeightsSource,
    as_chw,
    build_inception_extractor,
    fid_metric,
    mifid,
    resolve_inception_weights,
)
from podium.pipelines.monet.data import decode_jpeg, encode_jpeg
from podium.pipelines.monet.params import MonetEvaluationParams, validated
from podium.pipelines.monet.running_fid import RunningMemorization

__all__ = ["decode_jpeg", "encode_jpeg", "extractor_for", "score"]

_SECTION = MonetEvaluationParams.block


def extractor_for(evaluation: Mapping[str, Any]) -> tuple[FeatureExtractor, WeightsSource]:
    """The Inception extractor ``evaluation`` asks for and where its weights came from: the
    cached file, fetched once when absent and reachable, else the seeded stand-in."""
    weights = resolve_inception_weights(
        evaluation["inception_weights"], evaluation["inception_weights_url"]
    )
    extractor = build_inception_extractor(
        weights.path, evaluation["standin_seed"], parameter=f"{_SECTION}.inception_weights"
    )
    return extractor, weights


def score(
    generated: Iterable[torch.Tensor | np.ndarray],
    monets: Iterable[torch.Tensor | np.ndarray],
    evaluation: Mapping[str, Any],
    device: torch.device | str = "cpu",
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """FID, MiFID, the raw and thresholded memorisation distance, the extractor's name and
    where its weights came from.

    ``generated`` and ``monets``: uint8 (n, H, W, 3) batches. The Monets go first (the FID
    reference, and their features are kept as the memorisation reference: 300 rows in the
    competition); the generated ones are folded in batch by batch.
    """
    evaluation = validated(MonetEvaluationParams, evaluation)
    extractor, weights = extractor_for(evaluation)
    metric = fid_metric(extractor, evaluation["image_size"], device)
    seen: list[torch.Tensor] = []
    hook = metric.inception.register_forward_hook(lambda _module, _in, out: seen.append(out))

    def features(batch: torch.Tensor | np.ndarray, real: bool) -> np.ndarray:
        metric.update(as_chw(batch), real=real)  # runs the extractor once, seen by the hook
        return seen.pop().cpu().numpy()

    try:
        reference = [
            features(batch, real=True)
            for batch in tqdm(monets, desc="inception features (Monets)", disable=not progress)
        ]
        if not reference:
            raise ValueError("monet: no Monet images to score against")
        monet_features = np.concatenate(reference)
        centered = extractor.is_standin and bool(evaluation["standin_centering"])
        memorization = RunningMemorization(monet_features, center=centered)
        count = 0
        batches = tqdm(generated, desc="inception features (images.zip)", disable=not progress)
        for batch in batches:
            rows = features(batch, real=False)
            memorization.add(rows)
            count += len(rows)
    finally:
        hook.remove()
    if count < 2 or len(monet_features) < 2:
        raise ValueError(
            f"FID needs at least two feature rows on each side, got {count} generated and "
            f"{len(monet_features)} Monet images"
        )
    fid = max(float(metric.compute()), 0.0)  # rounding can dip a hair below zero
    distance = memorization.distance()
    value, thresholded = mifid(fid, distance, evaluation["cosine_distance_eps"])
    return {
        "fid": fid,
        "mifid": value,
        "memorization_distance": distance,
        "memorization_distance_thresholded": thresholded,
        "generated_images": count,
        "reference_images": len(monet_features),
        "fid_extractor": extractor.name,
        "fid_weights": weights.description,
        "memorization_centered": centered,
    }
