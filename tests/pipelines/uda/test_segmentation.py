"""IoU and sliding-window / TTA prediction (pipelines.uda.segmentation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from podium.pipelines.uda.segmentation import (
    confusion_matrix,
    iou_per_class,
    mean_iou,
    sliding_window,
    tta_probabilities,
)


def test_iou_counts_pixels_and_leaves_out_ignored_and_absent_classes():
    target = np.array([[0, 0, 1, 255], [2, 2, 1, 1]])
    prediction = np.array([[0, 1, 1, 3], [2, 0, 1, 1]])
    confusion = confusion_matrix(prediction, target, num_classes=4, ignore_index=255)
    assert confusion.sum() == 7  # the ignored pixel is not counted
    iou = iou_per_class(confusion)
    np.testing.assert_allclose(iou[:3], [1 / 3, 3 / 4, 1 / 2])
    assert math.isnan(iou[3])  # class 3 only predicted on an ignored pixel
    assert mean_iou(confusion) == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)


def _fcn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, 1)).eval()


def test_a_window_covering_the_image_gives_the_whole_image_prediction():
    net = _fcn()
    images = torch.rand(2, 3, 24, 40)
    with torch.no_grad():
        whole = net(images)
    for window in ((24, 40), (32, 64)):  # exactly the image, and larger than it
        slid = sliding_window(net, images, window, (8, 8), num_classes=5)
        torch.testing.assert_close(slid, whole)


def test_overlapping_windows_of_a_pointwise_model_equal_the_whole_image():
    net = nn.Conv2d(3, 4, 1).eval()  # no spatial context: every crop agrees with the whole
    images = torch.rand(1, 3, 30, 50)
    with torch.no_grad():
        whole = net(images)
    slid = sliding_window(net, images, (16, 16), (10, 7), num_classes=4)
    torch.testing.assert_close(slid, whole)


def test_sliding_window_reaches_every_pixel_and_averages_overlaps():
    images = torch.arange(130, dtype=torch.float32).view(1, 1, 10, 13)
    calls = []

    def identity(crop):
        calls.append(tuple(crop.shape[-2:]))
        return crop + 0  # overlaps then average identical values back to the image

    out = sliding_window(identity, images, (4, 5), (3, 4), num_classes=1)
    torch.testing.assert_close(out, images)
    assert calls == [(4, 5)] * 9  # rows start 0, 3, 6; columns 0, 4, 8 (last ends at 13)
    biased = sliding_window(lambda c: torch.ones_like(c), images, (4, 5), (3, 4), 1)
    torch.testing.assert_close(biased, torch.ones_like(images))


def test_flip_tta_of_a_mirror_symmetric_model_is_its_plain_prediction():
    net = nn.Conv2d(3, 4, 1).eval()
    images = torch.rand(1, 3, 16, 16)
    plain = tta_probabilities(net, images, window=(16, 16), stride=(16, 16), num_classes=4)
    with torch.no_grad():
        torch.testing.assert_close(plain, torch.softmax(net(images), dim=1))
    flipped = tta_probabilities(
        net, images, window=(16, 16), stride=(16, 16), num_classes=4, flip=True, scales=(1.0, 0.5)
    )
    assert flipped.shape == plain.shape
    torch.testing.assert_close(flipped.sum(dim=1), torch.ones(1, 16, 16))
