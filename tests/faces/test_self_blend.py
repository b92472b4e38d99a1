"""podium.faces.self_blend: a Self-Blended Image changes its crop only inside its blend mask,
the mask stays near the face's landmark hull, and one generator state gives one result."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from podium.faces import crop_face
from podium.faces import self_blend as sb
from podium.sample_data.faces import random_appearance, render_face

SETTINGS = sb.BlendSettings()


def _face_crop(seed: int = 3, size: int = 112, margin: float = 0.5, mode: str = "aspect"):
    """A drawn face (the sample data's renderer) cropped as the extraction crops it, and
    its face box in the crop."""
    frame = np.full((240, 320, 3), 120, np.uint8)
    box = render_face(frame, random_appearance(np.random.default_rng(seed)), (160, 120), 110)
    crop = crop_face(frame, box, margin, (size, size), mode=mode)
    return crop, sb.face_box_in_crop(box, crop.shape[:2], frame.shape[:2], margin, mode)


@pytest.fixture(scope="module")
def face():
    crop, box = _face_crop()
    points, source = sb.face_landmarks(crop, box)
    return crop, box, points, source


def _reach(size: int, settings: sb.BlendSettings = SETTINGS) -> float:
    """How far beyond the landmark hull a blend can reach, in pixels: the source's shift
    and scale (at most 3% and 5.3% of the side), the second blur's half kernel in the
    resized mask, and a few pixels of elastic deformation and resizing."""
    half_kernel = settings.blur_kernels[1] // 2 + 1
    return 0.06 * size + half_kernel * size / settings.mask_size[0] + 4


def _outside_hull(shape, points, margin: float) -> np.ndarray:
    hull = sb.hull_mask(shape, points)
    distance = cv2.distanceTransform((hull == 0).astype(np.uint8), cv2.DIST_L2, 5)
    return distance > margin


def test_dlib_finds_the_drawn_face_in_its_face_box(face):
    crop, box, points, source = face
    assert source == "dlib" and points.shape == (68, 2)
    x1, y1, x2, y2 = box
    assert (points[:, 0] > x1 - 4).all() and (points[:, 0] < x2 + 4).all()
    assert (points[:, 1] > y1 - 4).all() and (points[:, 1] < y2 + 4).all()
    # dlib's order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67
    eyes, mouth, jaw = points[36:48], points[48:68], points[0:17]
    assert eyes[:, 1].mean() < mouth[:, 1].mean() < jaw[:, 1].max()
    assert points[36:42, 0].mean() < points[42:48, 0].mean()  # the image's left eye first


def test_the_whole_crop_is_no_face_box_for_dlib():
    """With the extraction's margin a crop is twice the face: the face box from the
    detector's box puts dlib's points on the face, the whole crop scatters them."""
    crop, box = _face_crop()
    inside, _ = sb.face_landmarks(crop, box)
    whole = sb.dlib_landmarks(crop)
    inner = box[2] - box[0]
    assert np.ptp(inside[:, 0]) < inner < np.ptp(whole[:, 0])


@pytest.mark.parametrize(
    ("mode", "size", "margin"), [("aspect", 112, 0.5), ("isotropic_pad", 96, 1 / 3)]
)
def test_the_face_box_follows_the_crop_geometry(mode, size, margin):
    frame = np.zeros((240, 320, 3), np.uint8)
    box = (131.0, 52.0, 201.0, 150.0)
    frame[52:150, 131:201] = 255  # the detector's box, painted
    crop = crop_face(frame, box, margin, (size, size), mode=mode)
    ys, xs = np.nonzero(crop[..., 0] > 127)
    found = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    mapped = sb.face_box_in_crop(box, crop.shape[:2], frame.shape[:2], margin, mode)
    np.testing.assert_allclose(mapped, found, atol=1.5)


def test_unusable_dlib_points_fall_back_to_the_ellipse(monkeypatch, face):
    crop, box, _, _ = face
    monkeypatch.setattr(sb, "dlib_landmarks", lambda *_: np.full((68, 2), -50.0, np.float32))
    points, source = sb.face_landmarks(crop, box)
    assert source == "ellipse"
    np.testing.assert_array_equal(points, sb.ellipse_landmarks(box))
    x1, y1, x2, y2 = box
    assert (points[:, 0] >= x1).all() and (points[:, 0] <= x2).all()
    assert (points[:, 1] >= y1).all() and (points[:, 1] <= y2).all()
    assert sb.face_landmarks(crop, box, source="ellipse")[1] == "ellipse"
    with pytest.raises(ValueError, match="dlib, ellipse"):
        sb.face_landmarks(crop, box, source="mtcnn")


@pytest.mark.parametrize("seed", range(6))
def test_a_blend_changes_its_crop_only_inside_the_mask_near_the_face(face, seed):
    crop, _, points, _ = face
    blended, mask = sb.self_blend(crop, points, np.random.default_rng(seed))
    assert blended.dtype == np.uint8 and blended.shape == crop.shape
    assert mask.dtype == np.float32 and mask.shape == crop.shape[:2]
    assert 0.0 <= mask.min() and mask.max() <= 1.0
    assert np.isclose(mask.max(), SETTINGS.blend_ratios, atol=0.02).any()  # peak: the ratio
    changed = (blended != crop).any(axis=-1)
    assert changed.sum() > 100  # a pseudo-fake, not the crop again
    # bit for bit the crop wherever the mask is 0 ...
    np.testing.assert_array_equal(blended[mask == 0], crop[mask == 0])
    assert not changed[mask == 0].any()
    # ... and the mask stays within the landmark hull grown by what can move or blur it
    far = _outside_hull(crop.shape[:2], points, _reach(crop.shape[0]))
    assert far.mean() > 0.25  # a real constraint: much of the crop lies beyond the reach
    assert (mask[far] == 0).all() and not changed[far].any()


def test_the_same_generator_state_gives_the_same_pseudo_fake(face):
    crop, _, points, _ = face
    first = sb.self_blend(crop, points, np.random.default_rng(11))
    again = sb.self_blend(crop, points, np.random.default_rng(11))
    other = sb.self_blend(crop, points, np.random.default_rng(12))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[1], other[1])


def test_the_deformed_mask_is_soft_normalised_and_hugs_the_hull(face):
    crop, _, points, _ = face
    hull = sb.hull_mask(crop.shape[:2], points)
    soft = sb.deform_mask(hull, np.random.default_rng(0))
    assert soft.dtype == np.float32 and soft.max() == pytest.approx(1.0)
    # blurred edges, not a hard cut: with the widest blur, a band several pixels wide
    widest = sb.BlendSettings(blur_kernels=(25, 25), blur_sigma=(20.0, 20.0))
    edges = sb.deform_mask(hull, np.random.default_rng(0), widest)
    perimeter = cv2.arcLength(cv2.convexHull(points), True)
    assert ((edges > 0.05) & (edges < 0.95)).sum() > 3 * perimeter
    half_kernel = SETTINGS.blur_kernels[1] // 2 + 1
    far = _outside_hull(crop.shape[:2], points, half_kernel * 112 / 192 + 2)
    assert (soft[far] == 0).all()
    with pytest.raises(ValueError, match="empty"):
        sb.deform_mask(np.zeros_like(hull), np.random.default_rng(0))


def test_a_blend_needs_an_rgb_uint8_image(face):
    crop, _, points, _ = face
    with pytest.raises(ValueError, match="uint8"):
        sb.self_blend(crop.astype(np.float32), points, np.random.default_rng(0))
