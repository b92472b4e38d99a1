"""deepfake face extraction: records per video, masks of fakes, bad-videos report, re-runs, Dask."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import podium.faces.video as video_module
from podium.layouts.deepfake import index_deepfake
from podium.pipelines.deepfake.data import (
    BAD_VIDEO_COLUMNS,
    INDEX_COLUMNS,
    detection_recall,
    extract_videos,
    face_index,
    face_rows,
    load_truth_boxes,
    plan_extraction,
    stream_extraction,
)
from podium.sample_data.deepfake import encode_mp4, generate_deepfake_sample
from tests.conftest import ONE_FAMILY

SAMPLE = {
    "n_parts": 1,
    "reals_per_part": 2,
    "fakes_per_real": 1,
    "actors_per_part": 2,
    "n_test_videos": 0,
    "seconds": 1.0,
    "width": 160,
    "height": 120,
}
SETTINGS = {"n_frames": 4, "crop_size": 64, "margin": 0.5}
FOLDER = "dfdc_train_part_0"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The tiny sample plus a truncated mp4 and a face-less mp4 listed as REAL videos."""
    root = tmp_path_factory.mktemp("deepfake")
    for relpath, data in generate_deepfake_sample({**SAMPLE, **ONE_FAMILY}, seed=5).items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
    videos = index_deepfake(root).videos
    good = videos.copy()
    part = root / FOLDER
    data = (part / good["video"].iloc[0]).read_bytes()
    (part / "truncated.mp4").write_bytes(data[: len(data) // 3])
    rng = np.random.default_rng(1)
    frames = [np.clip(rng.normal(110, 25, (120, 160, 3)), 0, 255).astype(np.uint8)] * 8
    (part / "noface.mp4").write_bytes(encode_mp4(frames, fps=15))
    extra = pd.DataFrame(
        [
            {"video": n, "folder": FOLDER, "path": str(part / n), "label": "REAL", "original": None}
            for n in ("truncated.mp4", "noface.mp4")
        ]
    )
    return root, good, pd.concat([good, extra], ignore_index=True)


@pytest.fixture(scope="module")
def extracted(sample):
    _, _, videos = sample
    return extract_videos(videos, SETTINGS, n_workers=0, progress=False)


def _partitions(videos: pd.DataFrame) -> list[str]:
    return [
        f"{f}/{v.removesuffix('.mp4')}" for f, v in zip(videos.folder, videos.video, strict=True)
    ]


def test_every_good_video_gives_a_record(sample, extracted):
    _, good, _ = sample
    records, _, stats = extracted
    assert list(records) == _partitions(good)
    for name, record in records.items():
        row = good[good.video == record["video"]].iloc[0]
        assert name == f"{FOLDER}/{row.video[:-4]}" and record["label"] == row.label
        assert record["folder"] == FOLDER and record["frames_total"] == 15
        n = len(record["frame_indices"])
        assert record["crops"].shape == (n, 64, 64, 3) and record["crops"].dtype == np.uint8
        assert record["boxes"].shape == (n, 4) and record["boxes"].dtype == np.float32
        assert record["confidences"].shape == (n,) and record["confidences"].dtype == np.float32
        if row.label == "FAKE":
            assert record["original"] == row.original and record["mask_error"] is None
            assert record["masks"].shape == (n, 64, 64) and record["masks"].dtype == np.uint8
        else:
            assert record["masks"] is None
    assert stats["videos"] == 6 and stats["extracted"] == 4 and stats["bad"] == 2
    assert stats["skipped_existing"] == 0 and stats["fakes_without_mask"] == 0
    assert stats["frames"] == 16 and stats["frames_with_face"] == 16 == stats["faces"]
    assert stats["face_frame_rate"] == 1.0 and stats["frames_per_second"] > 0
    assert stats["fakes_without_mask"] == 0


def test_bad_videos_are_reported_with_a_reason(extracted):
    _, bad, _ = extracted
    assert list(bad.columns) == BAD_VIDEO_COLUMNS
    reasons = dict(zip(bad.video, bad.reason, strict=True))
    assert set(reasons) == {"truncated.mp4", "noface.mp4"}
    assert reasons["truncated.mp4"].startswith("VideoReadError")
    assert reasons["noface.mp4"].startswith("NoFaceError")
    assert bad.notna().all().all()


def _index(records: dict) -> pd.DataFrame:
    return face_index(face_rows(name, record) for name, record in records.items())


def test_boxes_match_the_truth_on_reals(sample, extracted):
    root, _, _ = sample
    records, _, _ = extracted
    truth = load_truth_boxes(root)
    assert set(records) <= set(truth)
    index = _index(records)
    assert detection_recall(index, truth) >= 0.9
    assert detection_recall(index, truth, iou_threshold=0.99) < 0.5  # the IoU is applied
    with pytest.raises(ValueError, match="REAL"):
        detection_recall(index[index["label"] == "FAKE"], truth)


def test_a_frame_without_a_face_counts_as_a_miss(sample, extracted):
    root, _, _ = sample
    records, _, _ = extracted
    truth = load_truth_boxes(root)
    index = _index(records)
    reals = index[index["label"] == "REAL"]
    dropped = reals.drop(reals.index[:2])  # two sampled frames lose their face
    frames = int(reals.groupby("partition")["sampled_frames"].first().sum())
    assert detection_recall(dropped, truth) == pytest.approx(
        detection_recall(reals, truth) - 2 / frames
    )


def test_the_face_index_describes_every_crop_without_pixels(extracted):
    records, _, _ = extracted
    index = _index(records)
    assert list(index.columns) == INDEX_COLUMNS
    assert len(index) == sum(len(r["frame_indices"]) for r in records.values())
    for name, record in records.items():
        rows = index[index["partition"] == name]
        np.testing.assert_array_equal(rows["crop"], np.arange(len(record["crops"])))
        np.testing.assert_array_equal(rows["frame_index"], record["frame_indices"])
        np.testing.assert_array_equal(rows[["x1", "y1", "x2", "y2"]], record["boxes"])
        np.testing.assert_array_equal(rows["confidence"], record["confidences"])
        assert (rows["has_mask"] == (record["masks"] is not None)).all()
        assert (rows["sampled_frames"] == len(record["sampled_indices"])).all()
        assert (rows["face_rank"] == 0).all()  # keep: largest, one face a frame
    assert face_index([]).columns.tolist() == INDEX_COLUMNS


def test_face_rank_counts_faces_within_their_frame():
    record = {
        "video": "v.mp4",
        "frame_indices": np.array([0, 0, 0, 5, 9, 9]),
        "boxes": np.zeros((6, 4), np.float32),
        "confidences": np.ones(6, np.float32),
        "masks": None,
        "sampled_indices": np.array([0, 5, 9]),
        "frames_total": 10,
        "fps": 30.0,
        "height": 4,
        "width": 4,
    }
    assert face_rows("p/v", record)["face_rank"].tolist() == [0, 1, 2, 0, 0, 1]


def test_fake_masks_cover_the_face_only(extracted):
    records, _, _ = extracted
    fakes = [r for r in records.values() if r["label"] == "FAKE"]
    assert fakes
    for record in fakes:
        masks = record["masks"]
        assert set(np.unique(masks)) <= {0, 1}
        assert masks[:, 16:48, 16:48].mean() > 0.05  # margin 0.5: the face is the middle half
        assert masks[:, :6].mean() < 0.02 and masks[:, -6:].mean() < 0.02


def test_rerun_skips_extracted_videos_without_detecting(sample, extracted, monkeypatch):
    _, good, _ = sample
    records, _, _ = extracted
    calls = []
    real_detect = video_module.detect_faces
    monkeypatch.setattr(
        video_module, "detect_faces", lambda images, **kw: calls.append(len(images)) or []
    )
    again, bad, stats = extract_videos(good, SETTINGS, set(records), n_workers=0, progress=False)
    assert again == {} and bad.empty and calls == []
    assert stats["skipped_existing"] == 4 and stats["extracted"] == 0 and stats["frames"] == 0
    assert stats["frames_per_second"] == 0.0

    # originals done, fakes not: the originals are decoded for the masks but not searched
    monkeypatch.setattr(
        video_module,
        "detect_faces",
        lambda images, **kw: calls.append(1) or real_detect(images, **kw),
    )
    reals = {k for k, r in records.items() if r["label"] == "REAL"}
    with_joblib = {f"{k}.joblib" for k in reals}
    again, bad, stats = extract_videos(good, SETTINGS, with_joblib, n_workers=0, progress=False)
    assert set(again) == set(records) - reals and len(calls) == 2 and bad.empty
    for name, record in again.items():
        np.testing.assert_array_equal(record["masks"], records[name]["masks"])


def test_fake_of_an_unreadable_original_keeps_its_crops(sample):
    root, good, _ = sample
    videos = good.copy()
    fake = videos[videos.label == "FAKE"].iloc[0]
    is_original = videos.video == fake.original
    videos.loc[is_original, "path"] = str(root / FOLDER / "truncated.mp4")
    keep = is_original | (videos.video == fake.video)
    records, bad, stats = extract_videos(videos[keep], SETTINGS, n_workers=0, progress=False)
    assert bad.video.tolist() == [fake.original]
    (record,) = records.values()
    assert record["masks"] is None and "VideoReadError" in record["mask_error"]
    assert stats["fakes_without_mask"] == 1


def test_dask_cluster_gives_the_same_records(sample, extracted):
    _, _, videos = sample
    records, bad, _ = extracted
    on_dask, bad_dask, stats = extract_videos(
        videos, SETTINGS, n_workers=2, processes=False, progress=False
    )
    assert list(on_dask) == list(records) and stats["bad"] == 2
    pd.testing.assert_frame_equal(bad_dask, bad)
    for name, record in records.items():
        other = on_dask[name]
        np.testing.assert_array_equal(other["frame_indices"], record["frame_indices"])
        np.testing.assert_allclose(other["boxes"], record["boxes"], atol=1e-3)
        np.testing.assert_array_equal(other["crops"], record["crops"])
        if record["masks"] is not None:
            np.testing.assert_array_equal(other["masks"], record["masks"])


def test_a_table_without_the_needed_columns_is_rejected(sample):
    _, good, _ = sample
    with pytest.raises(ValueError, match="original"):
        extract_videos(good.drop(columns="original"), SETTINGS, n_workers=0)


def _records_in_memory() -> int:
    """Face records alive in this process (dicts holding crops), counted, not timed."""
    import gc

    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, dict) and "crops" in o and "boxes" in o)


