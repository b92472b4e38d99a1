"""Faults and bad input in the deepfake pipeline (issue 19): a `kedro run` killed in the
middle of face extraction loses only the work in flight; a video rewritten under its name
is extracted again; a partial record or rows file from an older crash is extracted again,
not fatal; test labels are exactly 0 or 1; diagnostics skip videos without truth."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import pandas as pd
import pytest

from podium.datasets import CachedPartitionsDataset, LazyPartitionsDataset
from podium.layouts.deepfake import DeepfakeLayoutError, index_test_videos
from podium.pipelines.deepfake import nodes
from podium.pipelines.deepfake.data import content_key, settings_key
from podium.sample_data.deepfake import generate_deepfake_sample
from tests.conftest import (
    ONE_FAMILY,
    TINY_DEEPFAKE,
    TINY_SAMPLE,
    kedro_run,
    make_project,
    tracked_runs,
)

SAMPLE = {
    **TINY_SAMPLE["sample_data"]["deepfake"],
    "n_parts": 2,
    "reals_per_part": 4,
    "fakes_per_real": 2,
    "n_test_videos": 2,
}
PARAMETERS = {
    "sample_data": {"deepfake": SAMPLE},
    "deepfake": {**TINY_DEEPFAKE["deepfake"], "extraction": {"n_frames": 6, "window": 1}},
    "runtime": {"num_workers": 0, "dask": {"n_workers": 1}},
}


def _saved(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.joblib")) if folder.exists() else []


@pytest.mark.slow
def test_a_killed_extraction_keeps_what_it_saved_and_the_rerun_does_the_rest(tmp_path):
    project = make_project(tmp_path / "project", PARAMETERS)
    cwd = os.getcwd()
    os.chdir(project)
    try:
        kedro_run(project, "sample_data", tags=["deepfake"])
        kedro_run(
            project,
            "deepfake",
            nodes=["deepfake.data.index_training_videos", "deepfake.data.index_test_videos"],
        )
    finally:
        os.chdir(cwd)
    videos = 2 * 4 * (1 + 2) + 2
    rows = project / "data" / "03_primary" / "deepfake" / "face_rows"
    faces = project / "data" / "03_primary" / "deepfake" / "faces"
    kedro = Path(sys.executable).with_name("kedro")
    run = subprocess.Popen(
        [str(kedro), "run", "--pipelines=deepfake", "--nodes=deepfake.faces.extract_faces"],
        cwd=project,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its Dask workers share the group: the kill reaches them too
    )
    deadline = time.monotonic() + 300
    while len(_saved(rows)) < 3 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, run.communicate()[0][-3000:]
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    kept = _saved(rows)
    assert 3 <= len(kept) < videos, "the run must be killed half-way for this test to mean much"
    for path in _saved(faces):  # whatever was listed is whole: a record, not a fragment
        assert joblib.load(path)["crops"].ndim == 4
    records = {p.relative_to(faces) for p in _saved(faces)}
    assert {p.relative_to(rows) for p in kept} <= records  # rows only ever follow a record

    kedro_run(
        project, "deepfake", nodes=["deepfake.faces.extract_faces", "deepfake.faces.index_faces"]
    )
    _, runs = tracked_runs(project)
    metrics = runs[-1].data.metrics
    assert metrics["deepfake/faces/skipped_existing"] == len(kept)
    assert metrics["deepfake/faces/extracted"] == videos - len(kept)
    assert len(_saved(rows)) == videos


# ---------------------------------------------------------------- the face cache, in-process

TINY = {
    "n_parts": 1,
    "reals_per_part": 2,
    "fakes_per_real": 1,
    "actors_per_part": 2,
    "n_test_videos": 0,
    "seconds": 1.0,
    "width": 160,
    "height": 120,
}
EXTRACTION = {"n_frames": 4, "crop_size": 64, "margin": 0.5}
KEY = settings_key(EXTRACTION)
DASK = {"scheduler_address": None, "n_workers": 0, "threads_per_worker": 1}
NO_TEST_VIDEOS = pd.DataFrame(
    {c: pd.Series(dtype=object) for c in ["video", "folder", "path", "label", "original"]}
).assign(partition=pd.Series(dtype=object))
_RECORD = {"type": "podium.datasets.AtomicPickleDataset", "backend": "joblib"}
NODES_LOG = "podium.pipelines.deepfake.nodes"


def _stores(cache: Path) -> dict:
    faces = {"path": str(cache / "faces"), "filename_suffix": ".joblib"}
    rows = {"path": str(cache / "face_rows"), "filename_suffix": ".joblib"}
    record = {**_RECORD, "save_args": {"compress": 3}}
    return {
        "faces": LazyPartitionsDataset(dataset=record, **faces),
        "faces_cache": CachedPartitionsDataset(dataset=record, **faces),
        "rows": LazyPartitionsDataset(dataset=_RECORD, **rows),
        "rows_cache": CachedPartitionsDataset(dataset=_RECORD, **rows),
    }


def _extract(cache: Path, videos: pd.DataFrame, *, with_records: bool = False):
    """extract_faces then index_faces as Kedro runs them (each yield saved before the
    next): the partitions saved, the last metrics ({name: value}), the face index."""
    stores = _stores(cache)
    records = stores["faces_cache"].load() if with_records else None
    saved, metrics = [], {}
    for faces, rows, _bad, values in nodes.extract_faces(
        videos, NO_TEST_VIDEOS, stores["rows_cache"].load(), EXTRACTION, DASK, records
    ):
        saved += list(faces)
        stores["faces"].save(faces)
        stores["rows"].save(rows)
        metrics = {k: v["value"] for k, v in values.items()} or metrics
    index = nodes.index_faces(stores["rows"].load(), videos, NO_TEST_VIDEOS, EXTRACTION)
    return sorted(saved), metrics, index


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """The tiny sample (2 REAL, 2 FAKE) and its face cache after a first extraction."""
    base = tmp_path_factory.mktemp("faults")
    root = base / "deepfake"
    for relpath, data in generate_deepfake_sample({**TINY, **ONE_FAMILY}, seed=5).items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
    videos, _ = nodes.index_training_videos(root)
    saved, metrics, index = _extract(base / "cache", videos)
    assert len(saved) == 4 and metrics["extracted"] == 4
    return base, videos, index


@pytest.fixture
def copied(first_run, tmp_path):
    """A private copy of the sample and of its cache (copy2 keeps the mtimes)."""
    base, videos, index = first_run
    shutil.copytree(base, tmp_path, dirs_exist_ok=True)
    moved = videos.assign(path=videos["path"].str.replace(str(base), str(tmp_path), regex=False))
    return tmp_path, moved, index


def test_an_untouched_cache_is_reused_whole(copied):
    base, videos, index = copied
    saved, metrics, again = _extract(base / "cache", videos, with_records=True)
    assert saved == [] and metrics["skipped_existing"] == 4 and metrics["extracted"] == 0
    assert metrics["reextracted_changed"] == 0 and metrics["reextracted_broken"] == 0
    pd.testing.assert_frame_equal(again, index)


def test_a_video_rewritten_under_its_name_is_extracted_again(copied, caplog):
    base, videos, index = copied
    reals = videos[videos["label"] == "REAL"]
    changed, other = reals.iloc[0], reals.iloc[1]
    Path(changed["path"]).write_bytes(Path(other["path"]).read_bytes())  # other content
    new = content_key(changed["path"])
    fake = videos[(videos["label"] == "FAKE") & (videos["original"] == changed["video"])].iloc[0]
    redone = {changed["partition"], fake["partition"]}  # the video, and its fake's masks
    with caplog.at_level(logging.WARNING, logger=NODES_LOG):
        saved, metrics, again = _extract(base / "cache", videos)
    assert saved == sorted(f"{KEY}/{p}" for p in redone)  # the others from the cache
    assert metrics["reextracted_changed"] == 2 and metrics["extracted"] == 2
    assert metrics["skipped_existing"] == 2
    assert "2 video(s) changed" in caplog.text and changed["partition"] in caplog.text
    assert f"its original {changed['video']} changed" in caplog.text
    rows = again[again["partition"] == changed["partition"]]
    assert len(rows) and (rows["content"] == new["content"]).all()
    assert (rows["content_size"] == new["content_size"]).all()
    old = index[index["partition"] == changed["partition"]]
    assert (old["content"] != new["content"]).all()
    fake_rows = again[again["partition"] == fake["partition"]]
    assert (fake_rows["original_content"] == new["content"]).all()  # masks from the new one
    others = again[~again["partition"].isin(redone)].reset_index(drop=True)
    kept = index[~index["partition"].isin(redone)].reset_index(drop=True)
    pd.testing.assert_frame_equal(others, kept)
    record = joblib.load(base / "cache" / "faces" / KEY / f"{changed['partition']}.joblib")
    assert record["content"] == new["content"]  # the index points at the current record


def test_a_fake_whose_original_changed_in_an_earlier_run_gets_new_masks(copied, caplog):
    """The original re-extracted alone (a run over the REAL videos only), its fake left
    with masks made from the old bytes: the next full run finds the fake's stored
    original digest behind the original's rows and extracts the fake again."""
    base, videos, index = copied
    reals = videos[videos["label"] == "REAL"]
    changed, other = reals.iloc[0], reals.iloc[1]
    fake = videos[(videos["label"] == "FAKE") & (videos["original"] == changed["video"])].iloc[0]
    before = index.loc[index["partition"] == fake["partition"], "original_content"]
    assert before.notna().all()
    Path(changed["path"]).write_bytes(Path(other["path"]).read_bytes())
    saved, first, _ = _extract(base / "cache", reals)
    assert saved == [f"{KEY}/{changed['partition']}"], (first, reals[["video", "partition"]])
    with caplog.at_level(logging.WARNING, logger=NODES_LOG):
        saved, metrics, again = _extract(base / "cache", videos)
    assert saved == [f"{KEY}/{fake['partition']}"] and metrics["reextracted_changed"] == 1
    assert f"its original {changed['video']} changed" in caplog.text
    now = again.loc[again["partition"] == fake["partition"], "original_content"]
    assert (now == content_key(changed["path"])["content"]).all()
    assert (now != before.iloc[0]).all()


