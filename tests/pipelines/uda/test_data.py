"""Index tables read image by image (bad labels stop the run naming the file, unreadable
images are skipped and reported), lazy datasets, rare-class sampling, fisheye."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from podium.core.distributed import dask_client
from podium.layouts.uda import IGNORE_INDEX, NUM_CLASSES, UdaLayoutError, read_image, read_label
from podium.pipelines.uda.data import (
    IMAGE_COLUMNS,
    PredictDataset,
    SourceDataset,
    TargetDataset,
    class_pixel_counts,
    fisheye_maps,
    inspect_images,
    rare_class_image_weights,
    rare_class_probabilities,
    to_fisheye,
)


def _write(tmp_path, name, image, label, split="train_source"):
    img, gt = tmp_path / f"{name}.png", tmp_path / f"{name}_gt.png"
    Image.fromarray(image).save(img)
    Image.fromarray(label).save(gt)
    return {"split": split, "id": name, "img_path": str(img), "gt_path": str(gt)}


def _pair(height=20, width=30, value=3, seed=0):
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return image, np.full((height, width), value, np.uint8)


SIZES = {"train_source": (10, 16), "train_target": (12, 16)}


def _stacked(frame, size, labeled):
    """The split as the pipeline once held it: every image stacked, resized at load."""
    height, width = size
    images = np.stack(
        [cv2.resize(read_image(p), (width, height), interpolation=cv2.INTER_AREA)
         for p in frame["img_path"]]
    )  # fmt: skip
    if not labeled:
        return images, None
    labels = np.stack(
        [cv2.resize(read_label(g), (width, height), interpolation=cv2.INTER_NEAREST)
         for g in frame["gt_path"]]
    )  # fmt: skip
    return images, labels


def test_inspect_images_gives_sizes_and_class_pixels_at_the_working_size(tmp_path):
    image, label = _pair()
    label[:, :15] = IGNORE_INDEX
    frame = pd.DataFrame([_write(tmp_path, "A", image, label)])
    target = _write(tmp_path, "T", *_pair(24, 40, seed=1), split="train_target")
    target["gt_path"] = None
    frame = pd.concat([frame, pd.DataFrame([target])], ignore_index=True)
    images, counts, bad = inspect_images(frame, SIZES, progress=False)
    assert list(images.columns) == list(IMAGE_COLUMNS) and bad.empty
    assert images[["id", "height", "width"]].values.tolist() == [["A", 20, 30], ["T", 24, 40]]
    # counted on the nearest-resized 10x16 label, as rare-class sampling draws from it
    resized = cv2.resize(label, (16, 10), interpolation=cv2.INTER_NEAREST)
    expected = class_pixel_counts([resized], ["A"])
    assert counts["id"].tolist() == ["A"]
    assert counts.drop(columns="split").equals(expected)
    assert counts.loc[0, "3"] == (resized == 3).sum() > 0


def test_a_label_of_the_wrong_size_stops_naming_the_file_entry_and_fix(tmp_path):
    image, _ = _pair()
    _, small = _pair(10, 30)
    frame = pd.DataFrame(
        [_write(tmp_path, "GOOD", *_pair()), _write(tmp_path, "BAD", image, small)]
    )
    with pytest.raises(UdaLayoutError, match=r"BAD_gt\.png is 30x10 \(WxH\) but its image is 30x20"
                       r".*entry 'BAD' of train_source\.csv.*fix:"):  # fmt: skip
        inspect_images(frame, SIZES, progress=False)


def test_an_unknown_class_value_stops_naming_the_file_and_value(tmp_path):
    image, label = _pair()
    label[0, 0] = 12
    frame = pd.DataFrame([_write(tmp_path, "ODD", image, label)])
    with pytest.raises(UdaLayoutError, match=r"ODD_gt\.png holds unknown class value\(s\) 12"):
        inspect_images(frame, SIZES, progress=False)


@pytest.mark.parametrize("over_dask", [False, True])
def test_an_unreadable_image_is_skipped_and_reported_not_dropped(tmp_path, over_dask):
    rows = [_write(tmp_path, f"S{i}", *_pair(seed=i)) for i in range(3)]
    broken = tmp_path / "S1.png"
    broken.write_bytes(broken.read_bytes()[:60])  # a truncated download
    frame = pd.DataFrame(rows)
    if over_dask:
        with dask_client(n_workers=1, processes=False) as client:
            images, counts, bad = inspect_images(frame, SIZES, client, progress=False)
    else:
        images, counts, bad = inspect_images(frame, SIZES, progress=False)
    assert images["id"].tolist() == ["S0", "S2"] and counts["id"].tolist() == ["S0", "S2"]
    assert bad[["split", "id", "path"]].values.tolist() == [["train_source", "S1", str(broken)]]
    assert "cannot be read" in bad.loc[0, "reason"]


def test_lazy_datasets_give_the_same_tensors_as_the_stacked_arrays(tmp_path):
    rows = []
    for i in range(3):
        image, label = _pair(40, 64, seed=i)
        label[: 10 + 5 * i] = (i + 4) % NUM_CLASSES
        label[:, :7] = IGNORE_INDEX
        rows.append(_write(tmp_path, f"S{i}", image, label))
    frame = pd.DataFrame(rows)
    images, labels = _stacked(frame, (20, 32), labeled=True)
    augment = [{"name": "HorizontalFlip", "p": 0.5}]
    fisheye = {"enabled": True, "p": 0.5, "max_angle_deg": 60.0}

    class Stacked(SourceDataset):  # the old dataset: items taken from the arrays
        def pair(self, index):
            return images[index], labels[index]

    lazy = SourceDataset(frame, (20, 32), (16, 24), augment, fisheye, "t")
    stacked = Stacked(frame, (20, 32), (16, 24), augment, fisheye, "t")
    for index in (0, 1, 2, 1):
        np.random.seed(index)
        a = lazy[index]
        np.random.seed(index)
        b = stacked[index]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    target_images, _ = _stacked(frame, (24, 30), labeled=False)
    targets = TargetDataset(frame, (24, 30), (16, 16), augment, "t")
    for index in range(3):
        np.testing.assert_array_equal(targets.image(index), target_images[index])
    predict = PredictDataset(frame, (24, 30))
    image, original, index = predict[2]
    np.testing.assert_array_equal(image.numpy(), target_images[2])
    assert original.tolist() == [40, 64] and index == 2


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


def test_source_crops_have_the_crop_size_and_valid_labels(tmp_path):
    rows = []
    for i in range(2):
        image = np.random.default_rng(1 + i).integers(0, 255, (24, 40, 3), dtype=np.uint8)
        label = np.random.default_rng(2 + i).integers(0, NUM_CLASSES, (24, 40), dtype=np.uint8)
        rows.append(_write(tmp_path, f"C{i}", image, label))
    dataset = SourceDataset(
        pd.DataFrame(rows),
        (24, 40),
        (16, 48),
        [{"name": "HorizontalFlip", "p": 0.5}],
        {"enabled": True, "p": 1.0, "max_angle_deg": 60.0},
        "t",
    )
    image, label = dataset[0]
    assert image.shape == (3, 16, 48) and label.shape == (16, 48)
    assert 0 <= image.min() and image.max() <= 1
    assert set(label.unique().tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}
    assert (label == IGNORE_INDEX).any()  # padded to 48 wide with ignore
