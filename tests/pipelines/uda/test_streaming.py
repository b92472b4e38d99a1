"""Prediction, scoring and the submission stream image by image, and their writes are atomic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from podium.datasets.streams import ClassMapsDataset, CsvChunksDataset
from podium.layouts.uda import IGNORE_INDEX, NUM_CLASSES, UdaLayoutError
from podium.pipelines.uda import background as bg
from podium.pipelines.uda import data, evaluate, nodes
from podium.pipelines.uda.model import build_network
from podium.pipelines.uda.params import ModelsParams
from podium.pipelines.uda.submission import rle_encode, to_submission_size
from tests.conftest import REPO, soft_merged
from tests.pipelines.uda.conftest import TINY_PARAMS

RUNTIME = {"device": "cpu", "precision": "fp32", "num_workers": 0, "channels_last": False}


@pytest.fixture(scope="module")
def params() -> dict:
    base = yaml.safe_load((REPO / "conf" / "base" / "parameters_uda.yml").read_text())
    return soft_merged(base, {"uda": TINY_PARAMS["uda"]})["uda"]


@pytest.fixture(scope="module")
def weights(params) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    spec = ModelsParams.of(params["models"])["m1"]
    outputs = bg.num_outputs(params["data"]["background"])  # 13: background as class 12
    state = build_network(spec, outputs, "uda.models.m1").state_dict()
    return {f"m1/{s}/{k}": v for s in ("ema", "student") for k, v in state.items()}


@pytest.fixture
def images(pristine_uda_root) -> pd.DataFrame:
    index, _ = nodes.index_data(pristine_uda_root)
    sizes = {split: (54, 96) for split in index["split"].unique()}
    table, _, _ = data.inspect_images(index, sizes, progress=False)
    return table


def _old_submission(ids, class_maps, template_ids) -> pd.DataFrame:
    """The submission as podium once built it: every test image's rows in one dict."""
    rows = {}
    for image_id, class_map in zip(ids, class_maps, strict=True):
        for k in range(NUM_CLASSES):
            rows[f"{image_id}_class_{k}"] = rle_encode(class_map == k)
    return pd.DataFrame({"id": list(template_ids), "mask_rle": [rows[i] for i in template_ids]})


def test_prediction_streams_one_image_at_a_time_and_holds_no_earlier_map(
    tmp_path, monkeypatch, images, params, weights
):
    alive: list[weakref.ref] = []  # every class map handed out so far
    held: list[int] = []  # maps still alive each time the next image is read
    written: list[int] = []  # maps on disk each time the next image is read

    class Counting(data.PredictDataset):
        def __getitem__(self, index):
            held.append(sum(ref() is not None for ref in alive))
            written.append(len(list(tmp_path.glob(".maps.partial-*/*.png"))))
            return super().__getitem__(index)

    inference = {**params["inference"], "batch_size": 1}
    monkeypatch.setattr(nodes, "PredictDataset", Counting)  # counts reads of the real files
    stream = nodes.predict_split(
        weights, images, "val_target", params["data"], params["models"], inference, RUNTIME
    )
    assert held == []  # nothing is read or predicted before the writer asks

    def observed():
        for image_id, class_map in stream:
            assert len(held) == len(alive) + 1  # one image read per map, none ahead
            alive.append(weakref.ref(class_map))
            yield image_id, class_map
            del class_map

    folder = ClassMapsDataset(str(tmp_path / "maps"))
    folder.save(observed())
    n = int((images["split"] == "val_target").sum())
    assert len(alive) == n >= 2
    assert held == [0] * n  # no earlier map is alive while the next image is predicted ...
    assert written == list(range(n))  # ... because each was written before the next
    loaded = folder.load()
    expected = images.loc[images["split"] == "val_target", ["id", "height", "width"]]
    assert sorted(loaded) == sorted(expected["id"])
    for row in expected.itertuples(index=False):
        class_map = loaded[row.id]()
        assert class_map.shape == (row.height, row.width) and class_map.dtype == np.uint8