@pytest.fixture(scope="module")
def many_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepfake_many")
    sample = {**SAMPLE, "reals_per_part": 4, "fakes_per_real": 2, "actors_per_part": 2}
    for relpath, data in generate_deepfake_sample({**sample, **ONE_FAMILY}, seed=6).items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
    return index_deepfake(root).videos


def test_the_driver_holds_one_window_of_records_whatever_the_video_count(many_videos):
    """12 videos (4 groups of an original and its 2 fakes) through process workers, with a
    window of 2: every chunk is at most the window plus one group's other videos, and
    nothing older than the chunk in hand is still alive in the driver."""
    from podium.core.distributed import dask_client

    settings = {**SETTINGS, "window": 2}
    plan = plan_extraction(many_videos, settings)
    assert len(plan.jobs) == 4 and len(plan.members) == 12
    baseline = _records_in_memory()
    seen, held = [], []
    with dask_client(n_workers=2, processes=True) as client:
        for chunk in stream_extraction(plan, client, progress=False):
            held.append(_records_in_memory() - baseline)
            seen.extend(chunk.records)
            assert len(chunk.records) <= 2 + 2  # window + the rest of one group
            del chunk
    assert sorted(seen) == sorted(m["partition"] for m in plan.members)
    assert max(held) <= 4 and len(held) >= 3


