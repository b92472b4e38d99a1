"""podium.faces: batched MTCNN detection mapped back to full size, and margin crops."""

from __future__ import annotations

import numpy as np
import pytest

from podium.faces import Detection, crop_face, detect_faces
from podium.faces.detect import crop_layout
from podium.sample_data.faces import random_appearance, render_face


def _drawn_face(seed: int, size=(240, 320), centre=(160, 120), height=110):
    image = np.full((*size, 3), 120, np.uint8)
    truth = render_face(image, random_appearance(np.random.default_rng(seed)), centre, height)
    return image, truth


def _inside(detection: Detection, truth, tolerance: float = 12) -> bool:
    x1, y1, x2, y2 = detection.box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return (
        truth[0] - tolerance < cx < truth[2] + tolerance
        and truth[1] - tolerance < cy < truth[3] + tolerance
    )


def test_batched_detection_keeps_input_order_across_image_sizes():
    left, left_truth = _drawn_face(3, centre=(100, 120))
    right, right_truth = _drawn_face(4, centre=(220, 120))
    tall, tall_truth = _drawn_face(5, size=(320, 240), centre=(120, 160))
    blank = np.full((240, 320, 3), 120, np.uint8)

    found = detect_faces([left, tall, blank, right], batch_size=2, min_confidence=0.9)

    assert len(found) == 4
    assert found[2] == []  # nothing drawn, nothing found
    for detections, truth in (
        (found[0], left_truth),
        (found[1], tall_truth),
        (found[3], right_truth),
    ):
        assert detections and detections[0].confidence >= 0.9
        assert _inside(detections[0], truth)


def test_downscaled_detection_reports_full_size_boxes():
    image, truth = _drawn_face(3)
    full = detect_faces([image], min_confidence=0.9)[0][0]
    half = detect_faces([image], downscale=0.5, min_confidence=0.9)[0][0]
    assert _inside(half, truth)
    assert np.allclose(full.box, half.box, atol=12)  # same pixels, not half the coordinates


def test_min_confidence_filters_detections():
    image, _ = _drawn_face(3)
    assert detect_faces([image], min_confidence=1.01) == [[]]


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"downscale": 0.0}, {"downscale": 1.5}])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        detect_faces([np.zeros((32, 32, 3), np.uint8)], **kwargs)


def test_crop_face_grows_the_box_and_keeps_the_output_aspect():
    image = np.zeros((200, 200, 3), np.uint8)
    image[80:120, 90:110] = 255  # the "face": 20 wide, 40 tall
    crop = crop_face(image, (90, 80, 110, 120), margin=0.5, size=None)
    # 40 tall * (1 + 2 * 0.5) = 80 rows, 20 wide -> 40 columns
    assert crop.shape == (80, 40, 3)
    assert crop[20:60, 10:30].min() == 255 and crop[:10].max() == 0

    resized = crop_face(image, (90, 80, 110, 120), margin=0.5, size=(64, 64))
    assert resized.shape == (64, 64, 3)
    # widened to square before resizing: the bright face stays narrower than tall
    bright = np.argwhere(resized[..., 0] > 127)
    assert np.ptp(bright[:, 0]) > 1.5 * np.ptp(bright[:, 1])


def test_crop_face_clips_at_the_border_and_rejects_boxes_outside():
    image = np.zeros((100, 100, 3), np.uint8)
    assert crop_face(image, (0, 0, 20, 20), margin=1.0).shape == (40, 40, 3)
    with pytest.raises(ValueError, match="outside"):
        crop_face(image, (150, 150, 180, 180), margin=0.1)


def _random_crop_args(rng):
    """A frame size, box (often over an edge or tiny), margin, output size and mode."""
    frame_hw = (int(rng.integers(8, 200)), int(rng.integers(8, 200)))
    side = rng.uniform(0.5, 3) if rng.random() < 0.15 else rng.uniform(2, 0.9 * max(frame_hw))
    w, h = side * rng.uniform(0.5, 1.5), side * rng.uniform(0.5, 1.5)
    x1 = rng.uniform(-0.6 * w, frame_hw[1] - 0.4 * w)
    y1 = rng.uniform(-0.6 * h, frame_hw[0] - 0.4 * h)
    margin = float(rng.choice([0.0, 0.25, 1 / 3, 0.5, 1.0]))
    mode = str(rng.choice(["aspect", "isotropic_pad"]))
    if mode == "isotropic_pad" or rng.random() < 0.3:
        size = (int(rng.integers(4, 160)),) * 2
    else:
        size = None if rng.random() < 0.2 else tuple(int(v) for v in rng.integers(4, 160, 2))
    return frame_hw, (x1, y1, x1 + w, y1 + h), margin, size, mode


