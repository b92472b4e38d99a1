"""podium.layouts.uda: indexing the competition layout and refusing bad input by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from podium.layouts.uda import (
    CLASSES,
    PALETTE,
    UdaLayoutError,
    colorize,
    index_uda,
    read_image,
    read_label,
)

H, W = 8, 16


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _label(value: int = 0) -> np.ndarray:
    label = np.full((H, W), value, np.uint8)
    label[:2] = 8
    label[-1, -1] = 255
    return label


@pytest.fixture
def root(tmp_path) -> Path:
    """A minimal valid copy of the layout: two labeled source images per split, etc."""
    rng = np.random.default_rng(0)

    def image():
        return rng.integers(0, 255, (H, W, 3), dtype=np.uint8)

    def labeled(csv_name, img_dir, gt_dir, prefix, n):
        lines = ["id,img_path,gt_path"]
        for i in range(n):
            _png(tmp_path / img_dir / f"{prefix}{i}.png", image())
            _png(tmp_path / gt_dir / f"{prefix}{i}.png", _label(i % 12))
            lines.append(f"{prefix}{i},./{img_dir}/{prefix}{i}.png,./{gt_dir}/{prefix}{i}.png")
        (tmp_path / csv_name).write_text("\n".join(lines) + "\n")

    def unlabeled(csv_name, img_dir, prefix, n):
        lines = ["id,img_path"]
        for i in range(n):
            _png(tmp_path / img_dir / f"{prefix}{i}.png", image())
            lines.append(f"{prefix}{i},./{img_dir}/{prefix}{i}.png")
        (tmp_path / csv_name).write_text("\n".join(lines) + "\n")

    labeled("train_source.csv", "train_source_image", "train_source_gt", "TRAIN_SOURCE_", 2)
    labeled("val_source.csv", "val_source_image", "val_source_gt", "VALID_SOURCE_", 1)
    unlabeled("train_target.csv", "train_target_image", "TRAIN_TARGET_", 2)
    unlabeled("test.csv", "test_image", "TEST_", 1)
    rows = [f"TEST_0_class_{c},-1" for c in range(12)]
    (tmp_path / "sample_submission.csv").write_text("id,mask_rle\n" + "\n".join(rows) + "\n")
    return tmp_path


def test_classes():
    assert CLASSES[0] == "road" and CLASSES[8] == "sky" and CLASSES[11] == "car"
    assert len(CLASSES) == 12 and PALETTE.shape == (12, 3)


def test_index_resolves_absolute_paths(root):
    index = index_uda(root)
    assert set(index) == {"train_source", "val_source", "train_target", "test", "sample_submission"}
    src = index["train_source"]
    assert list(src.columns) == ["id", "img_path", "gt_path"]
    assert src["id"].tolist() == ["TRAIN_SOURCE_0", "TRAIN_SOURCE_1"]
    assert src["img_path"][1] == str(root.resolve() / "train_source_image" / "TRAIN_SOURCE_1.png")
    assert list(index["test"].columns) == ["id", "img_path"]
    assert len(index["sample_submission"]) == 12
    image = read_image(src["img_path"][0])
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    label = read_label(src["gt_path"][0], image.shape)
    assert label.shape == (H, W) and set(np.unique(label)) == {0, 8, 255}
    assert colorize(label).shape == (H, W, 3)


def test_val_target_is_optional_and_read_when_present(root):
    _png(root / "val_target_image" / "V0.png", np.zeros((H, W, 3), np.uint8))
    _png(root / "val_target_gt" / "V0.png", _label())
    (root / "val_target.csv").write_text(
        "id,img_path,gt_path\nV0,./val_target_image/V0.png,./val_target_gt/V0.png\n"
    )
    assert index_uda(root)["val_target"]["id"].tolist() == ["V0"]


def test_missing_root_or_csv_names_it(root, tmp_path):
    with pytest.raises(UdaLayoutError, match="does not exist"):
        index_uda(tmp_path / "nowhere")
    (root / "train_target.csv").unlink()
    with pytest.raises(UdaLayoutError, match=r"train_target\.csv.*missing.*fix"):
        index_uda(root)


def test_missing_column_names_csv_column_and_fix(root):
    csv_path = root / "train_source.csv"
    csv_path.write_text(csv_path.read_text().replace("gt_path", "mask_path"))
    with pytest.raises(UdaLayoutError) as err:
        index_uda(root)
    message = str(err.value)
    assert "train_source.csv" in message and "'gt_path'" in message and "fix" in message
    assert "mask_path" in message  # what was found instead


def test_empty_cell_and_duplicate_id_name_the_csv(root):
    csv_path = root / "val_source.csv"
    csv_path.write_text(csv_path.read_text() + "VALID_SOURCE_9,,./x.png\n")
    with pytest.raises(UdaLayoutError, match=r"val_source\.csv.*'img_path' is empty in row"):
        index_uda(root)
    (root / "val_source.csv").write_text(
        "id,img_path,gt_path\n"
        "A,./train_source_image/TRAIN_SOURCE_0.png,./train_source_gt/TRAIN_SOURCE_0.png\n"
        "A,./train_source_image/TRAIN_SOURCE_1.png,./train_source_gt/TRAIN_SOURCE_1.png\n"
    )
    with pytest.raises(UdaLayoutError, match=r"val_source\.csv.*duplicate id.*A"):
        index_uda(root)


def test_missing_image_file_is_named(root):
    (root / "train_target_image" / "TRAIN_TARGET_1.png").unlink()
    with pytest.raises(UdaLayoutError) as err:
        index_uda(root)
    assert "train_target.csv" in str(err.value)
    assert "TRAIN_TARGET_1.png" in str(err.value)
    # without the file check the index still builds (e.g. to list what is there)
    assert len(index_uda(root, check_files=False)["train_target"]) == 2
    with pytest.raises(UdaLayoutError, match=r"TRAIN_TARGET_1\.png does not exist"):
        read_image(root / "train_target_image" / "TRAIN_TARGET_1.png")


def test_missing_label_file_is_named(root):
    (root / "val_source_gt" / "VALID_SOURCE_0.png").unlink()
    with pytest.raises(UdaLayoutError, match=r"label file.*'gt_path'.*VALID_SOURCE_0\.png"):
        index_uda(root)


def test_label_size_mismatch_names_file_and_sizes(root):
    gt = root / "train_source_gt" / "TRAIN_SOURCE_1.png"
    _png(gt, np.zeros((H, W + 2), np.uint8))
    image = read_image(root / "train_source_image" / "TRAIN_SOURCE_1.png")
    with pytest.raises(UdaLayoutError) as err:
        read_label(gt, image.shape)
    assert str(gt) in str(err.value)
    assert f"{W + 2}x{H}" in str(err.value) and f"{W}x{H}" in str(err.value)


def test_unknown_class_value_names_file_and_values(root):
    gt = root / "train_source_gt" / "TRAIN_SOURCE_0.png"
    bad = _label()
    bad[3, 3], bad[4, 4] = 12, 200
    _png(gt, bad)
    with pytest.raises(UdaLayoutError) as err:
        read_label(gt)
    assert str(gt) in str(err.value)
    assert "12, 200" in str(err.value)


def test_colour_label_and_unreadable_files_are_refused(root):
    gt = root / "train_source_gt" / "TRAIN_SOURCE_0.png"
    colour = np.zeros((H, W, 3), np.uint8)
    colour[..., 0] = 3
    _png(gt, colour)
    with pytest.raises(UdaLayoutError, match="differing channels"):
        read_label(gt)
    grey_rgb = np.repeat(_label()[..., None], 3, axis=2)
    _png(gt, grey_rgb)
    assert read_label(gt).shape == (H, W)  # equal channels are accepted
    broken = root / "train_source_image" / "TRAIN_SOURCE_0.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(UdaLayoutError, match=r"TRAIN_SOURCE_0\.png cannot be read"):
        read_image(broken)


def test_unparsable_csv_names_it(root):
    (root / "test.csv").write_bytes(b"")
    with pytest.raises(UdaLayoutError, match=r"test\.csv"):
        index_uda(root)


def test_an_undecodable_file_is_told_apart_from_a_bad_label(root):
    """A truncated PNG is one broken item (skipped and reported); a label of the wrong
    size is an error in the data (stops the run): the two raise different types."""
    from podium.layouts.uda import UdaUnreadableFile

    image = root / "train_source_image" / "TRAIN_SOURCE_1.png"
    image.write_bytes(image.read_bytes()[:80])
    with pytest.raises(UdaUnreadableFile, match=r"TRAIN_SOURCE_1\.png cannot be read"):
        read_image(image)
    gt = root / "train_source_gt" / "TRAIN_SOURCE_0.png"
    _png(gt, np.zeros((H, W + 2), np.uint8))
    with pytest.raises(UdaLayoutError) as err:
        read_label(gt, (H, W))
    assert not isinstance(err.value, UdaUnreadableFile)