def test_streamed_predictions_equal_the_batched_in_memory_ones(images, params, weights):
    inference = {**params["inference"], "batch_size": 3}
    streamed = dict(
        nodes.predict_split(
            weights, images, "val_source", params["data"], params["models"], inference, RUNTIME
        )
    )
    frame = images[images["split"] == "val_source"]
    size = tuple(params["data"]["source_size"])
    stacked = np.stack([data.read_resized_image(p, size) for p in frame["img_path"]])
    from podium.core.device import resolve_runtime
    from podium.pipelines.uda.inference import inference_settings, load_members, predict_class_maps

    specs = ModelsParams.of(params["models"])
    settings = inference_settings(inference, ["m1"])
    members = load_members(weights, specs, "ema")
    (height,), (width,) = frame["height"].unique(), frame["width"].unique()
    in_memory = predict_class_maps(
        members, stacked, (height, width), settings, resolve_runtime(RUNTIME)
    )
    assert list(streamed) == frame["id"].tolist()
    for k, image_id in enumerate(frame["id"]):
        np.testing.assert_array_equal(streamed[image_id], in_memory[k])


def test_streamed_iou_equals_the_iou_over_stacked_arrays(tmp_path):
    rng = np.random.default_rng(0)
    rows, predictions, labels = [], {}, []
    for i in range(4):
        label = rng.integers(0, NUM_CLASSES, (30, 40)).astype(np.uint8)
        label[rng.random(label.shape) < 0.2] = IGNORE_INDEX
        prediction = np.where(rng.random(label.shape) < 0.6, label, rng.integers(0, 5, label.shape))
        prediction = np.where(prediction == IGNORE_INDEX, 0, prediction).astype(np.uint8)
        gt = tmp_path / f"V{i}.png"
        Image.fromarray(label).save(gt)
        split = "val_target" if i < 3 else "val_source"
        rows.append({"split": split, "id": f"V{i}", "img_path": "", "gt_path": str(gt),
                     "height": 30, "width": 40})  # fmt: skip
        predictions[f"V{i}"] = prediction
        labels.append(label)
    maps = ClassMapsDataset(str(tmp_path / "maps"))
    maps.save(predictions)
    lazy = maps.load()
    table = nodes.score_predictions(pd.DataFrame(rows), lazy, lazy)
    order = [f"V{i}" for i in range(4)]
    stacked_target = evaluate.class_iou(
        np.stack([predictions[i] for i in order[:3]]), np.stack(labels[:3])
    )
    target = table[table["split"] == "target"].reset_index(drop=True)
    np.testing.assert_array_equal(target["iou"].to_numpy(), stacked_target["iou"].to_numpy())
    np.testing.assert_array_equal(target["pixels"], stacked_target["pixels"])
    source = table[table["split"] == "source"].reset_index(drop=True)
    stacked_source = evaluate.class_iou(predictions["V3"][None], labels[3][None])
    np.testing.assert_array_equal(source["iou"].to_numpy(), stacked_source["iou"].to_numpy())


