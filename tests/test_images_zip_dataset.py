"""images.zip as Kaggle expects it, written as a stream and atomically, read member by
member (the MLflow tags dataset is checked end to end)."""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from kedro.io.core import DatasetError, Version
from PIL import Image

from podium.datasets import ImagesZipDataset
from podium.datasets.images_zip import ZipMembers
from podium.pipelines.monet.evaluate import decode_jpeg, encode_jpeg


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


def test_a_stream_is_written_in_its_own_order_and_matches_the_mapping_zip(tmp_path):
    files = {f"{name}.jpg": _jpg(i) for i, name in enumerate(["b2", "a1", "c3"])}
    ImagesZipDataset(str(tmp_path / "mapping.zip")).save(files)
    stream = ((name, files[name]) for name in sorted(files))  # a generator: read once
    ImagesZipDataset(str(tmp_path / "stream.zip")).save(stream)
    # fixed entry times: the same files give the same bytes, however they were handed over
    assert (tmp_path / "stream.zip").read_bytes() == (tmp_path / "mapping.zip").read_bytes()
    ImagesZipDataset(str(tmp_path / "own_order.zip")).save(iter(files.items()))
    with zipfile.ZipFile(tmp_path / "own_order.zip") as archive:
        assert archive.namelist() == ["b2.jpg", "a1.jpg", "c3.jpg"]
    assert sorted(os.listdir(tmp_path)) == ["mapping.zip", "own_order.zip", "stream.zip"]


def test_loading_reads_members_on_demand_and_pickles_as_a_path(tmp_path):
    files = {f"{i}.jpg": _jpg(i) for i in range(3)}
    dataset = ImagesZipDataset(str(tmp_path / "images.zip"))
    dataset.save(files)
    members = dataset.load()
    assert isinstance(members, ZipMembers) and len(members) == 3 and "9.jpg" not in members
    assert len(pickle.dumps(members)) < 1_000  # names and a path, not 3 x 256 x 256 jpgs
    assert pickle.loads(pickle.dumps(members))["1.jpg"] == files["1.jpg"]
    with pytest.raises(KeyError):
        members["9.jpg"]


def test_a_stream_that_fails_leaves_no_zip_and_no_temporary_file(tmp_path):
    def failing():
        yield "a.jpg", _jpg(0)
        raise RuntimeError("the generator broke mid-way")

    with pytest.raises(DatasetError, match="broke mid-way"):
        ImagesZipDataset(str(tmp_path / "images.zip")).save(failing())
    assert os.listdir(tmp_path) == []
    with pytest.raises(DatasetError, match="given twice"):
        ImagesZipDataset(str(tmp_path / "images.zip")).save(
            iter([("a.jpg", b"1"), ("a.jpg", b"2")])
        )
    with pytest.raises(DatasetError, match="flat"):
        ImagesZipDataset(str(tmp_path / "images.zip")).save(iter([("sub/a.jpg", b"1")]))
    assert os.listdir(tmp_path) == []


_KILLED_WRITER = """
import sys, time
from kedro.io.core import Version
from podium.datasets import ImagesZipDataset

def entries():
    for i in range(1000):
        yield f"{i:04d}.jpg", bytes(50_000)
        if i == 2:
            open(sys.argv[2], "w").close()  # three entries written: kill me now
            time.sleep(60)

ImagesZipDataset(sys.argv[1], version=Version(None, "2026-01-02T00.00.00.000Z")).save(entries())
"""


def test_a_run_killed_mid_zip_leaves_no_images_zip_that_looks_finished(tmp_path):
    target = tmp_path / "images.zip"
    finished = {"old.jpg": _jpg(0)}
    ImagesZipDataset(str(target), version=Version(None, "2026-01-01T00.00.00.000Z")).save(finished)
    marker = tmp_path / "three_written"
    writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target), str(marker)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert writer.poll() is None and time.monotonic() < deadline, "writer did not start"
            time.sleep(0.05)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait(timeout=30)
    killed = target / "2026-01-02T00.00.00.000Z"
    (left,) = killed.iterdir()  # only the temporary file of the killed run
    assert left.name.endswith(".partial") and left.name != "images.zip"
    assert left.stat().st_size > 0 and not zipfile.is_zipfile(left)  # no central directory
    # the next run (or a person) finds the last complete zip, not the half one
    assert dict(ImagesZipDataset(str(target), version=Version(None, None)).load()) == finished
