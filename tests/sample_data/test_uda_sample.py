"""The generated UDA sample: layout, labels, domain gap, determinism, preview."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from podium.layouts.uda import CLASSES, IGNORE_INDEX, index_uda, read_image, read_label
from podium.sample_data.drawing import decode_image
from podium.sample_data.uda import UdaSampleParams, contact_sheet, generate_uda_sample

TINY = {
    "n_train_source": 4,
    "n_val_source": 1,
    "n_train_target": 2,
    "n_val_target": 3,
    "n_test": 2,
}
DEFAULTS = UdaSampleParams()


@pytest.fixture(scope="module")
def sample() -> dict[str, bytes]:
    return generate_uda_sample(TINY, seed=7)


@pytest.fixture(scope="module")
def root(sample, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uda")
    for rel, data in sample.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_defaults_are_small_and_documented():
    assert DEFAULTS["source_width"] == 2 * DEFAULTS["source_height"]  # 2048x1024 in the real data
    assert DEFAULTS["target_width"] * 9 == DEFAULTS["target_height"] * 16  # 1920x1080
    assert all(DEFAULTS[k] >= 8 for k in ("n_train_source", "n_train_target"))


def test_competition_layout(sample):
    assert sorted(k for k in sample if k.endswith(".csv")) == [
        "sample_submission.csv",
        "test.csv",
        "train_source.csv",
        "train_target.csv",
        "val_source.csv",
        "val_target.csv",
    ]
    src = _rows(sample["train_source.csv"])
    assert list(src[0]) == ["id", "img_path", "gt_path"]
    assert src[0] == {
        "id": "TRAIN_SOURCE_0000",
        "img_path": "./train_source_image/TRAIN_SOURCE_0000.png",
        "gt_path": "./train_source_gt/TRAIN_SOURCE_0000.png",
    }
    assert _rows(sample["val_source.csv"])[0]["id"] == "VALID_SOURCE_000"  # 3 digits, as real
    tgt = _rows(sample["train_target.csv"])
    assert list(tgt[0]) == ["id", "img_path"]
    assert tgt[1]["img_path"] == "./train_target_image/TRAIN_TARGET_0001.png"
    assert _rows(sample["test.csv"])[0] == {
        "id": "TEST_0000",
        "img_path": "./test_image/TEST_0000.png",
    }
    assert list(_rows(sample["val_target.csv"])[0]) == ["id", "img_path", "gt_path"]
    for name, n in [("train_source", 4), ("val_source", 1), ("train_target", 2), ("test", 2)]:
        assert len(_rows(sample[f"{name}.csv"])) == n
    assert not any(k.startswith("test_gt") for k in sample)  # test labels are never written


def test_sample_submission_has_one_row_per_test_image_and_class(sample):
    rows = _rows(sample["sample_submission.csv"])
    assert list(rows[0]) == ["id", "mask_rle"]
    assert len(rows) == TINY["n_test"] * len(CLASSES)
    assert [r["id"] for r in rows[:12]] == [f"TEST_0000_class_{c}" for c in range(12)]
    assert rows[12]["id"] == "TEST_0001_class_0"
    assert {r["mask_rle"] for r in rows} == {"-1"}


def test_loader_reads_every_image_and_label(root):
    index = index_uda(root)
    assert set(index) == {
        "train_source",
        "val_source",
        "train_target",
        "val_target",
        "test",
        "sample_submission",
    }
    for split in ("train_source", "val_source", "val_target"):
        for img_path, gt_path in zip(
            index[split]["img_path"], index[split]["gt_path"], strict=True
        ):
            assert Path(img_path).is_absolute()
            image = read_image(img_path)
            label = read_label(gt_path, image.shape)  # validates size and class values
            assert image.dtype == np.uint8 and label.dtype == np.uint8
    src = read_image(index["train_source"]["img_path"][0])
    tgt = read_image(index["test"]["img_path"][0])
    assert src.shape == (DEFAULTS["source_height"], DEFAULTS["source_width"], 3)
    assert tgt.shape == (DEFAULTS["target_height"], DEFAULTS["target_width"], 3)


def test_labels_hold_only_known_values_and_every_class_appears_in_source(sample):
    seen = set()
    for rel, data in sample.items():
        if "_gt/" not in rel:
            continue
        label = decode_image(data, mode=None)
        assert label.ndim == 2
        values = set(np.unique(label).tolist())
        assert values <= set(range(12)) | {IGNORE_INDEX}, rel
        if rel.startswith("train_source_gt/"):
            seen |= values
    assert set(range(12)) <= seen


def test_target_is_fisheye_darker_and_warmer(sample):
    def stack(prefix):
        return [decode_image(v) for k, v in sorted(sample.items()) if k.startswith(prefix)]

    src = np.stack(stack("train_source_image/")).astype(float)
    tgt = np.stack(stack("val_target_image/") + stack("train_target_image/")).astype(float)
    # colour and light: darker and warmer (red over blue) than the source
    assert tgt.mean() < src.mean() - 15
    warm = lambda x: x[..., 0].mean() / x[..., 2].mean()  # noqa: E731
    assert warm(tgt) > warm(src) * 1.2
    # fisheye: black corners outside the image circle, labelled background
    h, w = tgt.shape[1:3]
    for y, x in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)]:
        assert (tgt[:, y, x] <= 1).all()
    for k in sample:
        if k.startswith("val_target_gt/"):
            label = decode_image(sample[k], mode=None)
            assert label[0, 0] == label[-1, -1] == IGNORE_INDEX
            assert label[-1, w // 2] == IGNORE_INDEX  # the ego vehicle's bonnet
            centre = label[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3]
            assert (centre != IGNORE_INDEX).mean() > 0.9
    # the vignette darkens the rim of the image circle relative to the centre
    ring = tgt[:, h // 2, 2:12].mean()
    middle = tgt[:, h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].mean()
    assert ring < middle


def test_target_labels_follow_the_distortion(sample):
    """Target pixels come from a fisheye remap of a pinhole render, and so do their labels."""
    from podium.sample_data.uda import _fisheye_geometry

    w, h = DEFAULTS["target_width"], DEFAULTS["target_height"]
    map_x, map_y, inside, *_ = _fisheye_geometry(w, h, DEFAULTS["fisheye_max_angle_deg"], 1.0)
    row = h // 5  # a straight output row above the centre ...
    cols = np.where(inside[row])[0]
    bend = map_y[row, cols].min() - map_y[row, w // 2]
    assert bend < -10  # ... comes from a row of the pinhole render that bends away at the sides
    # radial stretch: the edge of the circle samples the pinhole render far beyond the centre
    assert map_x[h // 2, cols.max()] - map_x[h // 2, w // 2] > 2 * (cols.max() - w // 2)
    label = decode_image(sample["val_target_gt/VALID_TARGET_0000.png"], mode=None)
    assert label.shape == (h, w)
    assert not (label[h // 2 + 10 :] == 8).any()  # no sky below the horizon after remapping
    assert (label[inside] != 255).mean() > 0.8


def test_same_seed_same_bytes_other_seed_differs():
    tiny = {
        "n_train_source": 1,
        "n_val_source": 1,
        "n_train_target": 1,
        "n_val_target": 0,
        "n_test": 1,
        "source_width": 128,
        "source_height": 64,
        "target_width": 128,
        "target_height": 72,
    }
    a, b = generate_uda_sample(tiny, seed=1), generate_uda_sample(tiny, seed=1)
    assert a == b
    c = generate_uda_sample(tiny, seed=2)
    assert a.keys() == c.keys()
    assert (
        a["train_source_image/TRAIN_SOURCE_0000.png"]
        != c["train_source_image/TRAIN_SOURCE_0000.png"]
    )
    assert a["test_image/TEST_0000.png"] != c["test_image/TEST_0000.png"]
    assert not any(k.startswith("val_target") for k in a)  # n_val_target = 0 writes none


def test_unknown_or_bad_parameters_are_refused():
    with pytest.raises(ValueError, match=r"sample_data\.uda\.n_imgs.*allowed keys.*n_train_source"):
        generate_uda_sample({"n_imgs": 3}, seed=0)
    with pytest.raises(ValueError, match="n_test"):
        generate_uda_sample({"n_test": 0}, seed=0)
    with pytest.raises(ValueError, match="fisheye_max_angle_deg"):
        generate_uda_sample({"fisheye_max_angle_deg": 95}, seed=0)


def test_contact_sheet(sample, tmp_path):
    fig = contact_sheet(sample, n=4)
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").stat().st_size > 10_000
    titles = [ax.get_title() for ax in fig.axes]
    assert any(re.match(r"source: TRAIN_SOURCE_\d{4}", t) for t in titles)
    assert any(re.match(r"target: VALID_TARGET_\d{4}", t) for t in titles)


def test_the_files_come_one_at_a_time_and_equal_the_whole_sample(sample):
    from podium.sample_data.uda import iter_uda_sample

    stream = iter_uda_sample(TINY, seed=7)
    first_path, first_bytes = next(stream)  # one image drawn, nothing else yet
    assert first_path == "train_source_image/TRAIN_SOURCE_0000.png"
    assert {first_path: first_bytes, **dict(stream)} == sample


def test_the_competition_full_image_sizes_are_drawn():
    from podium.sample_data.uda import render_source, render_target

    full = {
        "source_width": 2048,
        "source_height": 1024,
        "target_width": 1920,
        "target_height": 1080,
    }
    p = UdaSampleParams.of(full)  # the generator's own validation accepts the real sizes
    image, label = render_source(np.random.default_rng(0), 2048, 1024, p)
    assert image.shape == (1024, 2048, 3) and label.shape == (1024, 2048)
    assert set(np.unique(label)) <= set(range(len(CLASSES))) | {IGNORE_INDEX}
    image, label = render_target(np.random.default_rng(1), 1920, 1080, p)
    assert image.shape == (1080, 1920, 3) and label.shape == (1080, 1920)
    assert len(set(np.unique(label)) - {IGNORE_INDEX}) >= 6  # a street, not a blank frame
    with pytest.raises(ValueError, match="source_width"):
        UdaSampleParams.of({"source_width": 8192})
