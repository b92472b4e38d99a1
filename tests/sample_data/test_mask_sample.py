"""The generated face-mask sample: layout, labels, age mix, determinism, preview."""

from __future__ import annotations

import csv
import io
import re

import cv2
import numpy as np
import pytest

from podium.sample_data.mask import (
    EVAL_TRUTH_FILE,
    STEMS,
    TRAIN_TRUTH_FILE,
    MaskSampleParams,
    _draw_ages,
    contact_sheet,
    generate_mask_sample,
)

TINY = {
    "n_people": 6,
    "n_eval_people": 2,
    "width": 96,
    "height": 128,
    "png_share": 0.25,
    "jpeg_share": 0.25,
}
FOLDER = re.compile(r"^(\d{6})_(male|female)_Asian_(\d+)$")
IMAGE_ID = re.compile(r"^[0-9a-f]{40}\.jpg$")
DEFAULTS = MaskSampleParams()


@pytest.fixture(scope="module")
def sample() -> dict[str, bytes]:
    return generate_mask_sample(TINY, seed=3)


def _rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def _decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_defaults_are_the_competition_format():
    assert DEFAULTS["width"] == 384 and DEFAULTS["height"] == 512
    assert 0.06 <= DEFAULTS["old_share"] <= 0.09
    assert DEFAULTS["race"] == "Asian"


def test_train_layout(sample):
    rows = _rows(sample["train/train.csv"])
    assert list(rows[0]) == ["id", "gender", "race", "age", "path"]
    assert len(rows) == TINY["n_people"]
    exts = set()
    for r in rows:
        assert FOLDER.match(r["path"]), r["path"]
        assert r["path"] == f"{r['id']}_{r['gender']}_{r['race']}_{r['age']}"
        assert 18 <= int(r["age"]) <= 80
        files = sorted(k for k in sample if k.startswith(f"train/images/{r['path']}/"))
        assert len(files) == 7
        assert sorted(f.rsplit("/", 1)[1].rsplit(".", 1)[0] for f in files) == sorted(STEMS)
        exts |= {"." + f.rsplit(".", 1)[1] for f in files}
    assert exts == {".jpg", ".jpeg", ".png"}
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_images_decode_at_the_requested_size(sample):
    for path, data in sample.items():
        if path.startswith(("train/images/", "eval/images/")):
            img = _decode(data)
            assert img.shape == (TINY["height"], TINY["width"], 3), path
            if path.endswith(".png"):
                assert data[:8] == b"\x89PNG\r\n\x1a\n"
            else:
                assert data[:2] == b"\xff\xd8"


def test_eval_layout_and_truth(sample):
    info = _rows(sample["eval/info.csv"])
    assert list(info[0]) == ["ImageID", "ans"]
    assert len(info) == 7 * TINY["n_eval_people"]
    assert all(r["ans"] == "0" for r in info)
    assert all(IMAGE_ID.match(r["ImageID"]) for r in info)
    assert {f"eval/images/{r['ImageID']}" for r in info} == {
        k for k in sample if k.startswith("eval/images/")
    }
    truth = _rows(sample[EVAL_TRUTH_FILE])
    assert [t["ImageID"] for t in truth] == [r["ImageID"] for r in info]
    for t in truth:
        mask, gender, age = int(t["mask"]), int(t["gender"]), int(t["age"])
        age_cls = 0 if age < 30 else 1 if age < 60 else 2
        assert int(t["age_class"]) == age_cls
        assert int(t["ans"]) == mask * 6 + gender * 3 + age_cls
        assert mask == {"incorrect_mask": 1, "normal": 2}.get(t["stem"], 0)
    assert len({t["person"] for t in truth}) == TINY["n_eval_people"]


def test_train_truth_without_noise_matches_listing(sample):
    truth = _rows(sample[TRAIN_TRUTH_FILE])
    assert len(truth) == TINY["n_people"]
    assert all(t["listed_gender"] == t["true_gender"] for t in truth)
    assert all(t["swapped_incorrect_normal"] == "0" for t in truth)


def test_photos_differ_by_mask_state(sample):
    """The mask covers the lower face: normal vs mask photos differ most there."""
    folder = _rows(sample["train/train.csv"])[0]["path"]
    photos = {
        k.rsplit("/", 1)[1].rsplit(".", 1)[0]: _decode(v).astype(np.float32)
        for k, v in sample.items()
        if k.startswith(f"train/images/{folder}/")
    }
    h = TINY["height"]
    lower = slice(int(0.38 * h), int(0.55 * h))  # mouth and chin area
    upper = slice(int(0.15 * h), int(0.30 * h))  # forehead and eyes
    for k in range(1, 6):
        d_low = np.abs(photos[f"mask{k}"][lower] - photos["normal"][lower]).mean()
        d_up = np.abs(photos[f"mask{k}"][upper] - photos["normal"][upper]).mean()
        assert d_low > d_up


