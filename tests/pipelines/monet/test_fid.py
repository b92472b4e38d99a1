"""podium.core.fid: Kaggle's MiFID penalty, the extractors, the features FID runs on (the
FID's value against the old maths and the references: tests/core/test_fid.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from podium.core.config import ParameterError
from podium.core.fid import (
    InceptionFeatures,
    as_chw,
    build_inception_extractor,
    extract_features,
    fid_metric,
    memorization_distance,
    mifid,
)

#: Smallest input Inception-v3 accepts: keeps the extractor tests fast.
SMALL = 75


def test_mifid_penalises_copies_of_the_training_monets():
    rng = np.random.default_rng(2)
    training = np.abs(rng.normal(size=(30, 64)))
    copies = training[:20] * 1.5  # a scaled copy has the same direction: distance 0
    distance = memorization_distance(copies, training)
    assert distance == pytest.approx(0.0, abs=1e-12)
    value, thresholded = mifid(12.0, 0.04)
    assert thresholded == 0.04 and value == pytest.approx(12.0 / 0.04)


def test_mifid_equals_fid_for_images_unlike_the_training_set():
    rng = np.random.default_rng(3)
    training, generated = rng.normal(size=(30, 64)), rng.normal(size=(20, 64))
    distance = memorization_distance(generated, training)
    assert distance > 0.1  # independent directions in 64-d are far apart
    value, thresholded = mifid(12.0, distance)
    assert thresholded == 1.0 and value == pytest.approx(12.0)


def test_memorization_distance_uses_absolute_cosine_and_skips_zero_rows():
    training = np.array([[1.0, 0.0], [0.0, 1.0]])
    generated = np.array([[-1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])  # opposite, zero, diagonal
    # Kaggle: 1 - |cos|: the opposite vector is a copy (0), the zero row is dropped
    assert memorization_distance(generated, training) == pytest.approx((1 - np.sqrt(0.5)) / 2)


def test_centering_separates_features_that_share_one_direction():
    rng = np.random.default_rng(4)
    common = np.full(64, 50.0)  # what a random network's pooled features look like
    training = common + rng.normal(size=(30, 64))
    generated = common + rng.normal(size=(20, 64))
    assert memorization_distance(generated, training) < 0.01
    assert memorization_distance(generated, training, center=True) > 0.1
    assert memorization_distance(training, training, center=True) == pytest.approx(0, abs=1e-9)


def test_without_weights_the_extractor_is_a_named_seeded_standin(tmp_path):
    standin = build_inception_extractor(tmp_path / "absent.pth", standin_seed=0)
    assert standin.is_standin and standin.name == "standin-random-inception_v3-seed0"
    images = np.random.default_rng(5).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    first = extract_features(standin, images, image_size=SMALL)
    assert first.shape == (3, 2048) and np.isfinite(first).all()
    # the same network whatever the global RNG says
    torch.manual_seed(123)
    again = build_inception_extractor(None, standin_seed=0)
    assert again.name == standin.name
    np.testing.assert_allclose(extract_features(again, images, image_size=SMALL), first)


@pytest.mark.parametrize(("classes", "kind"), [(1008, "fid_inception"), (1000, "torchvision")])
def test_local_weights_are_loaded_and_named(tmp_path, classes, kind):
    from podium.core.fid import _inception

    model = _inception(classes, fid_blocks=classes == 1008)
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    extractor = build_inception_extractor(path)
    assert not extractor.is_standin and extractor.name.startswith(kind)
    assert extractor.name.endswith("weights.pth")
    loaded = extractor.model.state_dict()
    assert torch.equal(
        loaded["Mixed_7c.branch_pool.conv.weight"], model.Mixed_7c.branch_pool.conv.weight
    )


def test_weights_of_another_network_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(10, 2048)}, path)
    with pytest.raises(ParameterError, match="Inception-v3 state dict"):
        build_inception_extractor(path, parameter="monet.evaluation.inception_weights")


def test_torchmetrics_runs_podiums_extractor_as_its_feature_module():
    extractor = build_inception_extractor(None, standin_seed=0)
    metric = fid_metric(extractor, image_size=SMALL)
    assert isinstance(metric.inception, InceptionFeatures) and metric.used_custom_model
    assert metric.real_features_sum.shape == (2048,)  # num_features: no probe image run
    images = np.random.default_rng(6).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    rows = extract_features(extractor, images, batch_size=5, image_size=SMALL)
    metric.update(as_chw(images), real=True)
    # the metric's running sums are those of podium's features, bit for bit
    assert torch.equal(metric.real_features_sum, torch.from_numpy(rows).sum(dim=0))
    assert int(metric.real_features_num_samples) == 5
    assert not metric.inception.train().training  # stays in eval mode
