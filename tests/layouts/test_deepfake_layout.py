"""The DFDC layout readers on the generated sample, and their errors on broken layouts."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from podium.layouts.deepfake import (
    DeepfakeLayoutError,
    VideoReadError,
    index_deepfake,
    index_test_videos,
    probe_video,
    read_frames,
)
from podium.sample_data.deepfake import generate_deepfake_sample
from tests.conftest import ONE_FAMILY, write_tree

TINY = {
    "n_parts": 2,
    "first_part": 9,  # parts 9 and 10: numeric, not lexical, order
    "reals_per_part": 2,
    "fakes_per_real": 1,
    "actors_per_part": 2,
    "n_test_videos": 2,
    "test_actors": 1,
    "width": 96,
    "height": 72,
    "fps": 10,
    "seconds": 1.0,
}


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory) -> Path:
    return write_tree(
        generate_deepfake_sample({**TINY, **ONE_FAMILY}, seed=2),
        tmp_path_factory.mktemp("deepfake"),
    )


@pytest.fixture
def root(sample_root, tmp_path) -> Path:
    """A private copy to break."""
    dst = tmp_path / "deepfake"
    shutil.copytree(sample_root, dst)
    return dst


def _meta(root: Path, part: str = "dfdc_train_part_9") -> tuple[Path, dict]:
    path = root / part / "metadata.json"
    return path, json.loads(path.read_text())


def _first(meta: dict, label: str) -> str:
    return next(n for n, e in sorted(meta.items()) if e["label"] == label)


def test_index_reads_the_sample(sample_root):
    videos, problems = index_deepfake(sample_root)
    assert list(videos.columns) == ["video", "folder", "path", "label", "original", "target"]
    assert len(videos) == 8 and problems.empty
    assert list(problems.columns) == ["folder", "video", "path", "problem"]
    assert videos["folder"].unique().tolist() == ["dfdc_train_part_9", "dfdc_train_part_10"]
    assert (videos["target"] == (videos["label"] == "FAKE").astype(int)).all()
    assert all(Path(p).is_file() for p in videos["path"])
    fakes = videos[videos["label"] == "FAKE"]
    assert set(fakes["original"]) <= set(videos.loc[videos["label"] == "REAL", "video"])
    assert videos.loc[videos["label"] == "REAL", "original"].isna().all()
    result = index_deepfake(str(sample_root))
    assert result.videos.equals(videos)


def test_the_raw_folder_under_its_former_name_is_named_with_the_move(sample_root, tmp_path):
    raw = tmp_path / "01_raw"
    shutil.copytree(sample_root, raw / "dfdc")  # where the DFDC data lived before
    with pytest.raises(DeepfakeLayoutError, match=r"fix: mv \S+/01_raw/dfdc \S+/01_raw/deepfake"):
        index_deepfake(raw / "deepfake")
    (raw / "dfdc").rename(raw / "deepfake")
    assert len(index_deepfake(raw / "deepfake").videos) == len(index_deepfake(sample_root).videos)


def test_index_test_videos(sample_root, tmp_path):
    tests = index_test_videos(sample_root)
    assert len(tests) == 2 and set(tests["label"]) <= {"REAL", "FAKE"}
    assert str(tests["target"].dtype) == "Int64"
    assert (tests["target"] == (tests["label"] == "FAKE").astype(int)).all()
    bare = tmp_path / "bare"
    shutil.copytree(sample_root / "test_videos", bare / "test_videos")
    unlabelled = index_test_videos(bare)
    assert unlabelled["target"].isna().all() and unlabelled["label"].isna().all()


def test_unlisted_mp4_is_reported_not_indexed(root):
    src = next((root / "dfdc_train_part_9").glob("*.mp4"))
    shutil.copy(src, root / "dfdc_train_part_9" / "zzzzzzzzzz.mp4")
    videos, problems = index_deepfake(root)
    assert "zzzzzzzzzz.mp4" not in set(videos["video"])
    assert problems.to_dict("records")[0]["video"] == "zzzzzzzzzz.mp4"
    assert problems["problem"].tolist() == ["unlisted"]


def test_missing_listed_file(root):
    _, meta = _meta(root)
    name = _first(meta, "FAKE")
    (root / "dfdc_train_part_9" / name).unlink()
    with pytest.raises(
        DeepfakeLayoutError, match=rf"dfdc_train_part_9/metadata.json.*{name}.*does not exist.*fix"
    ):
        index_deepfake(root)


def test_unknown_label(root):
    path, meta = _meta(root)
    name = _first(meta, "REAL")
    meta[name]["label"] = "real"
    path.write_text(json.dumps(meta))
    with pytest.raises(
        DeepfakeLayoutError, match=rf"{name}.*unknown label 'real'.*fix.*FAKE.*REAL"
    ):
        index_deepfake(root)


def test_fake_whose_original_is_missing(root):
    path, meta = _meta(root, "dfdc_train_part_10")
    fake = _first(meta, "FAKE")
    original = meta[fake]["original"]
    del meta[original]
    (root / "dfdc_train_part_10" / original).unlink()
    path.write_text(json.dumps(meta))
    with pytest.raises(
        DeepfakeLayoutError, match=rf"dfdc_train_part_10.*{fake}.*{original}.*not in the index.*fix"
    ):
        index_deepfake(root)


def test_fake_without_original_field(root):
    path, meta = _meta(root)
    fake = _first(meta, "FAKE")
    del meta[fake]["original"]
    path.write_text(json.dumps(meta))
    with pytest.raises(DeepfakeLayoutError, match=rf"{fake}.*no 'original'"):
        index_deepfake(root)


def test_missing_label_field(root):
    path, meta = _meta(root)
    name = _first(meta, "REAL")
    del meta[name]["label"]
    path.write_text(json.dumps(meta))
    with pytest.raises(
        DeepfakeLayoutError,
        match=rf"dfdc_train_part_9/metadata.json: entry '{name}' has no 'label'",
    ):
        index_deepfake(root)


def test_all_problems_are_reported_together(root):
    path, meta = _meta(root)
    names = sorted(meta)
    meta[names[0]]["label"] = "MAYBE"
    meta[names[1]]["label"] = "PERHAPS"
    path.write_text(json.dumps(meta))
    with pytest.raises(DeepfakeLayoutError, match="2 problem") as err:
        index_deepfake(root)
    assert "MAYBE" in str(err.value) and "PERHAPS" in str(err.value)


def test_malformed_json_names_the_file(root):
    path, _ = _meta(root)
    path.write_text('{"abc.mp4": {"label": "REAL",')
    with pytest.raises(
        DeepfakeLayoutError, match=r"dfdc_train_part_9/metadata.json: malformed JSON at line 1"
    ):
        index_deepfake(root)


def test_missing_metadata_and_missing_root(root, tmp_path):
    (root / "dfdc_train_part_10" / "metadata.json").unlink()
    with pytest.raises(DeepfakeLayoutError, match=r"dfdc_train_part_10: no metadata.json; fix"):
        index_deepfake(root)
    with pytest.raises(DeepfakeLayoutError, match="does not exist"):
        index_deepfake(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeepfakeLayoutError, match="no dfdc_train_part_"):
        index_deepfake(tmp_path / "empty")


def test_test_label_errors(root):
    labels = root / "test_labels.csv"
    text = labels.read_text()
    labels.write_text(text + "nosuchvideo.mp4,1\n")
    with pytest.raises(DeepfakeLayoutError, match=r"nosuchvideo.mp4.*does not exist"):
        index_test_videos(root)
    labels.write_text(text.replace(",1\n", ",2\n").replace(",0\n", ",2\n"))
    with pytest.raises(DeepfakeLayoutError, match=r"test_labels.csv line 2.*label 1"):
        index_test_videos(root)
    labels.write_text("name,value\n")
    with pytest.raises(DeepfakeLayoutError, match=r"expected columns 'filename,label'"):
        index_test_videos(root)


def test_probe_and_read_frames(sample_root):
    videos, _ = index_deepfake(sample_root)
    path = videos["path"].iloc[0]
    assert probe_video(path) == {"frames": 10, "fps": 10.0, "width": 96, "height": 72}
    with av.open(path) as c:
        every = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    got = read_frames(path, [9, 2, 2, 0])
    assert got.shape == (4, 72, 96, 3) and got.dtype == np.uint8
    assert (got == every[[9, 2, 2, 0]]).all()
    assert read_frames(path, []).shape == (0, 72, 96, 3)
    with pytest.raises(ValueError, match="indices"):
        read_frames(path, [-1])
    with pytest.raises(VideoReadError, match=r"frame 10 requested.*ends after frame 9"):
        read_frames(path, [10])


def _encode(path: Path, n: int, gop: int, faststart: bool = False) -> np.ndarray:
    """A video whose frames are easy to tell apart, with a keyframe every ``gop`` frames."""
    frames = np.zeros((n, 64, 64, 3), np.uint8)
    for k in range(n):
        frames[k, :, : (k % 64) + 1] = 200
        frames[k, : (k // 64) * 8 + 4] = 60
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        s.options = {"crf": "10", "g": str(gop), "keyint_min": str(gop), "bf": "0"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_seeking_gives_the_same_frames_as_decoding_everything(tmp_path):
    path = tmp_path / "long.mp4"
    every = _encode(path, 150, gop=12)
    wanted = [140, 3, 75, 76, 149, 0, 30, 30, 100]
    for gap in (1, 5, 60, 10_000):
        assert (read_frames(path, wanted, seek_gap=gap) == every[wanted]).all(), gap


def test_truncated_or_missing_mp4_names_the_file(sample_root, tmp_path):
    videos, _ = index_deepfake(sample_root)
    data = Path(videos["path"].iloc[0]).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    for call in (probe_video, lambda p: read_frames(p, [0])):
        with pytest.raises(VideoReadError, match=r"cut\.mp4.*truncated or corrupt"):
            call(cut)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 5000)
    with pytest.raises(VideoReadError, match="garbage.mp4"):
        read_frames(garbage, [0])
    with pytest.raises(VideoReadError, match=r"absent\.mp4: no such video file"):
        probe_video(tmp_path / "absent.mp4")
    with pytest.raises(OSError):  # VideoReadError is an OSError
        read_frames(tmp_path / "absent.mp4", [0])


def test_truncated_data_with_index_up_front(tmp_path):
    """moov first (faststart): the header survives the cut, the frames do not."""
    path = tmp_path / "fast.mp4"
    _encode(path, 100, gop=10, faststart=True)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.5)])
    assert probe_video(path)["frames"] == 100
    with pytest.raises(VideoReadError, match=r"fast\.mp4"):
        read_frames(path, [5, 99])


def test_index_is_a_plain_dataframe_pair(sample_root):
    result = index_deepfake(sample_root)
    assert isinstance(result.videos, pd.DataFrame) and isinstance(result.problems, pd.DataFrame)
    assert (sample_root / "dfdc_train_part_9" / "_truth.json").is_file()
    assert not any(v.startswith("_") for v in result.videos["video"])  # sidecars are ignored


def test_decoded_sample_frames_match_in_memory_bytes(sample_root):
    data = next((sample_root / "test_videos").glob("*.mp4")).read_bytes()
    with av.open(io.BytesIO(data)) as c:
        first = next(iter(c.decode(video=0))).to_ndarray(format="rgb24")
    path = next((sample_root / "test_videos").glob("*.mp4"))
    assert (read_frames(path, [0])[0] == first).all()
