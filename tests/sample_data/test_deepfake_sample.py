"""The generated DFDC sample: layout, determinism, fakes, and MTCNN-detectable faces."""

from __future__ import annotations

import csv
import io
import json
import re

import av
import numpy as np
import pytest

from podium.sample_data.deepfake import (
    TRUTH_FILE,
    DeepfakeSampleParams,
    _rosters,
    contact_sheet,
    generate_deepfake_sample,
)

TINY = {
    "n_parts": 2,
    "reals_per_part": 2,
    "fakes_per_real": 2,
    "actors_per_part": 2,
    "cross_folder_actor_share": 0.5,
    "n_test_videos": 3,
    "test_actors": 2,
    "width": 160,
    "height": 120,
    "fps": 10,
    "seconds": 1.0,
}
NAME = re.compile(r"^[a-z]{10}\.mp4$")


@pytest.fixture(scope="module")
def sample() -> dict[str, bytes]:
    return generate_deepfake_sample(TINY, seed=5)


def _decode(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def test_layout_matches_dfdc(sample):
    folders = {k.split("/")[0] for k in sample if "/" in k}
    assert folders == {"dfdc_train_part_0", "dfdc_train_part_1", "test_videos"}
    all_names = [k.rsplit("/", 1)[1] for k in sample if k.endswith(".mp4")]
    assert len(all_names) == len(set(all_names))  # names unique across the dataset
    assert all(NAME.match(n) for n in all_names)
    for part in ("dfdc_train_part_0", "dfdc_train_part_1"):
        meta = json.loads(sample[f"{part}/metadata.json"])
        assert set(meta) == {
            k.rsplit("/", 1)[1] for k in sample if k.startswith(part + "/") and k.endswith(".mp4")
        }
        reals = [n for n, e in meta.items() if e["label"] == "REAL"]
        fakes = [n for n, e in meta.items() if e["label"] == "FAKE"]
        assert len(reals) == 2 and len(fakes) == 4
        for e in meta.values():
            assert set(e) == {"label", "split", "original"} and e["split"] == "train"
            if e["label"] == "REAL":
                assert e["original"] is None
            else:
                assert e["original"] in reals
    rows = list(csv.DictReader(io.StringIO(sample["test_labels.csv"].decode())))
    assert [r["filename"] for r in rows] == sorted(
        k.split("/")[1] for k in sample if k.startswith("test_videos/") and k.endswith(".mp4")
    )
    assert {r["label"] for r in rows} == {"0", "1"}
    truth = json.loads(sample["test_videos/" + TRUTH_FILE])
    for r in rows:
        assert truth["videos"][r["filename"]]["label"] == ("FAKE" if r["label"] == "1" else "REAL")


def test_truth_sidecar_has_actors_and_boxes(sample):
    doc = json.loads(sample["dfdc_train_part_0/" + TRUTH_FILE])
    assert "No training" in doc["_note"]
    meta = json.loads(sample["dfdc_train_part_0/metadata.json"])
    assert set(doc["videos"]) == set(meta)
    for name, entry in doc["videos"].items():
        assert len(entry["boxes"]) == entry["frames"] == 10
        assert entry["actor"] in doc["actors"]
        if entry["label"] == "FAKE":
            if entry["family"] == "talking_head":  # the target's own identity re-rendered
                assert entry["swap_actor"] is None
            else:
                assert entry["swap_actor"] not in (None, entry["actor"])
            assert entry["original"] == meta[name]["original"]
            assert doc["videos"][entry["original"]]["actor"] == entry["actor"]
        else:
            assert entry["swap_actor"] is None and entry["family"] is None
        for x1, y1, x2, y2 in entry["boxes"]:
            assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120


def test_videos_are_h264_yuv420p_with_the_requested_size(sample):
    data = next(
        v for k, v in sample.items() if k.startswith("dfdc_train_part_0/") and k.endswith(".mp4")
    )
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert s.codec_context.pix_fmt == "yuv420p"
        assert (s.codec_context.width, s.codec_context.height) == (160, 120)
        assert float(s.average_rate) == 10
    assert _decode(data).shape == (10, 120, 160, 3)


def test_same_seed_same_bytes_other_seed_differs(sample):
    again = generate_deepfake_sample(TINY, seed=5)
    assert again.keys() == sample.keys()
    assert all(again[k] == sample[k] for k in sample)
    other = generate_deepfake_sample({**TINY, "n_parts": 1, "n_test_videos": 0}, seed=6)
    assert not set(other) & {k for k in sample if k.endswith(".mp4")}


def test_unknown_parameter_is_named():
    with pytest.raises(
        ValueError, match=r"sample_data\.deepfake\.n_videos.*allowed keys.*reals_per_part"
    ):
        generate_deepfake_sample({"n_videos": 3}, seed=0)
    with pytest.raises(ValueError, match="difficulty"):
        generate_deepfake_sample({"difficulty": 2.0}, seed=0)
    with pytest.raises(ValueError, match="even"):
        generate_deepfake_sample({"width": 161}, seed=0)


def test_fakes_change_only_the_face(sample):
    """Every fake differs from its original inside the face box and hardly outside it (the
    whole head, for talking_head), after encoding."""
    for part in ("dfdc_train_part_0", "dfdc_train_part_1"):
        doc = json.loads(sample[f"{part}/{TRUTH_FILE}"])
        for fake, entry in doc["videos"].items():
            if entry["label"] != "FAKE":
                continue
            a = _decode(sample[f"{part}/{entry['original']}"]).astype(int)
            b = _decode(sample[f"{part}/{fake}"]).astype(int)
            inside, outside = [], []
            for k, (x1, y1, x2, y2) in enumerate(entry["boxes"]):
                region = np.zeros(a.shape[1:3], bool)
                region[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1] = True
                diff = np.abs(a[k] - b[k]).sum(axis=2)
                # the codec smears differences a few pixels out; a talking head is the head
                g = 12 + (0.8 * (y2 - y1) if entry["family"] == "talking_head" else 0)
                grown = np.zeros_like(region)
                grown[
                    max(0, int(y1 - g)) : int(y2 + g) + 1, max(0, int(x1 - g)) : int(x2 + g) + 1
                ] = True
                inside.append(diff[region].mean())
                outside.append(diff[~grown].mean())
            assert np.mean(inside) > 3 * np.mean(outside) + 2, (fake, entry["family"])


def test_actors_recur_and_some_cross_folders():
    defaults = DeepfakeSampleParams()
    actors, rosters = _rosters(defaults)
    assert len(actors) == defaults.n_parts * defaults.actors_per_part
    shared = set(rosters[0]) & set(rosters[1])
    assert 1 <= len(shared) < len(actors)
    _, solo = _rosters(DeepfakeSampleParams(n_parts=1))
    assert len(solo[0]) == defaults.actors_per_part


def test_generated_sample_shares_actors_across_folders(sample):
    seen = {}
    for part in ("dfdc_train_part_0", "dfdc_train_part_1"):
        doc = json.loads(sample[f"{part}/{TRUTH_FILE}"])
        seen[part] = {e["actor"] for e in doc["videos"].values() if e["label"] == "REAL"}
    assert seen["dfdc_train_part_0"] & seen["dfdc_train_part_1"]
    assert seen["dfdc_train_part_0"] != seen["dfdc_train_part_1"]
    test_doc = json.loads(sample["test_videos/" + TRUTH_FILE])
    test_actors = {e["actor"] for e in test_doc["videos"].values()}
    assert not test_actors & (seen["dfdc_train_part_0"] | seen["dfdc_train_part_1"])


def test_contact_sheet(sample, tmp_path):
    fig = contact_sheet(sample, n=6)
    assert len(fig.axes) == 6
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "REAL" in titles and "FAKE" in titles
    fig.savefig(tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").stat().st_size > 10_000


def test_mtcnn_finds_the_truth_face_in_real_videos():
    """At the default frame size, MTCNN (default thresholds) finds the generator's face box
    (IoU >= 0.5) in >= 95% of real frames, decoded back from the mp4s."""
    torch = pytest.importorskip("torch")
    facenet = pytest.importorskip("facenet_pytorch")
    torch.set_num_threads(2)
    files = generate_deepfake_sample(
        {
            "n_parts": 1,
            "reals_per_part": 4,
            "fakes_per_real": 1,
            "actors_per_part": 4,
            "n_test_videos": 0,
        },
        seed=11,
    )
    mtcnn = facenet.MTCNN(keep_all=True, device="cpu")
    doc = json.loads(files["dfdc_train_part_0/" + TRUTH_FILE])
    hits = {"REAL": [], "FAKE": []}
    for name, entry in doc["videos"].items():
        frames = _decode(files[f"dfdc_train_part_0/{name}"])
        assert frames.shape[1:3] == (DeepfakeSampleParams().height, DeepfakeSampleParams().width)
        boxes, _ = mtcnn.detect(frames)
        for truth, found in zip(entry["boxes"], boxes, strict=True):
            ok = (
                found is not None
                and max(_iou(truth, f) for f in np.asarray(found, dtype=np.float32)) >= 0.5
            )
            hits[entry["label"]].append(ok)
    assert len(hits["REAL"]) == 4 * 30
    assert np.mean(hits["REAL"]) >= 0.95, np.mean(hits["REAL"])
    assert np.mean(hits["FAKE"]) >= 0.8, np.mean(hits["FAKE"])
