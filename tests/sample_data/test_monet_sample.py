"""The generated Monet sample: layout, names, counts, the TFRecord copy of the jpgs, unpaired
domains, determinism, preview."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tfrecord
from matplotlib.figure import Figure

from podium.layouts.monet import TFREC_FEATURES, index_monet, read_images
from podium.sample_data.drawing import decode_image
from podium.sample_data.monet import MonetSampleParams, contact_sheet, generate_monet_sample

TINY = {"n_photos": 5, "n_monet": 3}
NAME = re.compile(r"^(photo|monet)_jpg/[0-9a-f]{10}\.jpg$")
DEFAULTS = MonetSampleParams()
SHARD = re.compile(r"^(?P<domain>photo|monet)_tfrec/(?P=domain)(?P<k>\d{2})-(?P<n>\d+)\.tfrec$")


@pytest.fixture(scope="module")
def sample() -> dict[str, bytes]:
    return generate_monet_sample(TINY, seed=11)


def test_defaults_keep_the_real_shape():
    assert DEFAULTS["size"] == 256
    assert DEFAULTS["n_monet"] >= 30 and DEFAULTS["n_photos"] > DEFAULTS["n_monet"]


def test_layout_names_and_counts(sample):
    jpgs = {k for k in sample if "_jpg/" in k}
    assert all(NAME.match(k) for k in jpgs), [k for k in jpgs if not NAME.match(k)]
    shards = [SHARD.match(k) for k in sample if k not in jpgs]
    assert all(shards), [k for k in sample if k not in jpgs]
    # the competition's shards: photo00-352.tfrec, ..., the count in the name
    for domain, count in (("photo", TINY["n_photos"]), ("monet", TINY["n_monet"])):
        mine = [m for m in shards if m["domain"] == domain]
        assert sorted(int(m["k"]) for m in mine) == list(range(min(count, len(mine))))
        assert sum(int(m["n"]) for m in mine) == count
    assert sum(k.startswith("photo_jpg/") for k in sample) == TINY["n_photos"]
    assert sum(k.startswith("monet_jpg/") for k in sample) == TINY["n_monet"]
    stems = [k.split("/")[1] for k in jpgs]
    assert len(set(stems)) == len(stems)  # unique across both folders
    for data in (sample[k] for k in jpgs):
        assert data[:3] == b"\xff\xd8\xff"  # jpg
        image = decode_image(data)
        assert image.shape == (256, 256, 3)


def test_loader_indexes_and_reads_the_sample(sample, tmp_path):
    for rel, data in sample.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    index = index_monet(tmp_path)
    assert index["domain"].value_counts().to_dict() == {"photo": 5, "monet": 3}
    assert all(Path(p).is_absolute() for p in index["path"])
    images, problems = read_images(index["path"], expected_size=(256, 256))
    assert len(images) == 8 and problems.empty


def test_the_tfrecords_hold_the_jpgs_and_read_back_as_the_same_images(sample, tmp_path):
    for rel, data in sample.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    # the competition's shard counts by default (20 and 5), at most one shard per image
    shards = {d: sorted((tmp_path / f"{d}_tfrec").glob("*.tfrec")) for d in ("photo", "monet")}
    assert (len(shards["photo"]), len(shards["monet"])) == (5, 3)
    jpg, tfrec = index_monet(tmp_path, "jpg"), index_monet(tmp_path, "tfrec")
    assert tfrec["name"].tolist() == jpg["name"].tolist()
    from_jpg, _ = read_images(jpg["path"], expected_size=(256, 256))
    from_tfrec, problems = read_images(tfrec["path"], expected_size=(256, 256))
    assert problems.empty and len(from_tfrec) == 8
    for a, b in zip(from_jpg, from_tfrec, strict=True):
        np.testing.assert_array_equal(a, b)
    # the very jpg bytes, as tfrecord's own reader gives them
    for domain in ("photo", "monet"):
        records = [
            r
            for shard in shards[domain]
            for r in tfrecord.tfrecord_loader(str(shard), None, TFREC_FEATURES)
        ]
        assert {r["image_name"].decode(): r["image"] for r in records} == {
            k.split("/")[1][:-4]: v for k, v in sample.items() if k.startswith(f"{domain}_jpg/")
        }
        assert {r["target"] for r in records} == {domain.encode()}


def test_no_tfrecords_when_asked_for_none():
    files = generate_monet_sample(
        {"n_photos": 2, "n_monet": 1, "size": 64, "photo_tfrec_shards": 0, "monet_tfrec_shards": 0},
        seed=3,
    )
    assert all("_jpg/" in k for k in files) and len(files) == 3
    with pytest.raises(ValueError, match="photo_tfrec_shards"):
        MonetSampleParams.of({"photo_tfrec_shards": -1})


def test_paintings_look_painted_not_photographed(sample):
    """Paintings: pastel (lifted shadows), softer fine detail than photos; not copies."""

    def stack(prefix):
        return np.stack([decode_image(v) for k, v in sample.items() if k.startswith(prefix)])

    photos, paintings = stack("photo_jpg/").astype(float), stack("monet_jpg/").astype(float)
    # lifted shadows: the darkest percentile of a painting is brighter than a photo's
    dark = lambda x: np.percentile(x.mean(-1), 2, axis=(1, 2)).mean()  # noqa: E731
    assert dark(paintings) > dark(photos)
    # no painting is a re-coloured photo: structure (luminance correlation) differs
    for painting in paintings:
        for photo in photos:
            a, b = painting.mean(-1).ravel(), photo.mean(-1).ravel()
            assert abs(np.corrcoef(a, b)[0, 1]) < 0.9


def test_same_seed_same_bytes_other_seed_differs():
    tiny = {"n_photos": 2, "n_monet": 1, "size": 64}
    a, b = generate_monet_sample(tiny, seed=3), generate_monet_sample(tiny, seed=3)
    assert a == b  # the TFRecord shards too
    c = generate_monet_sample(tiny, seed=4)
    assert {k for k in a if "_jpg/" in k} != {k for k in c if "_jpg/" in k}  # other names
    assert sorted(a.values()) != sorted(c.values())  # other pictures
    assert decode_image(next(iter(a.values()))).shape == (64, 64, 3)


def test_unknown_or_bad_parameters_are_refused():
    with pytest.raises(ValueError, match=r"sample_data\.monet\.n_paintings.*allowed keys.*n_monet"):
        generate_monet_sample({"n_paintings": 3}, seed=0)
    with pytest.raises(ValueError, match="palette_strength"):
        generate_monet_sample({"palette_strength": 2}, seed=0)


def test_contact_sheet(sample, tmp_path):
    fig = contact_sheet(sample, n=4)
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").stat().st_size > 10_000
    titles = [ax.get_title() for ax in fig.axes]
    assert sum(t.startswith("photo:") for t in titles) == 4
    assert sum(t.startswith("monet:") for t in titles) == 3


def test_competition_size_is_accepted_and_growing_the_count_keeps_the_smaller_sample():
    # the real data's shape: 7,038 photos and 300 Monets at 256 x 256 (checked, not drawn)
    full = MonetSampleParams.of({"n_photos": 7038, "n_monet": 300, "size": 256})
    assert (full["n_photos"], full["n_monet"], full["size"]) == (7038, 300, 256)
    # each image draws from its own stream: 8x the photos is the 1x sample plus new ones,
    # so a scale run's first photos are the small run's photos
    small = generate_monet_sample({"n_photos": 2, "n_monet": 1, "size": 64}, seed=5)
    large = generate_monet_sample({"n_photos": 16, "n_monet": 1, "size": 64}, seed=5)
    small_photos = {k: v for k, v in small.items() if k.startswith("photo_jpg/")}
    assert small_photos.items() <= large.items()
    assert sum(k.startswith("photo_jpg/") for k in large) == 16
    with pytest.raises(ValueError, match="n_photos"):
        MonetSampleParams.of({"n_photos": 0})