def test_stream_extraction_yields_once_when_everything_is_cached(sample, extracted):
    _, good, _ = sample
    records, _, _ = extracted
    plan = plan_extraction(good, SETTINGS, set(records))
    chunks = list(stream_extraction(plan, None, progress=False))
    assert len(chunks) == 1 and chunks[0].records == {} and chunks[0].jobs_total == 0
    assert plan.skipped == 4


def test_full_size_videos_are_extracted_at_half_size_detection(tmp_path):
    """DFDC's own format (1920x1080, 30 fps) in an extra part folder: detection on frames
    downscaled 0.5x finds the truth faces, boxes mapped back to full-frame pixels."""
    sample = {
        **SAMPLE,
        "reals_per_part": 1,
        "fakes_per_real": 1,
        "full_size_reals": 1,
        "full_size": {"seconds": 0.4},  # 12 frames: the format, not the length, is the point
    }
    for relpath, data in generate_deepfake_sample({**sample, **ONE_FAMILY}, seed=8).items():
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_bytes(data)
    videos = index_deepfake(tmp_path).videos
    full = videos[videos["folder"] == "dfdc_train_part_1"]
    assert len(full) == 2
    records, bad, _ = extract_videos(
        full, {**SETTINGS, "downscale": 0.5}, n_workers=0, progress=False
    )
    assert bad.empty and len(records) == 2
    for record in records.values():
        assert (record["width"], record["height"], record["fps"]) == (1920, 1080, 30.0)
        heights = record["boxes"][:, 3] - record["boxes"][:, 1]
        assert heights.min() > 300  # full-frame pixels (faces are 0.36-0.5 of 1080), not half
    assert detection_recall(_index(records), load_truth_boxes(tmp_path)) >= 0.9


