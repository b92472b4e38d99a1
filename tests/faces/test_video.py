"""podium.faces.video: even frame sampling, per-video face records, manipulation masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from podium.core.config import ParameterError
from podium.faces.video import (
    NoFaceError,
    check_extraction_settings,
    extract_video,
    manipulation_masks,
    sample_frame_indices,
)
from podium.layouts.deepfake import VideoReadError
from podium.sample_data.deepfake import encode_mp4, generate_deepfake_sample
from tests.conftest import ONE_FAMILY

SAMPLE = {
    "n_parts": 1,
    "reals_per_part": 1,
    "fakes_per_real": 1,
    "actors_per_part": 2,
    "n_test_videos": 0,
    "seconds": 1.0,
    "width": 160,
    "height": 120,
}
SETTINGS = {"n_frames": 4, "crop_size": [48, 40], "margin": 0.4}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepfake")
    for relpath, data in generate_deepfake_sample({**SAMPLE, **ONE_FAMILY}, seed=3).items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
    folder = root / "dfdc_train_part_0"
    truth = json.loads((folder / "_truth.json").read_text())["videos"]
    real = next(name for name, entry in truth.items() if entry["label"] == "REAL")
    return folder, real, truth


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("n_total,n_frames", [(300, 32), (15, 4), (100, 7), (2, 2)])
def test_frames_are_sampled_evenly_within_range(n_total, n_frames):
    idx = sample_frame_indices(n_total, n_frames)
    assert idx.dtype == np.int64 and len(idx) == n_frames
    assert idx[0] == 0 and idx[-1] == n_total - 1
    gaps = np.diff(idx)
    assert gaps.min() >= 1 and gaps.max() - gaps.min() <= 1


def test_frame_sampling_edge_cases():
    assert sample_frame_indices(5, 10).tolist() == [0, 1, 2, 3, 4]  # all of a short video
    assert sample_frame_indices(9, 1).tolist() == [4]
    assert len(sample_frame_indices(0, 4)) == 0
    with pytest.raises(ValueError):
        sample_frame_indices(10, 0)


def test_record_of_a_real_video(sample):
    folder, real, truth = sample
    record = extract_video(folder / real, SETTINGS)
    n = len(record["frame_indices"])
    assert record["video"] == real and record["frames_total"] == 15 and record["fps"] == 15
    assert record["sampled_indices"].tolist() == [0, 5, 9, 14]
    assert record["faces_per_frame"].tolist() == [1, 1, 1, 1] and n == 4
    assert record["crops"].shape == (n, 48, 40, 3) and record["crops"].dtype == np.uint8
    assert record["boxes"].shape == (n, 4) and record["boxes"].dtype == np.float32
    assert record["confidences"].dtype == np.float32 and record["confidences"].min() >= 0.9
    assert record["frame_indices"].dtype == np.int64
    assert record["masks"] is None and record["settings"]["crop_size"] == [48, 40]
    boxes = truth[real]["boxes"]
    for box, index in zip(record["boxes"], record["frame_indices"], strict=True):
        assert _iou(box, boxes[index]) >= 0.5
    # one actor per video: keeping all faces keeps the same one; downscaled boxes stay close
    both = extract_video(folder / real, {**SETTINGS, "keep": "all", "downscale": 0.5})
    assert np.allclose(both["boxes"], record["boxes"], atol=8)


def test_masks_mark_the_swapped_face_only(sample):
    folder, real, truth = sample
    fake = next(name for name, entry in truth.items() if entry["label"] == "FAKE")
    settings = {**SETTINGS, "crop_size": 64, "margin": 0.5}
    fake_record = extract_video(folder / fake, settings)
    from podium.faces.video import crop_at_boxes
    from podium.layouts.deepfake import read_frames

    originals = read_frames(folder / real, fake_record["frame_indices"])
    original_crops = crop_at_boxes(originals, fake_record["boxes"], 0.5, (64, 64))
    masks = manipulation_masks(fake_record["crops"], original_crops, threshold=8, blur=1.0)
    assert masks.shape == fake_record["crops"].shape[:3] and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    # margin 0.5: the face box is the middle half of the crop
    assert masks[:, 16:48, 16:48].mean() > 0.1
    assert masks[:, :6].mean() < 0.01 and masks[:, :, :6].mean() < 0.01
    assert manipulation_masks(original_crops, original_crops).sum() == 0  # a REAL vs itself
    with pytest.raises(ValueError, match="crops"):
        manipulation_masks(original_crops, original_crops[:, :32])


def test_unreadable_and_faceless_videos_raise(sample, tmp_path):
    folder, real, _ = sample
    data = (folder / real).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match="cut.mp4"):
        extract_video(tmp_path / "cut.mp4", SETTINGS)
    rng = np.random.default_rng(0)
    frames = [np.clip(rng.normal(128, 20, (120, 160, 3)), 0, 255).astype(np.uint8)] * 6
    (tmp_path / "noise.mp4").write_bytes(encode_mp4(frames, fps=15))
    with pytest.raises(NoFaceError, match="4 sampled frames"):
        extract_video(tmp_path / "noise.mp4", SETTINGS)


@pytest.mark.parametrize(
    "settings,needle",
    [
        ({"keep": "biggest"}, "largest"),
        ({"n_frame": 8}, "n_frames"),
        ({"n_frames": 0}, "n_frames"),
        ({"crop_size": [64]}, "crop_size"),
        ({"downscale": 0}, "downscale"),
        ({"device": "gpu"}, "cuda"),
        ({"mask_threshold": -1}, "mask_threshold"),
        ({"crop_mode": "pad"}, "isotropic_pad"),
        ({"crop_mode": "isotropic_pad", "crop_size": [64, 48]}, "crop_size"),
        ({"thresholds": [0.6, 0.7]}, "thresholds"),
        ({"thresholds": [0.6, 0.7, 1.5]}, "thresholds[2]"),
        ({"thresholds": "0.6, 0.7, 0.7"}, "thresholds"),
        ({"thresholds": [0.6, "high", 0.7]}, "thresholds[1]"),
    ],
)
def test_bad_settings_name_the_parameter(settings, needle):
    with pytest.raises(ParameterError, match="deepfake.extraction") as info:
        check_extraction_settings(settings)
    assert needle in str(info.value)


def test_settings_defaults_are_filled_in():
    s = check_extraction_settings({"crop_size": 96})
    assert s["crop_size"] == (96, 96) and s["keep"] == "largest" and s["n_frames"] >= 1


def test_new_settings_are_left_out_at_their_default():
    """crop_mode and thresholds came after records were cached: at their defaults they are
    not in the checked settings (the settings digest stays), and `setting` reads them."""
    from podium.faces.video import OMITTED_AT_DEFAULT, setting

    plain = check_extraction_settings({"crop_size": 96})
    explicit = check_extraction_settings(
        {"crop_size": 96, "crop_mode": "aspect", "thresholds": [0.6, 0.7, 0.7]}
    )
    assert plain == explicit and not set(OMITTED_AT_DEFAULT) & set(plain)
    assert setting(plain, "crop_mode") == "aspect" and setting(plain, "thresholds") == [
        0.6,
        0.7,
        0.7,
    ]
    winner = check_extraction_settings(
        {"crop_size": 380, "crop_mode": "isotropic_pad", "thresholds": (0.85, 0.95, 0.95)}
    )
    assert winner["crop_mode"] == "isotropic_pad" and winner["thresholds"] == [0.85, 0.95, 0.95]
    assert check_extraction_settings(winner) == winner  # checking twice changes nothing


def test_extraction_passes_the_thresholds_and_the_crop_mode(monkeypatch):
    import podium.faces.video as video_module
    from podium.faces import Detection, crop_face
    from podium.faces.video import extract_faces_from_frames

    seen = []

    def fake_detect(images, **kwargs):
        seen.append(kwargs["thresholds"])
        return [[Detection((30.0, 20.0, 70.0, 44.0), 0.99)] for _ in images]

    monkeypatch.setattr(video_module, "detect_faces", fake_detect)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 120, 160, 3), dtype=np.uint8)
    settings = {"crop_size": 64, "margin": 0.3333333333, "device": "cpu"}
    padded = extract_faces_from_frames(
        frames, [0, 5], {**settings, "crop_mode": "isotropic_pad", "thresholds": [0.7, 0.8, 0.8]}
    )
    aspect = extract_faces_from_frames(frames, [0, 5], settings)
    assert seen == [[0.7, 0.8, 0.8], [0.6, 0.7, 0.7]]
    for frame, crop in zip(frames, padded["crops"], strict=True):
        expected = crop_face(frame, (30, 20, 70, 44), 0.3333333333, (64, 64), "isotropic_pad")
        assert np.array_equal(crop, expected)
    # 40 x 24 grown by 13 and 8: 66 x 40 -> 64 x 38 (INTER_AREA), 13 zero rows above, 13 below
    assert not padded["crops"][:, :13].any() and not padded["crops"][:, 51:].any()
    assert padded["crops"][:, 13:51].any(axis=-1).all()
    assert aspect["crops"][:, :13].any()  # the default widens with real pixels


def test_isotropic_pad_record_of_a_real_video(sample):
    from podium.faces import crop_face
    from podium.layouts.deepfake import read_frames

    folder, real, _ = sample
    settings = {
        "n_frames": 4,
        "crop_size": 64,
        "margin": 0.3333333333,
        "crop_mode": "isotropic_pad",
    }
    record = extract_video(folder / real, {**settings, "thresholds": [0.85, 0.95, 0.95]})
    assert record["settings"]["crop_mode"] == "isotropic_pad"
    assert record["settings"]["thresholds"] == [0.85, 0.95, 0.95]
    assert record["crops"].shape == (len(record["boxes"]), 64, 64, 3)
    frames = read_frames(folder / real, record["frame_indices"])
    for frame, box, crop in zip(frames, record["boxes"], record["crops"], strict=True):
        assert np.array_equal(crop, crop_face(frame, box, 0.3333333333, (64, 64), "isotropic_pad"))
