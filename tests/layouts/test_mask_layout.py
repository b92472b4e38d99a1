"""The face-mask layout loader on the generated sample and on broken copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from podium.layouts.mask import (
    STEMS,
    ImageReadError,
    MaskLayoutError,
    age_class,
    class_name,
    decode_class,
    encode_class,
    index_mask_eval,
    index_mask_train,
    read_eval_truth,
    read_image,
)
from podium.sample_data.mask import generate_mask_sample

TINY = {
    "n_people": 8,
    "n_eval_people": 2,
    "width": 64,
    "height": 96,
    "png_share": 0.2,
    "jpeg_share": 0.2,
    "young_share": 0.3,
    "boundary_share": 0.25,
    "old_share": 0.2,
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mask") / "mask"
    for rel, data in generate_mask_sample(TINY, seed=11).items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    return root


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    """A private copy to break."""
    dst = tmp_path / "mask"
    shutil.copytree(pristine, dst)
    return dst


def _csv(root: Path) -> Path:
    return root / "train" / "train.csv"


# ---------------------------------------------------------------------------- labels


def test_class_helpers_round_trip():
    seen = set()
    for m in range(3):
        for g in range(2):
            for a in range(3):
                c = encode_class(m, g, a)
                assert c == m * 6 + g * 3 + a
                assert decode_class(c) == (m, g, a)
                seen.add(c)
    assert seen == set(range(18))
    assert class_name(3) == "wear/female/<30"
    assert class_name(17) == "not wear/female/>=60"
    cs = np.arange(18)
    m, g, a = decode_class(cs)
    assert (encode_class(m, g, a) == cs).all()
    with pytest.raises(ValueError):
        decode_class(18)
    with pytest.raises(ValueError):
        encode_class(3, 0, 0)


def test_age_class_threshold():
    assert [age_class(x) for x in (18, 29, 30, 57, 58, 59, 60, 75)] == [0, 0, 1, 1, 1, 1, 2, 2]
    assert [age_class(x, 58) for x in (29, 30, 57, 58, 59, 60)] == [0, 1, 1, 2, 2, 2]
    assert age_class(np.array([20, 58, 61]), 58).tolist() == [0, 2, 2]
    with pytest.raises(ValueError):
        age_class(40, 25)


# ---------------------------------------------------------------------------- train


def test_index_train(pristine):
    df = index_mask_train(pristine)
    people = pd.read_csv(_csv(pristine), dtype=str)
    assert len(df) == 7 * len(people)
    assert (df.groupby("person").size() == 7).all()
    assert df["person_id"].unique().tolist() == people["id"].tolist()
    assert df["stem"].tolist()[:7] == list(STEMS)
    assert set(df["ext"].str.lower()) == {".jpg", ".jpeg", ".png"}
    assert all(Path(p).is_file() for p in df["path"])
    assert (df["class"] == df["mask"] * 6 + df["gender"] * 3 + df["age_class"]).all()
    assert df.loc[df["stem"].str.startswith("mask"), "mask"].eq(0).all()
    assert df.loc[df["stem"] == "incorrect_mask", "mask"].eq(1).all()
    assert df.loc[df["stem"] == "normal", "mask"].eq(2).all()
    expected_gender = df["person"].str.split("_").str[1].map({"male": 0, "female": 1})
    assert (df["gender"] == expected_gender).all()
    assert (df["age_class"] == age_class(df["age"].to_numpy())).all()
    assert df["class"].between(0, 17).all()


def test_threshold_58_changes_only_people_aged_58_59(pristine):
    a = index_mask_train(pristine, old_age_threshold=60)
    b = index_mask_train(pristine, old_age_threshold=58)
    changed = a["class"] != b["class"]
    assert changed.any()
    assert a.loc[changed, "age"].isin([58, 59]).all()
    assert changed[a["age"].isin([58, 59])].all()
    assert (b.loc[changed, "age_class"] == 2).all() and (a.loc[changed, "age_class"] == 1).all()
    assert (b.loc[changed, "class"] - a.loc[changed, "class"] == 1).all()


def test_upper_case_extension_and_hidden_files(root):
    folder = next(p for p in sorted((root / "train" / "images").iterdir()))
    src = next(folder.glob("normal.*"))
    src.rename(folder / "normal.JPG")
    (folder / "._mask1.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    df = index_mask_train(root)
    row = df[(df["person"] == folder.name) & (df["stem"] == "normal")]
    assert row["path"].iloc[0].endswith("normal.JPG")
    assert not df["path"].str.contains("/._").any()


def test_missing_person_folder(root):
    people = pd.read_csv(_csv(root), dtype=str)
    name = people["path"].iloc[1]
    shutil.rmtree(root / "train" / "images" / name)
    with pytest.raises(MaskLayoutError, match=name) as err:
        index_mask_train(root)
    assert "line 3" in str(err.value) and "remove its row" in str(err.value)


def test_malformed_folder_name(root):
    people = pd.read_csv(_csv(root), dtype=str)
    old = people.loc[0, "path"]
    bad = old.replace("_Asian_", "-Asian-")
    (root / "train" / "images" / old).rename(root / "train" / "images" / bad)
    people.loc[0, "path"] = bad
    people.to_csv(_csv(root), index=False)
    with pytest.raises(MaskLayoutError, match=bad) as err:
        index_mask_train(root)
    assert "<id>_<gender>_<race>_<age>" in str(err.value)


def test_folder_name_disagreeing_with_row(root):
    people = pd.read_csv(_csv(root), dtype=str)
    people.loc[0, "age"] = str(int(people.loc[0, "age"]) + 1)
    people.to_csv(_csv(root), index=False)
    with pytest.raises(MaskLayoutError, match=people.loc[0, "path"]):
        index_mask_train(root)


@pytest.mark.parametrize("stem", ["mask3", "incorrect_mask", "normal"])
def test_missing_photo(root, stem):
    folder = root / "train" / "images" / pd.read_csv(_csv(root), dtype=str)["path"].iloc[2]
    next(folder.glob(f"{stem}.*")).unlink()
    with pytest.raises(MaskLayoutError, match=stem) as err:
        index_mask_train(root)
    assert str(folder) in str(err.value)


def test_duplicate_photo(root):
    folder = root / "train" / "images" / pd.read_csv(_csv(root), dtype=str)["path"].iloc[0]
    src = next(folder.glob("mask2.*"))
    shutil.copy(src, folder / ("mask2.png" if src.suffix != ".png" else "mask2.jpg"))
    with pytest.raises(MaskLayoutError, match="mask2") as err:
        index_mask_train(root)
    assert "exactly one" in str(err.value)


def test_unknown_gender(root):
    people = pd.read_csv(_csv(root), dtype=str)
    people.loc[3, "gender"] = "unknown"
    people.to_csv(_csv(root), index=False)
    with pytest.raises(MaskLayoutError, match="unknown gender 'unknown'") as err:
        index_mask_train(root)
    assert "train.csv line 5" in str(err.value)


@pytest.mark.parametrize("column", ["gender", "age", "path"])
def test_missing_column(root, column):
    people = pd.read_csv(_csv(root), dtype=str).drop(columns=[column])
    people.to_csv(_csv(root), index=False)
    with pytest.raises(MaskLayoutError, match=f"'{column}'") as err:
        index_mask_train(root)
    assert "train.csv" in str(err.value)


def test_missing_train_csv(root):
    _csv(root).unlink()
    with pytest.raises(MaskLayoutError, match="train.csv"):
        index_mask_train(root)


def test_bad_threshold(pristine):
    with pytest.raises(ValueError, match="old_age_threshold"):
        index_mask_train(pristine, old_age_threshold=20)


# ---------------------------------------------------------------------------- eval


def test_index_eval_keeps_file_order(pristine):
    df = index_mask_eval(pristine)
    info = pd.read_csv(pristine / "eval" / "info.csv", dtype=str)
    assert df["ImageID"].tolist() == info["ImageID"].tolist()
    assert list(df.columns) == ["ImageID", "path"]
    assert all(Path(p).is_file() for p in df["path"])


def test_eval_missing_image(root):
    info = pd.read_csv(root / "eval" / "info.csv", dtype=str)
    image_id = info["ImageID"].iloc[4]
    (root / "eval" / "images" / image_id).unlink()
    with pytest.raises(MaskLayoutError, match=image_id) as err:
        index_mask_eval(root)
    assert "info.csv line 6" in str(err.value)


def test_eval_missing_column(root):
    info = pd.read_csv(root / "eval" / "info.csv", dtype=str).rename(columns={"ImageID": "image"})
    info.to_csv(root / "eval" / "info.csv", index=False)
    with pytest.raises(MaskLayoutError, match="'ImageID'") as err:
        index_mask_eval(root)
    assert "info.csv" in str(err.value)


def test_eval_duplicate_id(root):
    info = pd.read_csv(root / "eval" / "info.csv", dtype=str)
    info = pd.concat([info, info.iloc[:1]])
    info.to_csv(root / "eval" / "info.csv", index=False)
    with pytest.raises(MaskLayoutError, match=info["ImageID"].iloc[0]):
        index_mask_eval(root)


def test_eval_truth(pristine, root):
    truth = read_eval_truth(pristine)
    ids = index_mask_eval(pristine)["ImageID"]
    assert truth["ImageID"].tolist() == ids.tolist()
    assert (truth["ans"] == encode_class(truth["mask"], truth["gender"], truth["age_class"])).all()
    (root / "eval" / "_truth.csv").unlink()
    with pytest.raises(MaskLayoutError, match="evaluation-only"):
        read_eval_truth(root)


# ---------------------------------------------------------------------------- images


def test_read_image_all_extensions(pristine):
    df = index_mask_train(pristine)
    for ext in (".jpg", ".jpeg", ".png"):
        img = read_image(df.loc[df["ext"] == ext, "path"].iloc[0])
        assert img.shape == (TINY["height"], TINY["width"], 3) and img.dtype == np.uint8


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "missing"])
def test_read_image_errors_name_the_file(root, damage):
    df = index_mask_train(root)
    path = Path(df.loc[df["ext"] == ".jpg", "path"].iloc[0])
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not an image" * 20)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(ImageReadError, match=path.name) as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_read_image_decodes_bytes_already_read_like_the_file(pristine):
    """A crop worker hashes a photo's bytes and decodes those very bytes."""
    df = index_mask_train(pristine)
    for ext in (".jpg", ".png"):
        path = df.loc[df["ext"] == ext, "path"].iloc[0]
        data = Path(path).read_bytes()
        assert np.array_equal(read_image(path, data), read_image(path))
        with pytest.raises(ImageReadError, match=Path(path).name) as err:
            read_image(path, data[: len(data) // 3])  # the bytes decide, not the file
        assert "replace or remove the file" in str(err.value)


def test_a_person_folder_missing_from_train_csv_is_reported_not_silently_dropped(root, caplog):
    images = root / "train" / "images"
    listed = sorted(p for p in images.iterdir() if p.is_dir())[0]
    shutil.copytree(listed, images / "009999_female_Asian_30")
    (images / ".DS_Store_dir").mkdir()  # hidden: not a person
    with caplog.at_level("WARNING", logger="podium.layouts.mask"):
        df = index_mask_train(root)
    assert "009999_female_Asian_30" not in set(df["person"])
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("1 person folder(s)") and "009999_female_Asian_30" in message
    caplog.clear()
    shutil.rmtree(images / "009999_female_Asian_30")
    index_mask_train(root)
    assert not caplog.records
