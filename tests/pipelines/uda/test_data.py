"""Loading splits (bad labels stop the run naming the file), rare-class sampling, fisheye."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from podium.layouts.uda import IGNORE_INDEX, NUM_CLASSES, UdaLayoutError
from podium.pipelines.uda.data import (
    SourceDataset,
    class_pixel_counts,
    fisheye_maps,
    load_split,
    rare_class_image_weights,
    rare_class_probabilities,
    to_fisheye,
)


def _write(tmp_path, name, image, label):
    img, gt = tmp_path / f"{name}.png", tmp_path / f"{name}_gt.png"
    Image.fromarray(image).save(img)
    Image.fromarray(label).save(gt)
    return {"id": name, "img_path": str(img), "gt_path": str(gt)}


def _pair(height=20, width=30, value=3):
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return image, np.full((height, width), value, np.uint8)


def test_load_split_resizes_images_and_labels_and_keeps_full_size_labels(tmp_path):
    image, label = _pair()
    label[:, :15] = IGNORE_INDEX
    frame = pd.DataFrame([_write(tmp_path, "A", image, label)])
    arrays = load_split(frame, (10, 16), labeled=True, keep_original_labels=True)
    assert arrays["images"].shape == (1, 10, 16, 3) and arrays["labels"].shape == (1, 10, 16)
    assert set(np.unique(arrays["labels"])) == {3, IGNORE_INDEX}  # nearest: no blended values
    np.testing.assert_array_equal(arrays["original_labels"][0], label)
    assert arrays["original_size"] == [20, 30] and arrays["ids"] == ["A"]


def test_a_label_of_the_wrong_size_stops_loading_naming_the_file(tmp_path):
    image, _ = _pair()
    _, small = _pair(10, 30)
    frame = pd.DataFrame(
        [_write(tmp_path, "GOOD", *_pair()), _write(tmp_path, "BAD", image, small)]
    )
    with pytest.raises(
        UdaLayoutError, match=r"BAD_gt\.png is 30x10 \(WxH\) but its image is 30x20"
    ):
        load_split(frame, (10, 16), labeled=True, keep_original_labels=False)


def test_an_unknown_class_value_stops_loading_naming_the_file_and_value(tmp_path):
    image, label = _pair()
    label[0, 0] = 12
    frame = pd.DataFrame([_write(tmp_path, "ODD", image, label)])
    with pytest.raises(UdaLayoutError, match=r"ODD_gt\.png holds unknown class value\(s\) 12"):
        load_split(frame, (10, 16), labeled=True, keep_original_labels=False)


def test_rare_class_sampling_favours_rare_classes_more_at_low_temperature():
    labels = np.zeros((3, 10, 10), np.uint8)  # class 0 everywhere ...
    labels[1, :2, :2] = 5  # ... class 5 rare, only in image 1
    labels[2, :, :5] = 7  # class 7 common-ish, only in image 2
    counts = class_pixel_counts(labels, ["a", "b", "c"])
    assert counts.loc[1, "5"] == 4 and counts["id"].tolist() == ["a", "b", "c"]
    cold = rare_class_probabilities(counts, temperature=0.01)
    hot = rare_class_probabilities(counts, temperature=100.0)
    assert cold[5] > 0.99 and cold.sum() == pytest.approx(1.0)
    assert hot[[0, 5, 7]] == pytest.approx([1 / 3] * 3, abs=0.01)  # T -> inf: uniform classes
    assert (cold[[c for c in range(NUM_CLASSES) if c not in (0, 5, 7)]] == 0).all()
    weights = rare_class_image_weights(counts, temperature=0.01, min_pixels=1)
    assert weights[1] > 0.99 and weights.sum() == pytest.approx(1.0)
    # a class below min_pixels no longer makes its image a holder
    assert rare_class_image_weights(counts, 0.01, min_pixels=5)[1] < 0.5


def test_simulated_fisheye_keeps_the_centre_and_bends_towards_it():
    map_x, map_y = fisheye_maps(40, 60, 70.0)
    assert abs(map_x[20, 30] - 30) < 0.6 and abs(map_y[20, 30] - 20) < 0.6
    assert map_x[0, 0] < 2.5 and map_y[0, 0] < 2.5  # corners map (near) onto corners
    # mid-edge pixels sample from closer to the centre than a pinhole would
    assert map_x[20, 0] > 0.5
    image, label = _pair(40, 60)
    label[:, :30] = 1
    warped, warped_label = to_fisheye(image, label, 70.0)
    assert warped.shape == image.shape
    assert set(np.unique(warped_label)) <= {1, 3, IGNORE_INDEX}


def test_source_crops_have_the_crop_size_and_valid_labels():
    images = np.random.default_rng(1).integers(0, 255, (2, 24, 40, 3), dtype=np.uint8)
    labels = np.random.default_rng(2).integers(0, NUM_CLASSES, (2, 24, 40), dtype=np.uint8)
    dataset = SourceDataset(
        images,
        labels,
        (16, 48),
        [{"name": "HorizontalFlip", "p": 0.5}],
        {"enabled": True, "p": 1.0, "max_angle_deg": 60.0},
        "t",
        seed=0,
    )
    image, label = dataset[0]
    assert image.shape == (3, 16, 48) and label.shape == (16, 48)
    assert 0 <= image.min() and image.max() <= 1
    assert set(label.unique().tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}
    assert (label == IGNORE_INDEX).any()  # padded to 48 wide with ignore
