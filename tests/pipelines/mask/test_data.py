"""The crop store (Dask fan-out, cache, atomic entries, the crop report), minority
resampling and the lazy, augment-only-the-copies Dataset."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from podium.core.augment import build_transforms
from podium.core.config import ParameterError
from podium.core.distributed import dask_client
from podium.layouts.mask import index_mask_train, read_image
from podium.pipelines.mask.data import (
    CROPPED,
    FACE_NOT_FOUND,
    UNREADABLE,
    CropDataset,
    CropEntryError,
    CropFiles,
    CropJob,
    centre_crop,
    crop_settings,
    crop_to_store,
    oversample_minority,
    stream_crops,
)
from podium.pipelines.mask.nodes import photo_keys
from podium.sample_data.faces import random_appearance, render_face

CENTRE = {
    "method": "centre",
    "centre": {"height": 40, "width": 30},
    "output": {"height": 20, "width": 15},
    "window": 4,
}


def _photos(mask_root, n: int | None = None) -> tuple[list[str], list[str]]:
    index = index_mask_train(mask_root)
    if n is not None:
        index = index.iloc[:n]
    return index["path"].tolist(), photo_keys(index)


def _old_in_memory_crops(paths: list[str], crop: dict) -> np.ndarray:
    """What the pipeline kept in memory before the crop store: every centre crop stacked."""
    settings = crop_settings(crop)
    return np.stack([centre_crop(read_image(p), settings.centre, settings.output) for p in paths])


def _files(store, index: pd.DataFrame) -> CropFiles:
    return CropFiles(store, dict(enumerate(index["crop"])))


def _stamps(store) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*.npz")}


def test_centre_crop_takes_the_middle_and_resizes():
    image = np.zeros((100, 80, 3), np.uint8)
    image[30:70, 20:60] = 255  # exactly the central 40x40
    crop = centre_crop(image, (40, 40), (20, 20))
    assert crop.shape == (20, 20, 3) and crop.min() == 255
    # a region larger than the photo is clipped to it
    assert centre_crop(image, (500, 500), (10, 8)).shape == (10, 8, 3)


def test_an_unreadable_photo_is_reported_and_the_rest_are_cropped(mask_root, tmp_path):
    paths, keys = _photos(mask_root, 4)
    with open(paths[1], "r+b") as f:
        f.truncate(100)  # a truncated jpg
    index = crop_to_store(paths, keys, CENTRE, tmp_path / "store", progress=False)
    assert index["path"].tolist() == paths  # every photo accounted for, in order
    assert index["status"].tolist() == [CROPPED, UNREADABLE, CROPPED, CROPPED]
    assert paths[1] in index.loc[1, "reason"] and "replace" in index.loc[1, "reason"]
    assert index.loc[1, "crop"] == "" and (index["crop"] != "").sum() == 3
    files = CropFiles(tmp_path / "store", dict(enumerate(index["crop"])), blank=(20, 15))
    assert files[1].shape == (20, 15, 3) and files[1].max() == 0  # a black crop to predict on
    expected = _old_in_memory_crops([paths[0]], CENTRE)[0]
    assert np.array_equal(files[0], expected)


def test_face_crop_falls_back_to_the_centre_crop_and_reports_it(tmp_path):
    face = np.full((240, 320, 3), 120, np.uint8)
    render_face(face, random_appearance(np.random.default_rng(3)), (160, 120), 110)
    blank = np.full((240, 320, 3), 120, np.uint8)
    paths = []
    for name, image in (("face.png", face), ("blank.png", blank)):
        Image.fromarray(image).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    spec = {
        "method": "face",
        "centre": {"height": 200, "width": 150},
        "face": {"margin": 0.2, "min_confidence": 0.9, "downscale": 1.0},
        "output": {"height": 40, "width": 30},
        "window": 2,
    }
    index = crop_to_store(paths, ["face.png", "blank.png"], spec, tmp_path / "s", progress=False)
    assert index["status"].tolist() == [CROPPED, FACE_NOT_FOUND]
    assert "centre crop" in index.loc[1, "reason"]
    crops = _files(tmp_path / "s", index)
    assert np.array_equal(crops[1], centre_crop(blank, (200, 150), (40, 30)))
    # the face crop is tighter than the centre crop: fewer background pixels
    background = lambda c: np.mean(np.all(c == 120, axis=-1))  # noqa: E731
    assert background(crops[0]) < background(centre_crop(face, (200, 150), (40, 30)))


def test_bad_crop_settings_name_the_parameter(tmp_path):
    with pytest.raises(ParameterError, match=r"mask\.crop\.method.*centre, face"):
        crop_to_store([], [], {**CENTRE, "method": "middle"}, tmp_path)
    with pytest.raises(ParameterError, match=r"mask\.crop\.window"):
        crop_to_store([], [], {**CENTRE, "window": 0}, tmp_path)
    with pytest.raises(ValueError, match=r"photo keys \['a/b.jpg'\].*more than one photo"):
        crop_to_store(["x.jpg", "y.jpg"], ["a/b.jpg", "a/b.jpg"], CENTRE, tmp_path)


def test_the_driver_never_holds_more_than_the_window(mask_root, tmp_path):
    """A real LocalCluster: photos taken from the (lazy) job list and not yet returned as
    records are counted at every record; records carry no pixels (the workers wrote them)."""
    paths, keys = _photos(mask_root)  # 84 photos
    settings = crop_settings(CENTRE)
    store = tmp_path / "store"
    taken = 0

    def jobs():
        nonlocal taken
        for row, (path, key) in enumerate(zip(paths, keys, strict=True)):
            taken += 1
            yield CropJob(row, path, key, str(store), settings)

    window = 3
    held, records = [], []
    with dask_client(n_workers=2, threads_per_worker=2, processes=False) as client:
        for record in stream_crops(jobs(), client, window=window):
            records.append(record)
            held.append(taken - len(records))  # submitted, not yet returned
    assert max(held) == window  # the window is kept full, and never exceeded
    assert held[-1] == 0
    assert sorted(r["row"] for r in records) == list(range(len(paths)))
    assert all(isinstance(v, str | bool | int) for r in records for v in r.values())
    assert len(list(store.rglob("*.npz"))) == len(paths)  # one entry per photo, on disk


def test_a_rerun_crops_only_the_photo_whose_bytes_changed(mask_root, tmp_path):
    paths, keys = _photos(mask_root, 14)
    store = tmp_path / "store"
    first = crop_to_store(paths, keys, CENTRE, store, progress=False)
    assert not first["reused"].any()
    stamps = _stamps(store)

    second = crop_to_store(paths, keys, CENTRE, store, progress=False)
    assert second["reused"].all() and second["crop"].tolist() == first["crop"].tolist()
    assert _stamps(store) == stamps  # nothing written again

    # the same name, new bytes (another person's photo): cropped again, and only it
    replacement = np.asarray(Image.open(paths[13]).convert("RGB"))[::-1].copy()
    Image.fromarray(replacement).save(paths[3], format="JPEG", quality=90)
    with dask_client(n_workers=1, threads_per_worker=2, processes=False) as client:
        third = crop_to_store(paths, keys, CENTRE, store, client=client, progress=False)
    assert third["reused"].tolist() == [i != 3 for i in range(14)]
    assert third.loc[3, "crop"] != first.loc[3, "crop"]
    now = _stamps(store)
    assert first.loc[3, "crop"] not in now  # the entry of the old bytes is gone
    assert {k: v for k, v in now.items() if k != third.loc[3, "crop"]} == {
        k: v for k, v in stamps.items() if k != first.loc[3, "crop"]
    }
    assert np.array_equal(_files(store, third)[3], _old_in_memory_crops([paths[3]], CENTRE)[0])


def test_a_crop_setting_ablation_keeps_its_own_crops(mask_root, tmp_path):
    paths, keys = _photos(mask_root, 7)
    store = tmp_path / "store"
    base = crop_to_store(paths, keys, CENTRE, store, progress=False)
    larger = {**CENTRE, "output": {"height": 24, "width": 18}}
    other = crop_to_store(paths, keys, larger, store, progress=False)
    assert not other["reused"].any()
    assert {c.split("/")[0] for c in base["crop"]} != {c.split("/")[0] for c in other["crop"]}
    assert _files(store, other)[0].shape == (24, 18, 3)
    # back to the first settings: all reused; the window is no crop setting
    again = crop_to_store(paths, keys, {**CENTRE, "window": 1}, store, progress=False)
    assert again["reused"].all() and again["crop"].tolist() == base["crop"].tolist()
    # a centre crop does not depend on the face settings either
    with_face = {**CENTRE, "face": {"margin": 0.5, "min_confidence": 0.5, "downscale": 1.0}}
    assert crop_to_store(paths, keys, with_face, store, progress=False)["reused"].all()


def test_a_run_killed_mid_write_does_not_break_the_next_run(mask_root, tmp_path):
    paths, keys = _photos(mask_root, 7)
    store = tmp_path / "store"
    first = crop_to_store(paths, keys, CENTRE, store, progress=False)
    entries = [store / c for c in first["crop"]]
    # photo 0: killed before its rename (a half-written temporary file, no entry)
    entries[0].unlink()
    leftover = entries[0].with_name(f".{entries[0].name}.dead.tmp")
    leftover.write_bytes(b"PK\x03\x04 half a zip")
    # photo 1: its entry cut short on disk (truncated)
    entries[1].write_bytes(entries[1].read_bytes()[:50])
    # photo 2: a stray temporary file beside a good entry
    stray = entries[2].with_name(f".{entries[2].name}.dead.tmp")
    stray.write_bytes(b"")
    with pytest.raises(CropEntryError, match=rf"{entries[1]}.*damaged.*crop node"):
        _files(store, first)[1]
    nodes = r"--nodes=mask\.crops\.crop_training_images,mask\.crops\.crop_evaluation_images"
    with pytest.raises(CropEntryError, match=rf"{entries[0]} is missing.*{nodes}"):
        _files(store, first)[0]

    second = crop_to_store(paths, keys, CENTRE, store, progress=False)
    assert second["status"].eq(CROPPED).all()
    assert second["reused"].tolist() == [False, False] + [True] * 5
    assert not leftover.exists() and not stray.exists()
    assert not list(store.rglob("*.tmp"))
    expected = _old_in_memory_crops(paths, CENTRE)
    crops = _files(store, second)
    assert all(np.array_equal(crops[i], expected[i]) for i in range(7))


def test_the_lazy_dataset_gives_the_old_in_memory_tensors(mask_root, tmp_path):
    """CropFiles read in two DataLoader workers gives the very tensors of the old stacked
    array, resampled copies (augmented) included; what the workers get holds no pixels."""
    paths, keys = _photos(mask_root, 21)
    index = crop_to_store(paths, keys, CENTRE, tmp_path / "store", progress=False)
    in_memory = _old_in_memory_crops(paths, CENTRE)
    lazy = _files(tmp_path / "store", index)
    assert len(pickle.dumps(lazy)) < in_memory.nbytes / 5
    frame = oversample_minority(
        pd.DataFrame({"row": range(21), "age_class": np.arange(21) % 3}), "age_class", 2, 3
    )
    common = {
        "rows": frame["row"].to_numpy(),
        "targets": {"target": frame["age_class"].to_numpy()},
        "preprocess": build_transforms([{"name": "Normalize"}, {"name": "ToTensorV2"}]),
        "augment": build_transforms([{"name": "HorizontalFlip", "p": 1.0}]),
        "augmented": frame["augmented"].to_numpy(),
    }
    old = DataLoader(CropDataset(in_memory, **common), batch_size=8)
    new = DataLoader(CropDataset(lazy, **common), batch_size=8, num_workers=2)
    batches = 0
    for a, b in zip(old, new, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
        batches += 1
    assert batches == -(-len(frame) // 8)


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
