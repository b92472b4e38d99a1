"""FID and MiFID folded in batch by batch equal the figures over all features at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from podium.core.fid import (
    build_inception_extractor,
    extract_features,
    feature_statistics,
    fid_from_features,
    memorization_distance,
    mifid,
)
from podium.pipelines.monet.evaluation import score
from podium.pipelines.monet.running_fid import (
    RunningMemorization,
    RunningStatistics,
    streamed_fid,
)

EVALUATION = {
    "inception_weights": None,
    "standin_seed": 0,
    "standin_centering": True,
    "image_size": 75,  # Inception-v3's smallest input: keeps the test fast
    "batch_size": 4,
    "fid_method": "sqrtm",
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


def test_running_mean_and_covariance_equal_the_all_at_once_ones(features):
    generated, _ = features
    running = RunningStatistics()
    for batch in _batches(generated, [1, 16, 16, 0, 7, 17]):
        running.add(batch)
    mean, covariance = running.statistics()
    expected_mean, expected_covariance = feature_statistics(generated)
    assert running.count == 57
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-13)
    np.testing.assert_allclose(covariance, expected_covariance, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("method", ["sqrtm", "nuclear"])
def test_streamed_fid_equals_fid_over_all_features_at_once(features, method):
    generated, reference = features
    running = RunningStatistics(keep_rows=method == "nuclear")
    for batch in _batches(generated, [16, 16, 16, 9]):
        running.add(batch)
    assert (running.rows is None) == (method == "sqrtm")  # sqrtm keeps d x d floats only
    expected = fid_from_features(generated, reference, method)
    assert expected > 1.0
    assert streamed_fid(running, reference, method) == pytest.approx(expected, rel=1e-10)


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


def test_too_few_images_for_a_covariance_is_an_error():
    running = RunningStatistics()
    running.add(np.ones((1, 4)))
    with pytest.raises(ValueError, match="at least two"):
        running.statistics()


def test_score_over_batches_equals_the_all_at_once_figures():
    rng = np.random.default_rng(1)
    generated = rng.integers(0, 120, (6, 64, 64, 3), dtype=np.uint8)  # darker than the Monets
    monets = rng.integers(100, 255, (5, 64, 64, 3), dtype=np.uint8)
    consumed = []

    def batches(images):
        for start in range(0, len(images), EVALUATION["batch_size"]):
            consumed.append(start)
            yield images[start : start + EVALUATION["batch_size"]]

    # nuclear: the same FID without sqrtm's 2048 x 2048 root (the running covariance
    # against sqrtm is checked above, on narrower features)
    evaluation = EVALUATION | {"fid_method": "nuclear"}
    # the Monets come as the loader gives them: (n, 3, H, W) batches seen as (n, H, W, 3)
    monets_chw = torch.from_numpy(monets).permute(0, 3, 1, 2).contiguous()
    as_loaded = (b.permute(0, 2, 3, 1) for b in batches(monets_chw))
    scores = score(batches(generated), as_loaded, evaluation, progress=False)
    # the old path: every image's features at once, then the core functions
    extractor = build_inception_extractor(None, 0)
    settings = dict(batch_size=EVALUATION["batch_size"], image_size=EVALUATION["image_size"])
    f_generated = extract_features(extractor, generated, **settings)
    f_monets = extract_features(extractor, monets, **settings)
    fid = fid_from_features(f_generated, f_monets, "nuclear")
    distance = memorization_distance(f_generated, f_monets, center=True)
    assert fid > 0.1 and scores["fid"] == pytest.approx(fid, rel=1e-7)
    # bit for bit the features of contiguous images, whatever the batch's memory layout
    assert scores["memorization_distance"] == pytest.approx(distance, rel=1e-12)
    assert scores["mifid"] == pytest.approx(mifid(fid, distance)[0], rel=1e-7)
    assert scores["generated_images"] == 6 and scores["reference_images"] == 5
    assert np.isfinite([scores["fid"], scores["mifid"]]).all()
    assert consumed == [0, 4, 0, 4]  # the Monets first, then images.zip batch by batch
