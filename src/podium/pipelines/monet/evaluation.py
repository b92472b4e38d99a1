"""Scoring the generated images as the competition does: FID and MiFID against the Monets.

Kaggle scores the images in images.zip, so the images are read back from the jpgs that were
written (compression included). The training Monets are both the FID reference and the
memorisation set here; Kaggle's FID reference is its own Monet set.

No kedro or mlflow imports.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from podium.core.config import check_choice, check_int, check_keys, check_range
from podium.core.fid import (
    FID_METHODS,
    build_inception_extractor,
    extract_features,
    fid_from_features,
    memorization_distance,
    mifid,
)

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


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def check_evaluation(evaluation: Mapping[str, Any]) -> Mapping[str, Any]:
    check_keys(_SECTION, evaluation, EVALUATION_KEYS, required=EVALUATION_KEYS)
    check_int(f"{_SECTION}.standin_seed", evaluation["standin_seed"], low=0)
    check_int(f"{_SECTION}.image_size", evaluation["image_size"], low=MIN_INCEPTION_SIZE)
    check_int(f"{_SECTION}.batch_size", evaluation["batch_size"], low=1)
    check_choice(f"{_SECTION}.fid_method", evaluation["fid_method"], FID_METHODS)
    check_range(f"{_SECTION}.cosine_distance_eps", evaluation["cosine_distance_eps"], low=0.0)
    return evaluation


def score(
    generated: Sequence[np.ndarray],
    monets: Sequence[np.ndarray],
    evaluation: Mapping[str, Any],
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """FID, MiFID, the raw and thresholded memorisation distance, and the extractor's name."""
    check_evaluation(evaluation)
    extractor = build_inception_extractor(
        evaluation["inception_weights"],
        evaluation["standin_seed"],
        parameter=f"{_SECTION}.inception_weights",
    )
    settings = dict(
        batch_size=evaluation["batch_size"],
        image_size=evaluation["image_size"],
        device=device,
        progress=True,
    )
    generated_features = extract_features(extractor, generated, **settings)
    monet_features = extract_features(extractor, monets, **settings)
    fid = fid_from_features(
        generated_features,
        monet_features,
        evaluation["fid_method"],
        parameter=f"{_SECTION}.fid_method",
    )
    centered = extractor.is_standin and bool(evaluation["standin_centering"])
    distance = memorization_distance(generated_features, monet_features, center=centered)
    value, thresholded = mifid(fid, distance, evaluation["cosine_distance_eps"])
    return {
        "fid": fid,
        "mifid": value,
        "memorization_distance": distance,
        "memorization_distance_thresholded": thresholded,
        "generated_images": len(generated),
        "reference_images": len(monets),
        "fid_extractor": extractor.name,
        "memorization_centered": centered,
        "fid_method": evaluation["fid_method"],
    }
