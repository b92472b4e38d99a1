"""Crops, the crop report, minority resampling and the augment-only-the-copies Dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from podium.core.augment import build_transforms
from podium.core.config import ParameterError
from podium.layouts.mask import index_mask_train
from podium.pipelines.mask.data import (
    CROPPED,
    FACE_NOT_FOUND,
    UNREADABLE,
    CropDataset,
    centre_crop,
    crop_images,
    oversample_minority,
)
from podium.sample_data.faces import random_appearance, render_face

CENTRE = {
    "method": "centre",
    "centre": {"height": 40, "width": 30},
    "output": {"height": 20, "width": 15},
}


def test_centre_crop_takes_the_middle_and_resizes():
    image = np.zeros((100, 80, 3), np.uint8)
    image[30:70, 20:60] = 255  # exactly the central 40x40
    crop = centre_crop(image, (40, 40), (20, 20))
    assert crop.shape == (20, 20, 3) and crop.min() == 255
    # a region larger than the photo is clipped to it
    assert centre_crop(image, (500, 500), (10, 8)).shape == (10, 8, 3)


def test_crop_images_reports_an_unreadable_photo_and_keeps_the_rest(mask_root):
    paths = index_mask_train(mask_root)["path"].tolist()[:4]
    with open(paths[1], "r+b") as f:
        f.truncate(100)  # a truncated jpg
    crops, report = crop_images(paths, CENTRE)
    assert crops.shape == (4, 20, 15, 3) and crops.dtype == np.uint8
    assert report["status"].tolist() == [CROPPED, UNREADABLE, CROPPED, CROPPED]
    assert paths[1] in report.loc[1, "reason"]
    assert crops[1].max() == 0 and crops[0].max() > 0


def test_face_crop_falls_back_to_the_centre_crop_and_reports_it(tmp_path):
    face = np.full((240, 320, 3), 120, np.uint8)
    render_face(face, random_appearance(np.random.default_rng(3)), (160, 120), 110)
    blank = np.full((240, 320, 3), 120, np.uint8)
    paths = []
    for name, image in (("face.png", face), ("blank.png", blank)):
        from PIL import Image

        Image.fromarray(image).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    spec = {
        "method": "face",
        "centre": {"height": 200, "width": 150},
        "face": {"margin": 0.2, "min_confidence": 0.9, "batch_size": 2, "downscale": 1.0},
        "output": {"height": 40, "width": 30},
    }
    crops, report = crop_images(paths, spec)
    assert report["status"].tolist() == [CROPPED, FACE_NOT_FOUND]
    assert "centre crop" in report.loc[1, "reason"]
    assert np.array_equal(crops[1], centre_crop(blank, (200, 150), (40, 30)))
    # the face crop is tighter than the centre crop: fewer background pixels
    background = lambda c: np.mean(np.all(c == 120, axis=-1))  # noqa: E731
    assert background(crops[0]) < background(centre_crop(face, (200, 150), (40, 30)))


def test_unknown_crop_method_names_the_parameter_and_choices():
    with pytest.raises(ParameterError, match=r"mask\.crop\.method.*centre, face"):
        crop_images([], {**CENTRE, "method": "middle"})


def test_oversampling_copies_only_minority_rows_and_flags_only_the_copies():
    frame = pd.DataFrame({"row": range(6), "age_class": [0, 2, 1, 2, 0, 1]})
    out = oversample_minority(frame, "age_class", 2, factor=3)
    assert len(out) == 6 + 2 * 2
    originals, copies = out[~out["augmented"]], out[out["augmented"]]
    assert originals["row"].tolist() == list(range(6))
    assert sorted(copies["row"]) == [1, 1, 3, 3]
    assert (copies["age_class"] == 2).all()
    assert not oversample_minority(frame, "age_class", 2, factor=1)["augmented"].any()


def test_dataset_augments_the_copies_and_only_the_copies():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (3, 8, 6, 3), dtype=np.uint8)
    frame = oversample_minority(
        pd.DataFrame({"row": [0, 1, 2], "age_class": [0, 2, 1]}), "age_class", 2, factor=3
    )
    dataset = CropDataset(
        crops,
        frame["row"].to_numpy(),
        {"target": frame["age_class"].to_numpy()},
        preprocess=build_transforms([{"name": "ToTensorV2"}]),
        augment=build_transforms([{"name": "HorizontalFlip", "p": 1.0}]),
        augmented=frame["augmented"].to_numpy(),
    )
    assert len(dataset) == 5
    for i, (row, augmented) in enumerate(zip(frame["row"], frame["augmented"], strict=True)):
        item = dataset[i]
        image = item["image"].permute(1, 2, 0).numpy()
        expected = crops[row][:, ::-1] if augmented else crops[row]
        assert np.array_equal(image, expected), (i, augmented)
        assert int(item["target"]) == frame["age_class"].iloc[i]
