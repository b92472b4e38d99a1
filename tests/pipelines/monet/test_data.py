"""Photos read per item from disk: the same tensors, training and images.zip as when every
image was decoded up front, one batch alive at a time, bad photos skipped and named."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from podium.core.device import resolve_runtime
from podium.datasets import ImagesZipDataset
from podium.layouts.monet import index_monet, read_images
from podium.pipelines.monet import nodes
from podium.pipelines.monet.data import (
    JpegImages,
    LazyEntries,
    PairedBatches,
    encode_jpeg,
    to_tensor_images,
)
from podium.pipelines.monet.submission import translate, translated_jpegs
from podium.pipelines.monet.train import train_cyclegan
from tests.pipelines.monet.test_train import (
    DATA,
    LOSS,
    MODEL,
    OPTIMIZER,
    RUNTIME,
    TRAIN,
    load_state,
    same_state,
    same_weights,
)

TRANSLATE = dict(model=MODEL, input_size=16, output_size=40, runtime=RUNTIME)


def _write_jpgs(folder: Path, count: int, seed: int, size: tuple[int, int] = (24, 24)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        (folder / f"{seed:02d}{i:03d}.jpg").write_bytes(encode_jpeg(image, 90))


@pytest.fixture
def raw(tmp_path) -> Path:
    _write_jpgs(tmp_path / "photo_jpg", 7, seed=1)
    _write_jpgs(tmp_path / "monet_jpg", 3, seed=2, size=(30, 26))  # another size: resized
    return tmp_path


def _paths(raw: Path, domain: str) -> list[str]:
    index = index_monet(raw)
    return index.loc[index["domain"] == domain, "path"].tolist()


def _generator_weights() -> dict[str, torch.Tensor]:
    from podium.pipelines.monet.model import build_generator

    torch.manual_seed(0)
    return build_generator(MODEL).state_dict()


@pytest.mark.parametrize("size", [None, 20, 16])
def test_the_lazy_dataset_gives_the_tensors_of_the_up_front_decode(raw, size):
    for domain in ("photo", "monet"):
        paths = _paths(raw, domain)
        decoded, problems = read_images(paths)
        assert problems.empty
        lazy = JpegImages(paths, size)
        assert len(lazy) == len(paths)
        if size is None:
            expected = [torch.tensor(im).permute(2, 0, 1) for im in decoded]
        else:
            expected = list(to_tensor_images(decoded, size))
        for i, tensor in enumerate(expected):
            assert lazy[i].dtype == torch.uint8 and torch.equal(lazy[i], tensor)


def _train(photos, monets, checkpoint, runtime=RUNTIME, train=TRAIN, resume=None):
    return train_cyclegan(
        photos,
        monets,
        data=DATA,
        model=MODEL,
        loss=LOSS,
        optimizer=OPTIMIZER,
        train=train,
        seed=7,
        deterministic=True,
        runtime=runtime,
        checkpoint=checkpoint,
        resume=resume,
        progress=False,
    )


def _same_run(a, b) -> None:
    assert a.history == b.history
    assert same_weights(a.weights, b.weights)
    assert same_state(load_state(a.checkpoint), load_state(b.checkpoint))


def test_training_from_jpg_paths_equals_training_on_decoded_images(raw, tmp_path):
    photo_paths, monet_paths = _paths(raw, "photo"), _paths(raw, "monet")
    up_front = _train(read_images(photo_paths)[0], read_images(monet_paths)[0], tmp_path / "a.pt")
    size = DATA["load_size"]
    lazy = _train(JpegImages(photo_paths, size), JpegImages(monet_paths, size), tmp_path / "b.pt")
    _same_run(up_front, lazy)
    # decoded in two worker processes: still the same batches, the same run
    workers = resolve_runtime({"device": "cpu", "precision": "fp32", "num_workers": 2})
    _same_run(up_front, _train(JpegImages(photo_paths, size), JpegImages(monet_paths, size),
                               tmp_path / "c.pt", runtime=workers))  # fmt: skip


def test_resuming_from_jpg_paths_equals_an_uninterrupted_run(raw, tmp_path):
    size = DATA["load_size"]
    photos = JpegImages(_paths(raw, "photo"), size)
    monets = JpegImages(_paths(raw, "monet"), size)
    straight = _train(photos, monets, tmp_path / "straight.pt")
    first = _train(photos, monets, tmp_path / "first.pt", train=TRAIN | {"epochs_this_run": 1})
    resumed = _train(photos, monets, tmp_path / "second.pt", resume=first.checkpoint)
    assert [row["epoch"] for row in resumed.history] == [2, 3]
    assert same_weights(resumed.weights, straight.weights)
    assert resumed.history == straight.history[1:]


def test_an_epoch_serves_the_seeded_order_in_batches(raw):
    photos = JpegImages(_paths(raw, "photo"), 20)
    monets = JpegImages(_paths(raw, "monet"), 20)
    order_a, order_b = torch.tensor([6, 0, 3, 1, 5, 2, 4]), torch.tensor([2, 0, 1, 1, 0, 2, 2])
    steps = PairedBatches(photos, monets, order_a, order_b, batch_size=3)
    assert len(steps) == 3
    batch_a, batch_b = steps[2]  # the ragged last step: one pair
    assert batch_a.shape == (1, 3, 20, 20) and torch.equal(batch_a[0], photos[4])
    assert torch.equal(steps[0][1][0], monets[2]) and torch.equal(steps[0][0][2], photos[3])


class CountingImages(Dataset):
    """JpegImages that counts the images it has decoded so far (in this process)."""

    def __init__(self, images: JpegImages) -> None:
        self.images, self.loaded = images, 0

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index):
        self.loaded += 1
        return self.images.load(index)

    def __getitem__(self, index):
        return self.load(index)[0]


def test_translation_holds_no_more_than_one_batch_of_photos(raw, tmp_path):
    paths = _paths(raw, "photo")
    names = [Path(p).stem for p in paths]
    counting = CountingImages(JpegImages(paths, 16))
    alive = []

    def written():
        stream = translated_jpegs(
            _generator_weights(), counting, names, jpeg_quality=95, progress=False,
            batch_size=3, **TRANSLATE,
        )  # fmt: skip
        for done, entry in enumerate(stream):
            alive.append(counting.loaded - done)  # decoded, not yet in the zip
            yield entry

    ImagesZipDataset(str(tmp_path / "images.zip")).save(written())
    assert counting.loaded == len(paths) == len(alive)  # every photo decoded exactly once
    assert max(alive) <= 3  # never more than one batch between decoding and the zip
    assert alive[0] == 3 and alive[-1] == 1  # batches of 3, 3 and 1: streamed, not all at once


def test_the_streamed_zip_equals_the_zip_of_the_up_front_path(raw, tmp_path):
    paths, weights = _paths(raw, "photo"), _generator_weights()
    names = [Path(p).stem for p in paths]
    # the old path: every photo decoded, every translation in memory, one dict saved
    everything = translate(weights, read_images(paths)[0], batch_size=3, **TRANSLATE)
    old = {f"{n}.jpg": encode_jpeg(image, 95) for n, image in zip(names, everything, strict=True)}
    ImagesZipDataset(str(tmp_path / "old.zip")).save(old)
    stream = LazyEntries(
        lambda: translated_jpegs(
            weights, JpegImages(paths, 16), names, jpeg_quality=95, progress=False,
            batch_size=3, **TRANSLATE,
        )
    )  # fmt: skip
    ImagesZipDataset(str(tmp_path / "new.zip")).save(stream)
    with zipfile.ZipFile(tmp_path / "new.zip") as archive:
        assert archive.namelist() == sorted(old)
        assert {name: archive.read(name) for name in archive.namelist()} == old
    assert (tmp_path / "new.zip").read_bytes() == (tmp_path / "old.zip").read_bytes()


def test_an_unreadable_photo_is_skipped_and_named_not_a_crash(raw, tmp_path):
    paths = _paths(raw, "photo")
    broken = Path(paths[2])
    broken.write_bytes(broken.read_bytes()[:100])  # truncated after indexing
    names = [Path(p).stem for p in paths]
    skipped = []
    entries = list(
        translated_jpegs(
            _generator_weights(), JpegImages(paths, 16), names, jpeg_quality=95,
            on_skipped=lambda name, reason: skipped.append((name, reason)), progress=False,
            batch_size=3, **TRANSLATE,
        )
    )  # fmt: skip
    assert [name for name, _ in entries] == [f"{n}.jpg" for n in names if n != broken.stem]
    assert skipped == [(broken.stem, skipped[0][1])] and "truncated" in skipped[0][1]


def test_check_images_lists_unreadable_jpgs_and_keeps_no_pixels(raw):
    (raw / "photo_jpg" / "zz-broken.jpg").write_bytes(b"not a jpeg")
    index = index_monet(raw)
    photos, monets, report, metrics = nodes.check_images(index, {"device": "cpu"})
    assert list(photos.columns) == ["domain", "path", "name"]
    assert len(photos) == 7 and len(monets) == 3 and "zz-broken" not in set(photos["name"])
    assert report["path"].tolist() == [str(raw.resolve() / "photo_jpg" / "zz-broken.jpg")]
    assert report["reason"].str.startswith("unreadable").all()
    assert metrics["photo/unreadable"]["value"] == 1 and metrics["photo/read"]["value"] == 7


def test_zip_order_follows_file_names_not_stems():
    photos = pd.DataFrame({"name": ["a", "a-b", "a0"], "path": ["1", "2", "3"]})
    assert nodes._in_zip_order(photos)["name"].tolist() == ["a-b", "a", "a0"]  # '-' < '.' < '0'
