"""images.zip as Kaggle expects it (the MLflow tags dataset is checked end to end)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from kedro.io.core import DatasetError
from PIL import Image

from podium.datasets import ImagesZipDataset
from podium.pipelines.monet.evaluation import decode_jpeg, encode_jpeg


def _jpg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    return encode_jpeg(image, 95)


def test_images_zip_is_a_flat_zip_of_256px_jpgs(tmp_path):
    files = {f"{name}.jpg": _jpg(i) for i, name in enumerate(["b2", "a1", "c3"])}
    dataset = ImagesZipDataset(str(tmp_path / "images.zip"))
    dataset.save(files)
    with zipfile.ZipFile(tmp_path / "images.zip") as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["a1.jpg", "b2.jpg", "c3.jpg"]
        for name in archive.namelist():
            with Image.open(io.BytesIO(archive.read(name))) as image:
                assert image.format == "JPEG" and image.size == (256, 256)
    assert dataset.load() == files


def test_images_zip_refuses_folders_inside(tmp_path):
    with pytest.raises(DatasetError, match="flat"):
        ImagesZipDataset(str(tmp_path / "images.zip")).save({"sub/a.jpg": _jpg(0)})


def test_jpeg_round_trip_stays_close():
    image = np.full((32, 32, 3), 120, dtype=np.uint8)
    decoded = decode_jpeg(encode_jpeg(image, 95))
    assert decoded.shape == image.shape and np.abs(decoded.astype(int) - 120).max() <= 2