def test_a_changed_video_that_no_longer_extracts_is_not_served_its_old_faces(copied, caplog):
    base, videos, index = copied
    changed = videos[videos["label"] == "REAL"].iloc[0]
    data = Path(changed["path"]).read_bytes()
    Path(changed["path"]).write_bytes(data[: len(data) // 3])  # truncated after extraction
    fake = videos[(videos["label"] == "FAKE") & (videos["original"] == changed["video"])].iloc[0]
    with caplog.at_level(logging.WARNING, logger=NODES_LOG):
        saved, metrics, again = _extract(base / "cache", videos)
    # its fake again too: its masks came from the old bytes; now it has none, and says why
    assert saved == [f"{KEY}/{fake['partition']}"]
    assert metrics["bad"] == 1 and metrics["reextracted_changed"] == 2
    assert metrics["fakes_without_mask"] == 1
    assert changed["partition"] in set(index["partition"])
    assert changed["partition"] not in set(again["partition"])  # its stale record unread
    assert not again.loc[again["partition"] == fake["partition"], "has_mask"].any()
    assert "left out of the face index" in caplog.text
    assert (
        "1 of the 2 video(s) extracted this run could not be read" in caplog.text
    )  # on the console
    assert changed["path"] in caplog.text


def test_empty_rows_from_an_older_crash_are_extracted_again_with_a_warning(copied, caplog):
    base, videos, _ = copied
    victim = videos["partition"].iloc[1]
    rows_file = base / "cache" / "face_rows" / KEY / f"{victim}.joblib"
    rows_file.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger=NODES_LOG):
        saved, metrics, again = _extract(base / "cache", videos)
    assert saved == [f"{KEY}/{victim}"] and metrics["reextracted_broken"] == 1
    assert str(rows_file) in caplog.text and "EOFError" in caplog.text
    assert rows_file.stat().st_size > 0 and victim in set(again["partition"])


def test_an_empty_record_is_extracted_again_and_never_an_eof_error_in_assign_folds(copied, caplog):
    base, videos, index = copied
    victim = videos["partition"].iloc[2]
    record_file = base / "cache" / "faces" / KEY / f"{victim}.joblib"
    record_file.write_bytes(b"")
    folds_args = (
        {"strategy": "person_cluster", "n_folds": 2},
        {"method": "pca", "size": 16, "inner_fraction": 0.7, "n_components": 2},
        {"method": "kmeans", "n_clusters": 2},
        EXTRACTION,
    )
    faces = _stores(base / "cache")["faces"].load()
    with pytest.raises(ValueError, match=r"(?s)missing or empty.*" + str(record_file)):
        nodes.assign_folds(videos, index, faces, *folds_args, seed=0)  # the backstop

    with caplog.at_level(logging.WARNING, logger=NODES_LOG):
        saved, metrics, again = _extract(base / "cache", videos, with_records=True)
    assert saved == [f"{KEY}/{victim}"] and metrics["reextracted_broken"] == 1
    assert str(record_file) in caplog.text and "0 bytes" in caplog.text
    assert joblib.load(record_file)["crops"].ndim == 4
    faces = _stores(base / "cache")["faces"].load()
    folds = nodes.assign_folds(videos, again, faces, *folds_args, seed=0)
    assert folds["has_faces"].all()


# ---------------------------------------------------------------- labels and diagnostics


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("0.7", r"label '0.7' is not exactly 0 or 1 \(a probability"),
        ("FAKE", r"label 'FAKE' is not exactly 0 or 1"),
        ("2", r"label '2' is not exactly 0 or 1"),
    ],
)
def test_test_labels_must_be_exactly_0_or_1(tmp_path, first_run, label, message):
    base, videos, _ = first_run
    (tmp_path / "test_videos").mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(videos["path"].iloc[0], tmp_path / "test_videos" / name)
    labels = tmp_path / "test_labels.csv"
    labels.write_text(f"filename,label\na.mp4,1.0\nb.mp4,{label}\n", encoding="utf-8")
    with pytest.raises(DeepfakeLayoutError, match=message) as error:
        index_test_videos(tmp_path)
    text = str(error.value)
    assert str(labels) in text and "line 3" in text and "fix:" in text and "a.mp4" not in text

    labels.write_text("filename,label\na.mp4,1.0\nb.mp4,0\n", encoding="utf-8")
    assert index_test_videos(tmp_path)["target"].tolist() == [1, 0]


def test_split_diagnostics_skip_videos_without_truth(first_run, caplog):
    base, videos, _ = first_run
    folds = videos.assign(fold=[0, 1] * (len(videos) // 2))
    ghost = folds.iloc[[0]].assign(video="ghost.mp4", partition="dfdc_train_part_0/ghost")
    with caplog.at_level(logging.WARNING, logger=NODES_LOG):
        metrics = nodes.split_diagnostics(pd.concat([folds, ghost]), base / "deepfake")
    assert metrics["videos_without_truth"]["value"] == 1
    assert "leakage_mean" in metrics and "ghost.mp4" in caplog.text
    assert nodes.split_diagnostics(folds, base / "deepfake")["videos_without_truth"]["value"] == 0