def test_the_crop_layout_maps_the_crop_corners_to_its_region_corners():
    """On random boxes: the corners of the crop's content map to the corners of the frame
    region and back, the region is the grown box clipped to the frame, and crop_face takes
    exactly that region into exactly that content: a frame white inside the region and
    black outside gives a crop white over the content and zero elsewhere (the padding)."""
    rng = np.random.default_rng(11)
    checked = {"aspect": 0, "isotropic_pad": 0}
    for _ in range(400):
        frame_hw, box, margin, size, mode = _random_crop_args(rng)
        try:
            layout = crop_layout(box, margin, frame_hw, size, mode)
        except ValueError:
            with pytest.raises(ValueError, match="outside"):
                crop_face(np.zeros((*frame_hw, 3), np.uint8), box, margin, size, mode)
            continue
        left, top, right, bottom = layout.region
        (off_y, off_x), (h, w) = layout.offset, layout.resized
        content_x, content_y = np.array([off_x, off_x + w]), np.array([off_y, off_y + h])
        np.testing.assert_allclose(
            layout.to_frame(content_x, content_y), [[left, right], [top, bottom]], atol=1e-9
        )
        np.testing.assert_allclose(
            layout.to_crop(np.array([left, right]), np.array([top, bottom])),
            [content_x, content_y],
            atol=1e-9,
        )
        u_left, u_top, u_right, u_bottom = layout.unclipped
        assert layout.region == (
            max(u_left, 0),
            max(u_top, 0),
            min(u_right, frame_hw[1]),
            min(u_bottom, frame_hw[0]),
        )
        # it holds the box grown by the margin, to within the rounding (aspect rounds to
        # whole pixels; isotropic_pad truncates the corners, towards zero, and floors the
        # growth)
        grow_x, grow_y = margin * (box[2] - box[0]), margin * (box[3] - box[1])
        slack = 0.5 + 1e-9 if mode == "aspect" else 2 + 2 * margin
        assert u_left <= box[0] - grow_x + slack and u_right >= box[2] + grow_x - slack
        assert u_top <= box[1] - grow_y + slack and u_bottom >= box[3] + grow_y - slack
        frame = np.zeros((*frame_hw, 3), np.uint8)
        frame[top:bottom, left:right] = 255
        crop = crop_face(frame, box, margin, size, mode)
        content = np.zeros(layout.size, bool)
        content[off_y : off_y + h, off_x : off_x + w] = True
        assert crop.shape == (*layout.size, 3)
        assert (crop[content] == 255).all() and not crop[~content].any(), (box, frame_hw, size)
        checked[mode] += 1
    assert min(checked.values()) >= 120, checked


# ---------------------------------------------------------------------------- thresholds

LOOSE = [0.6, 0.7, 0.7]  # facenet-pytorch's default
STRICT = [0.85, 0.95, 0.95]  # the DFDC 1st place's, for its training crops


def test_thresholds_reach_the_mtcnn_and_each_set_is_built_once():
    from podium.faces import DEFAULT_THRESHOLDS, load_detector

    strict = load_detector("cpu", STRICT)
    assert strict.thresholds == STRICT
    assert load_detector("cpu", tuple(STRICT)) is strict  # list or tuple: the same detector
    default = load_detector("cpu")
    assert default.thresholds == list(DEFAULT_THRESHOLDS) == LOOSE
    assert default is not strict and load_detector("cpu", LOOSE) is default
    for bad in ([0.6, 0.7], [0.6, 0.7, 1.2], [-0.1, 0.7, 0.7]):
        with pytest.raises(ValueError, match="thresholds"):
            load_detector("cpu", bad)


def test_detect_faces_uses_the_given_thresholds(monkeypatch):
    import podium.faces.detect as detect_module

    seen = []
    real = detect_module.load_detector
    monkeypatch.setattr(
        detect_module,
        "load_detector",
        lambda device, thresholds: seen.append(thresholds) or real(device, thresholds),
    )
    detect_faces([np.zeros((32, 32, 3), np.uint8)], thresholds=STRICT)
    detect_faces([np.zeros((32, 32, 3), np.uint8)])
    assert seen == [STRICT, (0.6, 0.7, 0.7)]


def _small_faces(height: int, blur: float = 0.0) -> np.ndarray:
    """Four small drawn faces on a noisy background: some are borderline for MTCNN."""
    import cv2

    from podium.sample_data.faces import random_appearance, render_face

    rng = np.random.default_rng(0)
    image = np.clip(120 + rng.normal(0, 25, (240, 320, 3)), 0, 255).astype(np.uint8)
    for k, seed in enumerate((11, 12, 13, 14)):
        render_face(
            image, random_appearance(np.random.default_rng(seed)), (50 + 75 * k, 120), height
        )
    return cv2.GaussianBlur(image, (0, 0), blur) if blur else image


def test_strict_thresholds_find_no_more_faces_than_loose_ones():
    frames = [_small_faces(24), _small_faces(30), _small_faces(40, blur=2.0), _drawn_face(3)[0]]
    loose = detect_faces(frames, min_confidence=0.0, thresholds=LOOSE)
    strict = detect_faces(frames, min_confidence=0.0, thresholds=STRICT)
    counts = [(len(a), len(b)) for a, b in zip(loose, strict, strict=True)]
    assert all(n_strict <= n_loose for n_loose, n_strict in counts), counts
    assert sum(s for _, s in counts) >= 1 and sum(s for _, s in counts) < sum(n for n, _ in counts)
    # O-net's threshold is applied: every strict face is above 0.95 without a confidence filter
    assert min(d.confidence for found in strict for d in found) > 0.95
    stricter = detect_faces(frames, min_confidence=0.0, thresholds=[0.95, 0.99, 0.999])
    assert sum(map(len, stricter)) < sum(map(len, strict))
