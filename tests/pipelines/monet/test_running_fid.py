"""FID and MiFID folded in batch by batch equal the figures over all features at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from podium.core.config import ParameterError
from podium.core.fid import (
    build_inception_extractor,
    extract_features,
    fid_from_features,
    memorization_distance,
    mifid,
)
from podium.pipelines.monet.evaluate import score
from podium.pipelines.monet.running_fid import RunningMemorization

EVALUATION = {
    "inception_weights": None,
    "inception_weights_url": None,
    "standin_seed": 0,
    "standin_centering": True,
    "image_size": 75,  # Inception-v3's smallest input: keeps the test fast
    "batch_size": 4,
    "cosine_distance_eps": 0.1,
}


def _batches(rows: np.ndarray, sizes: list[int]):
    start = 0
    for size in sizes:
        yield rows[start : start + size]
        start += size
    assert start == len(rows)


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    generated = rng.normal(3.0, 2.0, size=(57, 24))  # far from zero: a naive sum would drift
    reference = rng.normal(2.5, 1.5, size=(30, 24))
    return generated, reference


@pytest.mark.parametrize("center", [False, True])
def test_streamed_memorization_distance_equals_the_all_at_once_one(features, center):
    generated, reference = features
    generated = np.vstack([generated, np.zeros((2, 24))])  # zero rows are left out, as Kaggle
    running = RunningMemorization(reference, center=center)
    for batch in _batches(generated, [5, 50, 4]):
        running.add(batch)
    expected = memorization_distance(generated, reference, center=center)
    assert running.distance() == pytest.approx(expected, rel=1e-12)
    copies = RunningMemorization(reference)
    copies.add(reference[:10] * 3.0)  # scaled copies of the training set: distance 0
    assert copies.distance() == pytest.approx(0.0, abs=1e-12)


def test_the_removed_fid_method_is_named():
    with pytest.raises(ParameterError, match=r"monet\.evaluation\.fid_method.*torchmetrics"):
        score([], [], EVALUATION | {"fid_method": "sqrtm"}, progress=False)


def test_score_over_batches_equals_the_all_at_once_figures():
    rng = np.random.default_rng(1)
    generated = rng.integers(0, 120, (6, 64, 64, 3), dtype=np.uint8)  # darker than the Monets
    monets = rng.integers(100, 255, (5, 64, 64, 3), dtype=np.uint8)
    consumed = []

    def batches(images):
        for start in range(0, len(images), EVALUATION["batch_size"]):
            consumed.append(start)
            yield images[start : start + EVALUATION["batch_size"]]

    # the Monets come as the loader gives them: (n, 3, H, W) batches seen as (n, H, W, 3)
    monets_chw = torch.from_numpy(monets).permute(0, 3, 1, 2).contiguous()
    as_loaded = (b.permute(0, 2, 3, 1) for b in batches(monets_chw))
    scores = score(batches(generated), as_loaded, EVALUATION, progress=False)
    # every image's features at once, then the core functions
    extractor = build_inception_extractor(None, 0)
    settings = dict(batch_size=EVALUATION["batch_size"], image_size=EVALUATION["image_size"])
    f_generated = extract_features(extractor, generated, **settings)
    f_monets = extract_features(extractor, monets, **settings)
    fid = fid_from_features(f_generated, f_monets)
    distance = memorization_distance(f_generated, f_monets, center=True)
    assert fid > 0.1 and scores["fid"] == pytest.approx(fid, rel=1e-9)
    # bit for bit the features of contiguous images, whatever the batch's memory layout
    assert scores["memorization_distance"] == pytest.approx(distance, rel=1e-12)
    assert scores["mifid"] == pytest.approx(mifid(fid, distance)[0], rel=1e-9)
    assert scores["generated_images"] == 6 and scores["reference_images"] == 5
    assert np.isfinite([scores["fid"], scores["mifid"]]).all()
    assert consumed == [0, 4, 0, 4]  # the Monets first, then images.zip batch by batch


def test_one_generated_image_is_too_few_for_a_covariance():
    images = np.random.default_rng(2).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="at least two"):
        score([images[:1]], [images], EVALUATION, progress=False)