def test_the_extract_node_under_kedro_keeps_no_saved_record_alive(many_videos, tmp_path):
    """Through Kedro's runner (whose multi-output generators keep up to 57 yields alive),
    a record is alive only until its partition is written: counted at every save."""
    from kedro.io import DataCatalog
    from kedro.pipeline import Node, Pipeline
    from kedro.runner import SequentialRunner
    from kedro_datasets.pandas import CSVDataset
    from kedro_datasets.partitions import PartitionedDataset

    from podium.pipelines.deepfake.nodes import extract_faces

    alive_after_save = []

    class CountingPartitions(PartitionedDataset):
        def save(self, data):
            super().save(data)
            alive_after_save.append(_records_in_memory())

    def partitions(name):
        return CountingPartitions(
            path=str(tmp_path / name),
            dataset={"type": "podium.datasets.AtomicPickleDataset", "backend": "joblib"},
            filename_suffix=".joblib",
        )

    class Discard(CSVDataset):
        def save(self, data):
            pass

    table = many_videos.assign(
        partition=many_videos["folder"] + "/" + many_videos["video"].str.removesuffix(".mp4")
    )
    catalog = DataCatalog(
        {
            "videos": _Loaded(table),
            "test_videos": _Loaded(table.iloc[:0]),
            "cache": _Loaded({}),
            "faces": partitions("faces"),
            "rows": partitions("rows"),
            "bad": CSVDataset(filepath=str(tmp_path / "bad.csv")),
            "metrics": Discard(filepath=str(tmp_path / "unused.csv")),
        }
    )
    node = Node(
        extract_faces,
        ["videos", "test_videos", "cache", "params:extraction", "params:dask"],
        ["faces", "rows", "bad", "metrics"],
        name="extract_faces",
    )
    catalog["params:extraction"] = {**SETTINGS, "window": 2}
    catalog["params:dask"] = {"scheduler_address": None, "n_workers": 0, "threads_per_worker": 1}
    baseline = _records_in_memory()  # other tests' fixtures hold records too
    SequentialRunner().run(Pipeline([node]), catalog)
    saved = sorted(p.name for p in (tmp_path / "faces").rglob("*.joblib"))
    assert len(saved) == 12 and len(alive_after_save) >= 2 * 4
    assert max(alive_after_save) - baseline <= 2 + 2  # one chunk at most, not all so far


class _Loaded:
    """A catalog entry that hands a node a value (the node reads it, never saves it)."""

    def __new__(cls, value):
        from kedro.io import MemoryDataset

        return MemoryDataset(value, copy_mode="assign")


def test_new_settings_at_their_defaults_keep_the_settings_digest():
    """crop_mode and thresholds at their defaults leave the digest (and the cache) as it was."""
    from podium.pipelines.deepfake.data import settings_key

    key = settings_key(SETTINGS)
    assert key == "bdb96acd03"  # SETTINGS' digest before crop_mode and thresholds existed
    explicit = {**SETTINGS, "crop_mode": "aspect", "thresholds": [0.6, 0.7, 0.7]}
    assert settings_key(explicit) == key
    assert settings_key({**SETTINGS, "crop_mode": "isotropic_pad"}) != key
    assert settings_key({**SETTINGS, "thresholds": [0.85, 0.95, 0.95]}) != key


def test_isotropic_pad_masks_compare_crops_of_one_geometry(sample):
    _, good, _ = sample
    fake = good[good.label == "FAKE"].iloc[0]
    keep = (good.video == fake.video) | (good.video == fake.original)
    settings = {**SETTINGS, "margin": 0.3333333333, "crop_mode": "isotropic_pad"}
    records, bad, _ = extract_videos(good[keep], settings, n_workers=0, progress=False)
    record = records[f"{FOLDER}/{fake.video[:-4]}"]
    padding = ~record["crops"].any(axis=-1)  # the zero padding of the fake's crops
    assert bad.empty and padding.sum() > 100
    assert not record["masks"][padding].any()  # zero in both crops: never "manipulated"
