"""The competition's other half: the TFRecord shards (``monet.source: tfrec``), read with the
tfrecord package, give the jpgs' images, names and order, so the same training; a corrupt
or cut record is reported like a broken jpg, a bad layout names the folder and the fix."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tfrecord

from podium.core.config import ParameterError
from podium.layouts.monet import (
    TFREC_FEATURES,
    MonetLayoutError,
    index_monet,
    read_image,
    read_images,
    read_record,
)
from podium.pipelines.monet import nodes
from podium.pipelines.monet.data import JpegImages
from podium.pipelines.monet.train import train_cyclegan
from podium.sample_data.monet import generate_monet_sample, tfrecord_shards
from tests.conftest import write_tree
from tests.pipelines.monet.test_train import (
    DATA,
    LOSS,
    MODEL,
    OPTIMIZER,
    RUNTIME,
    TRAIN,
    same_weights,
)

SAMPLE = {"n_photos": 7, "n_monet": 4, "size": 48, "photo_tfrec_shards": 3}
RUNTIME_PARAMS = {"device": "cpu", "precision": "fp32", "num_workers": 0}


@pytest.fixture(scope="module")
def sample() -> dict[str, bytes]:
    return generate_monet_sample(SAMPLE, seed=5)


@pytest.fixture
def root(sample, tmp_path) -> Path:
    return write_tree(sample, tmp_path / "monet")


def _shard(root: Path, domain: str, k: int = 0) -> Path:
    return sorted((root / f"{domain}_tfrec").glob("*.tfrec"))[k]


def test_both_halves_index_the_same_names_in_the_same_order(root):
    jpg, tfrec = index_monet(root, "jpg"), index_monet(root, "tfrec")
    assert tfrec[["domain", "name"]].equals(jpg[["domain", "name"]])
    assert tfrec["domain"].value_counts().to_dict() == {"photo": 7, "monet": 4}
    assert all(Path(p.split("@")[0]).is_absolute() for p in tfrec["path"])
    # the records' images are the jpgs' images
    from_jpg, bad_jpg = read_images(jpg["path"])
    from_tfrec, bad_tfrec = read_images(tfrec["path"])
    assert bad_jpg.empty and bad_tfrec.empty and len(from_tfrec) == 11
    for a, b in zip(from_jpg, from_tfrec, strict=True):
        np.testing.assert_array_equal(a, b)


def test_podiums_records_are_what_the_tfrecord_package_reads(root):
    index = index_monet(root, "tfrec")
    by_offset = {
        tuple(p.rsplit("@", 1)): n for p, n in zip(index["path"], index["name"], strict=True)
    }
    for shard in sorted(root.glob("*_tfrec/*.tfrec")):
        records = list(tfrecord.tfrecord_loader(str(shard), None, TFREC_FEATURES))
        assert shard.stem.endswith(f"-{len(records)}")  # the competition's names carry counts
        offsets = [int(o) for s, o in by_offset if s == str(shard.resolve())]
        assert len(offsets) == len(records)
        for offset, record in zip(sorted(offsets), records, strict=True):
            ours = read_record(shard, offset)
            name = record["image_name"].decode()
            assert (
                ours["image_name"].decode()
                == name
                == by_offset[(str(shard.resolve()), str(offset))]
            )
            assert ours["image"] == record["image"]
            domain = shard.parent.name.split("_")[0]
            assert record["target"] == domain.encode()
            assert record["image"] == (root / f"{domain}_jpg" / f"{name}.jpg").read_bytes()


def test_a_corrupt_record_and_a_cut_shard_are_reported_not_dropped(root):
    shard = _shard(root, "photo")
    data = bytearray(shard.read_bytes())
    data[40] ^= 0xFF  # inside the first record's data
    shard.write_bytes(bytes(data))
    cut = _shard(root, "photo", 1)
    cut.write_bytes(cut.read_bytes()[:-100])  # its last record cut short
    (root / "photo_tfrec" / "zz-not-a-record.tfrec").write_bytes(b"\xff" * 64)
    (root / "photo_tfrec" / "notes.txt").write_text("not a shard")
    index = index_monet(root, "tfrec")
    photos = index[index["domain"] == "photo"]
    reasons = {path: read_image(path)[1] for path in photos["path"]}
    bad = {path: reason for path, reason in reasons.items() if reason}
    assert len(photos) == 7 + 1 and len(bad) == 3  # the garbage file: one unreadable row
    assert reasons[f"{shard.resolve()}@0"].startswith("truncated or corrupt")
    assert "checksum" in reasons[f"{shard.resolve()}@0"]
    assert any(p.startswith(str(cut.resolve())) and "cut short" in r for p, r in bad.items())
    assert any("zz-not-a-record" in p for p in bad)
    # the pipeline's check lists them with their reasons and goes on with the rest
    good, _, report, metrics = nodes.check_images(index, RUNTIME_PARAMS)
    assert len(good) == 5 and sorted(report["path"]) == sorted(bad)
    assert metrics["photo/unreadable"]["value"] == 3


def test_a_bad_tfrecord_layout_names_the_folder_and_the_fix(root, tmp_path):
    with pytest.raises(ParameterError, match=r"monet\.source.*jpg, tfrec"):
        index_monet(root, "tfrecord", parameter="monet.source")
    jpg_only = write_tree(
        {k: v for k, v in generate_monet_sample(SAMPLE, seed=5).items() if "_jpg/" in k},
        tmp_path / "jpg_only",
    )
    with pytest.raises(MonetLayoutError, match=r"photo_tfrec.*missing.*monet\.source: jpg"):
        index_monet(jpg_only, "tfrec")
    for shard in (root / "monet_tfrec").iterdir():
        shard.unlink()
    with pytest.raises(MonetLayoutError, match=r"monet_tfrec: holds no \.tfrec"):
        index_monet(root, "tfrec")


def test_two_records_of_one_name_are_refused(root, sample):
    monets = {k: v for k, v in sample.items() if k.startswith("monet_jpg/")}
    again = tfrecord_shards(monets, "monet", 1)  # the same images in one more shard
    (root / "monet_tfrec" / "monet99-4.tfrec").write_bytes(next(iter(again.values())))
    with pytest.raises(MonetLayoutError, match="more than one record"):
        index_monet(root, "tfrec")


def test_training_from_the_tfrecords_equals_training_from_the_jpgs(root, tmp_path):
    one_epoch = TRAIN | {"n_epochs": 1, "n_epochs_decay": 0}
    weights = {}
    for source in ("jpg", "tfrec"):
        photos, monets, report, _ = nodes.check_images(
            nodes.index_images(root, source), RUNTIME_PARAMS
        )
        assert report.empty
        weights[source] = train_cyclegan(
            JpegImages(photos["path"], DATA["load_size"]),
            JpegImages(monets["path"], DATA["load_size"]),
            data=DATA, model=MODEL, loss=LOSS, optimizer=OPTIMIZER, train=one_epoch,
            seed=3, deterministic=True, runtime=RUNTIME,
            checkpoint=tmp_path / f"{source}.pt", progress=False,
        ).weights  # fmt: skip
    assert same_weights(weights["jpg"], weights["tfrec"])


def test_the_shards_have_the_same_bytes_in_every_process(sample):
    """The data fingerprint of a generated sample must not change from one run to the next
    (kedro reproduce compares it): the Example's feature map is serialised in one order."""
    script = (
        "import hashlib; from podium.sample_data.monet import generate_monet_sample; "
        f"files = generate_monet_sample({SAMPLE!r}, seed=5); "
        "print(hashlib.sha256(b''.join(files[k] for k in sorted(files) "
        "if k.endswith('.tfrec'))).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for hash_seed in (1, 2, 3)
    }
    shards = b"".join(sample[k] for k in sorted(sample) if k.endswith(".tfrec"))
    assert digests == {hashlib.sha256(shards).hexdigest()}