def _class_maps(n: int, shape=(54, 96)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {f"TEST_{i:04d}": rng.integers(0, NUM_CLASSES, shape).astype(np.uint8) for i in range(n)}


def test_the_streamed_submission_equals_the_in_memory_one(tmp_path):
    maps = _class_maps(3)
    folder = ClassMapsDataset(str(tmp_path / "maps"))
    folder.save(maps)
    template = pd.DataFrame({"id": [f"{t}_class_{k}" for t in maps for k in range(NUM_CLASSES)]})
    bad = pd.DataFrame(columns=list(data.BAD_COLUMNS))
    csv = CsvChunksDataset(str(tmp_path / "submission.csv"))
    chunks = nodes.write_submission(folder.load(), template, bad)
    csv.save(chunks)
    streamed = csv.load()
    resized = [to_submission_size(m) for m in maps.values()]
    expected = _old_submission(list(maps), resized, template["id"])
    pd.testing.assert_frame_equal(streamed, expected)
    # rows of one image need not be contiguous: the template's order is kept
    shuffled = template.sample(frac=1.0, random_state=0).reset_index(drop=True)
    csv.save(nodes.write_submission(folder.load(), shuffled, bad))
    pd.testing.assert_frame_equal(csv.load(), _old_submission(list(maps), resized, shuffled["id"]))


def test_the_labelled_share_is_that_of_the_written_masks(tmp_path):
    from podium.pipelines.uda.submission import labelled_share

    maps = _class_maps(2)
    maps["TEST_0001"][:10] = IGNORE_INDEX  # background: the top rows
    folder = ClassMapsDataset(str(tmp_path / "maps"))
    folder.save(maps)
    template = pd.DataFrame({"id": [f"{t}_class_{k}" for t in maps for k in range(NUM_CLASSES)]})
    bad = pd.DataFrame(columns=list(data.BAD_COLUMNS))
    rows = pd.concat(list(nodes.write_submission(folder.load(), template, bad)))
    width, height = 960, 540
    shares = [
        labelled_share(
            rows["mask_rle"].iloc[i * NUM_CLASSES : (i + 1) * NUM_CLASSES], (height, width)
        )
        for i in range(2)
    ]
    assert shares[0] == 1.0 and shares[1] == pytest.approx(1 - 10 / 54)
    metrics = nodes.submission_metrics(folder.load())
    assert metrics["labelled_share"]["value"] == pytest.approx(np.mean(shares))
    assert metrics["labelled_share_min"]["value"] == pytest.approx(shares[1])


def test_an_unreadable_test_image_gets_empty_masks_and_a_missing_one_stops(tmp_path):
    maps = _class_maps(1)
    folder = ClassMapsDataset(str(tmp_path / "maps"))
    folder.save(maps)
    ids = ["TEST_0000", "TEST_0001"]
    template = pd.DataFrame({"id": [f"{t}_class_{k}" for t in ids for k in range(NUM_CLASSES)]})
    bad = pd.DataFrame([{"split": "test", "id": "TEST_0001", "path": "x", "reason": "truncated"}])
    table = pd.concat(list(nodes.write_submission(folder.load(), template, bad)))
    assert table["id"].tolist() == template["id"].tolist()
    assert (table["mask_rle"].iloc[NUM_CLASSES:] == "-1").all()
    with pytest.raises(UdaLayoutError, match="TEST_0001_class_0"):
        nodes.write_submission(folder.load(), template, bad.iloc[:0])


_KILLED_WRITER = """
import sys, time
import numpy as np, pandas as pd
from kedro.io.core import Version
from podium.datasets.streams import ClassMapsDataset, CsvChunksDataset

kind, path, version = sys.argv[1:]
def maps():
    for i in range(1000):
        yield f"IMG_{i:04d}", np.full((8, 8), i % 12, np.uint8)
        print("wrote", i, flush=True)
        time.sleep(0.05)
def chunks():
    for i in range(1000):
        yield pd.DataFrame({"id": [f"IMG_{i}"], "mask_rle": ["1 2"]})
        print("wrote", i, flush=True)
        time.sleep(0.05)
if kind == "maps":
    ClassMapsDataset(path, version=Version(None, version)).save(maps())
else:
    CsvChunksDataset(path, version=Version(None, version)).save(chunks())
"""


@pytest.mark.parametrize("kind", ["maps", "csv"])
def test_a_killed_write_leaves_nothing_that_breaks_the_next_run(tmp_path, kind):
    from kedro.io.core import Version

    path = str(tmp_path / ("predictions" if kind == "maps" else "submission.csv"))
    cls = ClassMapsDataset if kind == "maps" else CsvChunksDataset
    first = {"IMG_0000": np.full((8, 8), 3, np.uint8)}
    frame = pd.DataFrame({"id": ["A"], "mask_rle": ["1 2"]})
    cls(path, version=Version(None, "2024-01-01T00.00.00.000Z")).save(
        first if kind == "maps" else frame
    )
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(_KILLED_WRITER))
    writer = subprocess.Popen(
        [sys.executable, str(script), kind, path, "2024-01-02T00.00.00.000Z"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        for _ in range(3):  # let it write a few items, then kill it mid-collection
            assert writer.stdout.readline().startswith("wrote")
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    leftovers = list(Path(path).glob("2024-01-02*/.*partial*"))
    assert leftovers  # the killed run's half-written data is there, under a temporary name
    latest = cls(path, version=Version(None, None))
    if kind == "maps":  # the next run reads the last complete version ...
        loaded = latest.load()
        assert list(loaded) == ["IMG_0000"] and (loaded["IMG_0000"]() == 3).all()
    else:
        pd.testing.assert_frame_equal(latest.load(), frame)
    again = cls(path, version=Version(None, "2024-01-03T00.00.00.000Z"))  # ... and writes anew
    again.save({"IMG_0001": np.zeros((4, 4), np.uint8)} if kind == "maps" else frame)
    assert (
        cls(path, version=Version(None, None))._get_load_path().parent.name.startswith("2024-01-03")
    )
