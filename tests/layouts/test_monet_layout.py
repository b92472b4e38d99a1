"""podium.layouts.monet: the jpg folders (the default source), bad jpgs reported by name."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from podium.layouts.monet import MonetLayoutError, index_monet, read_image, read_images


def _jpg(size=(32, 32), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        buf, format="JPEG", quality=90
    )
    return buf.getvalue()


@pytest.fixture
def root(tmp_path) -> Path:
    for folder, names in (("photo_jpg", ["b1", "a0", "c2"]), ("monet_jpg", ["ff00aa", "0a"])):
        (tmp_path / folder).mkdir()
        for i, name in enumerate(names):
            (tmp_path / folder / f"{name}.jpg").write_bytes(_jpg(seed=i))
    return tmp_path


def test_index_lists_both_domains_sorted(root, caplog):
    (root / "photo_jpg" / "notes.txt").write_text("not an image")
    (root / "monet_jpg" / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level(logging.WARNING):
        index = index_monet(root)
    assert list(index.columns) == ["domain", "path", "name"]
    assert index["domain"].tolist() == ["photo"] * 3 + ["monet"] * 2
    assert index["name"].tolist() == ["a0", "b1", "c2", "0a", "ff00aa"]
    assert index["path"][0] == str(root.resolve() / "photo_jpg" / "a0.jpg")
    assert "notes.txt" in caplog.text  # ignored, but said so


def test_tfrecords_are_not_read(root, tmp_path):
    only_tfrec = tmp_path / "tfrec_only"
    for folder in ("photo_tfrec", "monet_tfrec"):
        (only_tfrec / folder).mkdir(parents=True)
        (only_tfrec / folder / "photo00-352.tfrec").write_bytes(b"\0" * 16)
    with pytest.raises(
        MonetLayoutError, match=r"TFRecord.*photo_tfrec/.*photo_jpg/ and monet_jpg/"
    ):
        index_monet(only_tfrec)
    # next to the jpg folders, tfrec folders are ignored
    (root / "photo_tfrec").mkdir()
    assert len(index_monet(root)) == 5


def test_missing_or_empty_folder_is_named(root, tmp_path):
    with pytest.raises(MonetLayoutError, match="does not exist"):
        index_monet(tmp_path / "nowhere")
    for f in (root / "monet_jpg").iterdir():
        f.unlink()
    with pytest.raises(MonetLayoutError, match=r"monet_jpg: holds no \.jpg"):
        index_monet(root)
    (root / "monet_jpg").rmdir()
    with pytest.raises(MonetLayoutError, match=r"monet_jpg.*missing"):
        index_monet(root)


def test_read_images_reports_truncated_unreadable_and_missing(root):
    good = sorted((root / "photo_jpg").glob("*.jpg"))
    truncated = root / "photo_jpg" / "truncated.jpg"
    data = _jpg(size=(64, 64), seed=5)
    truncated.write_bytes(data[: len(data) // 2])
    unreadable = root / "photo_jpg" / "unreadable.jpg"
    unreadable.write_bytes(b"this is not a jpeg at all")
    wrong_size = root / "photo_jpg" / "big.jpg"
    wrong_size.write_bytes(_jpg(size=(40, 32)))
    missing = root / "photo_jpg" / "gone.jpg"
    paths = [good[0], truncated, good[1], unreadable, missing, wrong_size, good[2]]

    images, problems = read_images(paths, expected_size=(32, 32))
    assert len(images) == 3 and all(im.shape == (32, 32, 3) for im in images)
    # the readable ones come back in input order
    expected = [np.asarray(Image.open(p).convert("RGB")) for p in good]
    assert all((a == b).all() for a, b in zip(images, expected, strict=True))
    reasons = dict(zip(problems["path"], problems["reason"], strict=True))
    assert list(problems.columns) == ["path", "reason"]
    assert reasons[str(truncated)].startswith("truncated or corrupt")
    assert reasons[str(unreadable)].startswith("unreadable")
    assert reasons[str(missing)] == "file not found"
    assert reasons[str(wrong_size)] == "size 40x32, expected 32x32"
    assert len(problems) == 4


def test_truncated_jpg_reported_even_if_pil_was_told_to_load_truncated(root):
    truncated = root / "photo_jpg" / "truncated.jpg"
    data = _jpg(size=(64, 64), seed=6)
    truncated.write_bytes(data[: len(data) // 2])
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        images, problems = read_images([truncated])
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    assert images == [] and problems["path"].tolist() == [str(truncated)]


def test_read_image_decodes_one_jpg_or_names_the_reason(root):
    path = sorted((root / "photo_jpg").glob("*.jpg"))[0]
    image, reason = read_image(path)
    assert reason is None and image.dtype == np.uint8 and image.shape == (32, 32, 3)
    assert (image == np.asarray(Image.open(path).convert("RGB"))).all()
    assert read_image(path, expected_size=(64, 64)) == (None, "size 32x32, expected 64x64")
    assert read_image(root / "photo_jpg" / "gone.jpg") == (None, "file not found")
    assert read_image(root / "photo_jpg") == (None, "unreadable: a folder, not a file")