def test_deterministic_and_seed_dependent(sample):
    again = generate_mask_sample(TINY, seed=3)
    assert again == sample
    other = generate_mask_sample(TINY, seed=4)
    assert other.keys() != sample.keys()
    assert other["train/train.csv"] != sample["train/train.csv"]


def test_unknown_parameter_is_named():
    with pytest.raises(ValueError, match="n_persons") as err:
        generate_mask_sample({"n_persons": 3}, seed=0)
    assert "n_people" in str(err.value)  # the allowed keys are listed


@pytest.mark.parametrize(
    "bad",
    [
        {"old_share": 1.5},
        {"young_share": 0.6, "old_share": 0.5},
        {"width": 8},
        {"face_height": [0.5, 0.2]},
    ],
)
def test_bad_parameter_values(bad):
    with pytest.raises(ValueError):
        generate_mask_sample(bad, seed=0)


def test_age_mix_follows_parameters():
    params = {
        "n_people": 80,
        "n_eval_people": 0,
        "width": 32,
        "height": 48,
        "old_share": 0.075,
        "boundary_share": 0.08,
    }
    rows = _rows(generate_mask_sample(params, seed=1)["train/train.csv"])
    ages = np.array([int(r["age"]) for r in rows])
    assert abs((ages >= 60).mean() - 0.075) < 0.02
    assert abs(((ages >= 58) & (ages < 60)).mean() - 0.08) < 0.02
    assert abs((ages < 30).mean() - DEFAULTS["young_share"]) < 0.03
    assert ((ages >= 30) & (ages < 50)).any() and ((ages >= 50) & (ages < 58)).any()
    assert ages.min() >= 18 and ages.max() <= 80
    assert (ages < 60).mean() > 0.85
    assert {58, 59} <= set(ages.tolist())
    female = np.mean([r["gender"] == "female" for r in rows])
    assert abs(female - DEFAULTS["female_share"]) < 0.02


def test_age_allocation_at_competition_scale():
    """At the real set's size (2700 people) the bands match their shares closely."""
    ages = _draw_ages(np.random.default_rng(0), DEFAULTS, 2700)
    assert abs((ages >= 60).mean() - DEFAULTS["old_share"]) < 0.002
    assert abs(((ages >= 58) & (ages < 60)).mean() - DEFAULTS["boundary_share"]) < 0.002
    assert ages.min() >= DEFAULTS["min_age"] and ages.max() <= DEFAULTS["max_age"]
    assert np.median(ages[ages >= 60]) <= 64  # the old are mostly just over 60


def test_every_age_band_present_in_a_tiny_sample(sample):
    ages = [int(r["age"]) for r in _rows(sample["train/train.csv"])]
    assert any(a < 30 for a in ages)
    assert any(a >= 60 for a in ages)
    assert any(58 <= a < 60 for a in ages)


def test_label_noise_is_recorded():
    params = {
        **TINY,
        "gender_noise_share": 1.0,
        "swap_incorrect_normal_share": 1.0,
        "n_eval_people": 0,
    }
    files = generate_mask_sample(params, seed=2)
    truth = _rows(files[TRAIN_TRUTH_FILE])
    assert all(t["listed_gender"] != t["true_gender"] for t in truth)
    assert all(t["swapped_incorrect_normal"] == "1" for t in truth)
    assert [t["path"] for t in truth] == [r["path"] for r in _rows(files["train/train.csv"])]


def test_contact_sheet(sample, tmp_path):
    fig = contact_sheet(sample, n=6)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 6
    assert all(
        re.match(r"^(wear|incorrect|not wear)/(male|female)/(<30|30-59|>=60) \(\d+\)", t)
        for t in titles
    )
    out = tmp_path / "sheet.png"
    fig.savefig(out)
    assert out.stat().st_size > 1000


def test_full_size_generation_is_the_competition_photo_size():
    """At the default (competition) size every photo is 384 wide and 512 high; more people
    only means more folders (8x the default sample: n_people=720, n_eval_people=144)."""
    files = generate_mask_sample({"n_people": 2, "n_eval_people": 1}, seed=0)
    photos = [k for k in files if k.startswith(("train/images/", "eval/images/"))]
    assert len(photos) == 3 * 7
    for path in photos:
        assert _decode(files[path]).shape == (512, 384, 3), path
    rows = _rows(files["train/train.csv"])
    assert len(rows) == 2 and len(_rows(files["eval/info.csv"])) == 7
