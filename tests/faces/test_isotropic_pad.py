"""``crop_mode: isotropic_pad`` against the DFDC 1st place's crop, recomputed from its definition.

The definition (selimsef/dfdc_deepfake_challenge: ``preprocessing/extract_crops.py`` and
``kernel_utils.py`` ``isotropically_resize_image`` and ``put_to_center``):

1. the box corners are made integers with ``int()``; ``w = xmax - xmin``, ``h = ymax - ymin``;
2. the box grows by ``w // 3`` left and right and ``h // 3`` above and below;
3. the rows and columns of the grown box that lie in the frame are taken;
4. the long side becomes ``size``, the short one ``int(short * (size / long))`` (a square
   takes the height branch); INTER_CUBIC when that enlarges, INTER_AREA when it shrinks,
   nothing when the long side is ``size`` already;
5. the result goes into a zero ``size`` x ``size`` image at ``(size - h) // 2, (size - w) // 2``.

:func:`reference_layout` and :func:`reference_crop` below follow those steps with plain
loops and integers; podium's :func:`podium.faces.detect.isotropic_pad_layout` and
:func:`podium.faces.detect.crop_face` are compared with them on random inputs, and the
worked examples pin the arithmetic as literals.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from podium.faces import crop_face, isotropic_pad_layout
from podium.faces.video import crop_at_boxes

THIRD = 0.3333333333  # conf/full's margin: floor(w * THIRD) must be w // 3
RNG_SEED = 20200604


# ---------------------------------------------------------------------------- the reference


def reference_layout(box, frame_h: int, frame_w: int, size: int):
    """(rows, cols, resized_h, resized_w, top, left, interpolation) or None when empty.

    ``rows`` and ``cols``: the frame rows and columns taken, in order.
    """
    xmin, ymin, xmax, ymax = (int(v) for v in box)
    w, h = xmax - xmin, ymax - ymin
    grow_w, grow_h = w // 3, h // 3
    rows = []
    y = ymin - grow_h
    while y < ymax + grow_h:
        if 0 <= y < frame_h:
            rows.append(y)
        y += 1
    cols = []
    x = xmin - grow_w
    while x < xmax + grow_w:
        if 0 <= x < frame_w:
            cols.append(x)
        x += 1
    if not rows or not cols:
        return None
    crop_h, crop_w = len(rows), len(cols)
    if max(crop_w, crop_h) == size:
        new_h, new_w, interpolation = crop_h, crop_w, None
    else:
        if crop_w > crop_h:
            long_side = crop_w
            new_w, new_h = size, int(crop_h * (size / crop_w))
        else:
            long_side = crop_h
            new_h, new_w = size, int(crop_w * (size / crop_h))
        new_h, new_w = max(new_h, 1), max(new_w, 1)
        interpolation = cv2.INTER_CUBIC if size > long_side else cv2.INTER_AREA
    # the padding, handed out one pixel at a time: bottom (right) first, then top (left)
    top = bottom = 0
    for i in range(size - new_h):
        if i % 2 == 0:
            bottom += 1
        else:
            top += 1
    left = right = 0
    for i in range(size - new_w):
        if i % 2 == 0:
            right += 1
        else:
            left += 1
    assert top + new_h + bottom == size and left + new_w + right == size
    return rows, cols, new_h, new_w, top, left, interpolation


def reference_crop(frame: np.ndarray, box, size: int) -> np.ndarray | None:
    layout = reference_layout(box, frame.shape[0], frame.shape[1], size)
    if layout is None:
        return None
    rows, cols, new_h, new_w, top, left, interpolation = layout
    region = np.zeros((len(rows), len(cols), frame.shape[2]), frame.dtype)
    for i, y in enumerate(rows):
        for j, x in enumerate(cols):
            region[i, j] = frame[y, x]
    if interpolation is not None:  # the definition names cv2's interpolations
        region = cv2.resize(region, (new_w, new_h), interpolation=interpolation)
    out = np.zeros((size, size, frame.shape[2]), frame.dtype)
    for i in range(new_h):
        for j in range(new_w):
            out[top + i, left + j] = region[i, j]
    return out


def _podium_layout(box, frame_h, frame_w, size, margin=THIRD):
    try:
        layout = isotropic_pad_layout(box, margin, (frame_h, frame_w), size)
    except ValueError:
        return None
    left, top, right, bottom = layout.region
    return (
        list(range(top, bottom)),
        list(range(left, right)),
        *layout.resized,
        *layout.offset,
        layout.interpolation,
    )


def _random_box(rng, frame_h, frame_w, max_side=None):
    """A float box, mostly inside the frame, sometimes over an edge (clipping) or tiny."""
    max_side = max_side or max(frame_h, frame_w)
    bw = rng.uniform(1, max(2.0, min(max_side, frame_w) * 0.9))
    bh = rng.uniform(1, max(2.0, min(max_side, frame_h) * 0.9))
    x1 = rng.uniform(-0.2 * bw, frame_w - 0.8 * bw)
    y1 = rng.uniform(-0.2 * bh, frame_h - 0.8 * bh)
    if rng.random() < 0.5:  # podium crops clipped boxes (records store them clipped)
        x1, y1 = max(x1, 0.0), max(y1, 0.0)
        return (x1, y1, min(x1 + bw, frame_w), min(y1 + bh, frame_h))
    return (x1, y1, x1 + bw, y1 + bh)


# ---------------------------------------------------------------------------- random inputs


@pytest.mark.parametrize("margin", [THIRD, 1 / 3])
def test_layout_matches_the_reference_on_random_boxes(margin):
    rng = np.random.default_rng(RNG_SEED)
    compared = resized_up = resized_down = untouched = 0
    for _ in range(3000):
        frame_h, frame_w = int(rng.integers(8, 2161)), int(rng.integers(8, 3841))
        size = int(rng.integers(8, 601))
        box = _random_box(rng, frame_h, frame_w)
        if rng.random() < 0.05:  # a region whose long side is already `size`
            side = int(rng.integers(1, 120)) * 3
            box = (side, side, 2.0 * side, side + side / 2)
            size = side + 2 * (side // 3)
            frame_h, frame_w = 3 * size, 3 * size
        expected = reference_layout(box, frame_h, frame_w, size)
        assert _podium_layout(box, frame_h, frame_w, size, margin) == expected, (
            box,
            frame_h,
            frame_w,
            size,
        )
        compared += expected is not None
        if expected is not None:
            interpolation = expected[-1]
            resized_up += interpolation == cv2.INTER_CUBIC
            resized_down += interpolation == cv2.INTER_AREA
            untouched += interpolation is None
    assert compared >= 2900 and min(resized_up, resized_down, untouched) >= 50


def test_content_lands_where_the_reference_puts_it():
    """On 1,200 random full-size frames: the frame's pixels fill exactly the reference's
    rectangle of the output, the rest is zero padding."""
    rng = np.random.default_rng(RNG_SEED + 1)
    white = np.full((1080, 1920, 3), 255, np.uint8)
    for _ in range(1200):
        frame_h, frame_w = int(rng.integers(16, 1081)), int(rng.integers(16, 1921))
        size = int(rng.choice([64, 112, 224, 300, 380]))
        box = _random_box(rng, frame_h, frame_w)
        _, _, new_h, new_w, top, left, _ = reference_layout(box, frame_h, frame_w, size)
        crop = crop_face(white[:frame_h, :frame_w], box, THIRD, (size, size), "isotropic_pad")
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        expected = np.zeros((size, size), bool)
        expected[top : top + new_h, left : left + new_w] = True
        assert np.array_equal(crop[..., 0] > 0, expected), (box, frame_h, frame_w, size)
        assert (crop[expected] == 255).all()  # cubic and area resizes keep a flat image flat


def test_pixels_equal_the_reference_on_small_random_images():
    rng = np.random.default_rng(RNG_SEED + 2)
    kinds = set()
    for _ in range(400):
        frame_h, frame_w = int(rng.integers(4, 97)), int(rng.integers(4, 97))
        frame = rng.integers(0, 256, (frame_h, frame_w, 3), dtype=np.uint8)
        size = int(rng.integers(8, 65))
        box = _random_box(rng, frame_h, frame_w)
        expected = reference_crop(frame, box, size)
        if expected is None:
            with pytest.raises(ValueError, match="outside"):
                crop_face(frame, box, THIRD, (size, size), "isotropic_pad")
            continue
        kinds.add(reference_layout(box, frame_h, frame_w, size)[-1])
        crop = crop_face(frame, box, THIRD, (size, size), "isotropic_pad")
        assert np.array_equal(crop, expected), (box, frame_h, frame_w, size)
    assert kinds >= {cv2.INTER_CUBIC, cv2.INTER_AREA}


def test_a_region_already_at_size_is_copied_unresized():
    rng = np.random.default_rng(RNG_SEED + 3)
    frame = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    box = (12, 20, 42, 38)  # 30 x 18 -> grown by 10 and 6: 50 x 30
    assert isotropic_pad_layout(box, THIRD, frame.shape, 50).interpolation is None
    crop = crop_face(frame, box, THIRD, (50, 50), "isotropic_pad")
    assert np.array_equal(crop[10:40], frame[14:44, 2:52]) and not crop[:10].any()
    assert np.array_equal(crop, reference_crop(frame, box, 50))


def test_the_margin_is_a_third_in_integers_for_every_width():
    """floor(w * 0.3333333333) (with podium's slack) is w // 3 for every box side up to
    30,000 pixels: conf/full's margin is the winner's w // 3 and h // 3."""
    for w in range(1, 30_000):
        layout = isotropic_pad_layout((w, w, 2 * w, 2 * w), THIRD, (10**6, 10**6), 64)
        assert layout.region == (w - w // 3, w - w // 3, 2 * w + w // 3, 2 * w + w // 3), w


@pytest.mark.parametrize("margin,divisor", [(0.5, 2), (0.25, 4), (0.0, None), (1.0, 1)])
def test_other_margins_floor_the_fraction(margin, divisor):
    for w in range(1, 2000, 7):
        left = isotropic_pad_layout((w, 5, 2 * w, 9), margin, (10**5, 10**5), 64).region[0]
        assert w - left == (w // divisor if divisor else 0)


# ---------------------------------------------------------------------------- worked examples


def test_worked_example_a_wide_box_enlarged_and_padded_top_and_bottom():
    # a 100 x 50 box in a 640 x 480 frame; 100 // 3 = 33, 50 // 3 = 16
    layout = isotropic_pad_layout((270, 215, 370, 265), THIRD, (480, 640), 380)
    assert layout.region == (237, 199, 403, 281)  # 166 wide, 82 tall
    # scale 380 / 166 = 2.289...; 82 * 2.289... = 187.7 -> 187 rows
    assert layout.resized == (187, 380) and layout.interpolation == cv2.INTER_CUBIC
    assert layout.offset == (96, 0)  # 193 rows of padding: 96 above, 97 below


def test_worked_example_the_winners_float_truncation():
    # 105 x 63 -> 175 x 105; exactly 228 rows, but 105 * (380 / 175) = 227.99999999999997
    layout = isotropic_pad_layout((200, 100, 305, 163), THIRD, (1080, 1920), 380)
    assert layout.region == (165, 79, 340, 184)
    assert layout.resized == (227, 380) and layout.offset == (76, 0)  # 76 above, 77 below
    # a square region takes the height branch: 175 * (380 / 175) = 379.99999999999994
    square = isotropic_pad_layout((200, 100, 305, 205), THIRD, (1080, 1920), 380)
    assert square.resized == (380, 379) and square.offset == (0, 0)  # a zero column at right


def test_worked_example_a_large_box_shrunk():
    # 600 x 300 in 1920 x 1080 -> 1000 x 500 -> 380 x 190 with INTER_AREA, 95 above and below
    layout = isotropic_pad_layout((500, 300, 1100, 600), THIRD, (1080, 1920), 380)
    assert layout.region == (300, 200, 1300, 700)
    assert layout.resized == (190, 380) and layout.offset == (95, 0)
    assert layout.interpolation == cv2.INTER_AREA


def test_worked_example_a_tall_box_clipped_at_the_frame_edge():
    # corners truncated: (10.9, 0.4, 70.99, 90.2) -> (10, 0, 70, 90); 60 // 3 = 20, 90 // 3 = 30
    layout = isotropic_pad_layout((10.9, 0.4, 70.99, 90.2), THIRD, (480, 640), 224)
    assert layout.region == (0, 0, 90, 120)  # left and top clipped at 0: 90 wide, 120 tall
    assert layout.resized == (224, 168) and layout.offset == (0, 28)  # 28 left, 28 right


def test_worked_example_pixels():
    # a 3 x 3 box of one colour in a 9 x 9 frame grows by 1: a 5 x 5 region, enlarged to 10
    frame = np.zeros((9, 9, 3), np.uint8)
    frame[2:7, 2:7] = (10, 20, 30)
    crop = crop_face(frame, (3, 3, 6, 6), THIRD, (10, 10), "isotropic_pad")
    assert crop.shape == (10, 10, 3) and (crop == (10, 20, 30)).all(axis=-1).all()
    # a 6 x 3 box: region 10 x 5 (rows 1..5, cols 1..10 of a 7 x 12 frame) -> 10 x 5, no resize
    frame = np.zeros((7, 12, 3), np.uint8)
    frame[1:6, 1:11] = 200
    crop = crop_face(frame, (3, 2, 9, 5), THIRD, (10, 10), "isotropic_pad")
    assert (crop[2:7] == 200).all() and not crop[:2].any() and not crop[7:].any()


# ---------------------------------------------------------------------------- arguments


def test_isotropic_pad_needs_a_square_size():
    frame = np.zeros((50, 50, 3), np.uint8)
    for size in (None, (32, 40)):
        with pytest.raises(ValueError, match="square"):
            crop_face(frame, (10, 10, 20, 20), THIRD, size, "isotropic_pad")
    with pytest.raises(ValueError, match="mode"):
        crop_face(frame, (10, 10, 20, 20), THIRD, (32, 32), "stretch")


def test_crop_at_boxes_passes_the_mode():
    rng = np.random.default_rng(RNG_SEED + 4)
    frames = rng.integers(0, 256, (3, 60, 80, 3), dtype=np.uint8)
    boxes = np.array([[5, 5, 30, 20], [40, 10, 70, 55], [0, 0, 80, 60]], np.float32)
    padded = crop_at_boxes(frames, boxes, THIRD, (48, 48), mode="isotropic_pad")
    for frame, box, crop in zip(frames, boxes, padded, strict=True):
        assert np.array_equal(crop, reference_crop(frame, box, 48))
    aspect = crop_at_boxes(frames, boxes, THIRD, (48, 48))
    assert not np.array_equal(aspect, padded)  # the default is still podium's aspect crop
