"""The procedural face renderer: API, determinism, age/gender cues, speed, detectability."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from podium.sample_data.faces import (
    HAIR_STYLES,
    Appearance,
    _age_effects,
    face_box,
    face_region_mask,
    random_appearance,
    render_face,
    render_shoulders,
)


def _canvas(h: int = 240, w: int = 320, value: int = 120) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def test_random_appearance_is_seeded_and_plain():
    a = random_appearance(np.random.default_rng(3))
    b = random_appearance(np.random.default_rng(3))
    c = random_appearance(np.random.default_rng(4))
    assert a == b and a != c
    for field in dataclasses.fields(Appearance):
        value = getattr(a, field.name)
        assert isinstance(value, int | float | tuple), field.name
        if isinstance(value, tuple):
            assert len(value) == 3 and all(isinstance(x, int) and 0 <= x <= 255 for x in value)
    assert 18 <= a.age <= 80 and a.gender in (0, 1)
    assert 0 <= a.hair_style < len(HAIR_STYLES)


def test_forced_gender_and_age_keep_the_stream_aligned():
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    a = random_appearance(r1, gender=1, age=61.5)
    b = random_appearance(r2)
    assert (a.gender, a.age) == (1, 61.5)
    assert a.skin_rgb == b.skin_rgb  # same draws consumed
    assert random_appearance(r1) == random_appearance(r2)
    with pytest.raises(ValueError, match="gender"):
        random_appearance(np.random.default_rng(0), gender=2)


def test_gender_cues_overlap_but_differ_on_average():
    rng = np.random.default_rng(0)
    men = [random_appearance(rng, gender=0) for _ in range(300)]
    women = [random_appearance(rng, gender=1) for _ in range(300)]
    jaw_m, jaw_w = np.array([m.jaw_width for m in men]), np.array([w.jaw_width for w in women])
    assert jaw_m.mean() > jaw_w.mean() + 0.05
    assert (jaw_w > np.median(jaw_m)).mean() > 0.02  # overlap: not a perfect cue
    long_hair = {HAIR_STYLES.index(s) for s in ("bob", "long", "bun")}
    assert np.mean([w.hair_style in long_hair for w in women]) > 0.7
    assert np.mean([m.hair_style in long_hair for m in men]) < 0.2
    assert np.mean([m.brow_thickness for m in men]) > np.mean([w.brow_thickness for w in women])


def test_render_draws_in_place_and_returns_the_box():
    ap = random_appearance(np.random.default_rng(1))
    img = _canvas()
    before = img.copy()
    box = render_face(img, ap, (160, 125), 100, angle_deg=5.0)
    assert box == pytest.approx(face_box(ap, (160, 125), 100, 5.0))
    x1, y1, x2, y2 = box
    assert y2 - y1 == pytest.approx(100, rel=0.08)  # forehead to chin
    assert 0.7 < (x2 - x1) / (y2 - y1) < 1.1  # ear to ear
    inside = np.abs(img[int(y1) : int(y2), int(x1) : int(x2)].astype(int) - 120).mean()
    assert inside > 20
    assert (img[:, :40] == before[:, :40]).all()  # far from the head nothing changes
    assert img.dtype == np.uint8


def test_rendering_is_deterministic_shaded_and_antialiased():
    ap = random_appearance(np.random.default_rng(2))
    a, b = _canvas(), _canvas()
    render_face(a, ap, (160, 120), 110)
    render_face(b, ap, (160, 120), 110)
    assert (a == b).all()
    x1, y1, x2, y2 = (int(v) for v in face_box(ap, (160, 120), 110))
    cheek = a[y1 + 60 : y1 + 75, x1 + 14 : x1 + 24].reshape(-1, 3).astype(int)
    assert cheek.std(axis=0).max() > 1.0 or len({tuple(c) for c in cheek}) > 5  # not flat
    # anti-aliasing: many distinct colours (edges blend into the background)
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 500


@pytest.mark.parametrize("state", ["worn", "incorrect"])
def test_mask_states_cover_the_lower_face(state):
    ap = random_appearance(np.random.default_rng(5))
    plain, masked = _canvas(), _canvas()
    render_face(plain, ap, (160, 120), 110)
    render_face(masked, ap, (160, 120), 110, mask_state=state)
    diff = np.abs(plain.astype(int) - masked.astype(int)).sum(axis=2) > 30
    rows = np.nonzero(diff.any(axis=1))[0]
    assert diff.sum() > 400
    assert rows.min() > 120 - 55 + 30  # below the eyes
    with pytest.raises(ValueError, match="mask_state"):
        render_face(_canvas(), ap, (160, 120), 110, mask_state="chin")


def test_age_shows_gradually():
    base = random_appearance(np.random.default_rng(11), gender=0, age=30)
    ages = np.arange(18, 81, 1.0)
    wr = np.array([_age_effects(dataclasses.replace(base, age=float(x)))[0] for x in ages])
    grey = np.array([_age_effects(dataclasses.replace(base, age=float(x)))[1] for x in ages])
    assert (np.diff(wr) >= 0).all() and (np.diff(grey) >= 0).all()
    assert np.abs(np.diff(wr)).max() < 0.05 and np.abs(np.diff(grey)).max() < 0.08  # smooth
    assert grey[ages == 30][0] < 0.2 and grey[ages == 75][0] > 0.8

    def render(age: float) -> np.ndarray:
        img = _canvas()
        render_face(img, dataclasses.replace(base, age=age), (160, 120), 120)
        return img.astype(int)

    near = np.abs(render(58) - render(60)).mean()
    far = np.abs(render(25) - render(75)).mean()
    assert near < far / 3  # 58 vs 60 genuinely close, 25 vs 75 clearly apart


def test_face_region_mask_is_soft_and_inside_the_box():
    ap = random_appearance(np.random.default_rng(6))
    m = face_region_mask((240, 320), ap, (160, 120), 100, 4.0, feather=0.05)
    assert m.dtype == np.float32 and m.shape == (240, 320)
    assert 0.0 <= m.min() and m.max() <= 1.0 and m.max() > 0.99
    assert ((m > 0.05) & (m < 0.95)).sum() > 200  # feathered
    x1, y1, x2, y2 = face_box(ap, (160, 120), 100, 4.0)
    ys, xs = np.nonzero(m > 0.5)
    assert xs.min() >= x1 and xs.max() <= x2 and ys.min() >= y1 and ys.max() <= y2 + 1
    hard = face_region_mask((240, 320), ap, (160, 120), 100, 4.0)
    assert ((hard > 0.05) & (hard < 0.95)).sum() < ((m > 0.05) & (m < 0.95)).sum()


def test_faces_near_the_border_and_tiny_faces_do_not_crash():
    ap = random_appearance(np.random.default_rng(7))
    img = _canvas(64, 64)
    render_shoulders(img, (5, 5), 80, (20, 40, 200))
    render_face(img, ap, (5, 5), 80, angle_deg=-10)
    render_face(img, ap, (500, 500), 80)
    render_face(img, ap, (30, 30), 3)
    render_face(img, ap, (30, 30), 20, layers="face")


def test_a_128px_face_renders_in_a_few_milliseconds():
    rng = np.random.default_rng(8)
    aps = [random_appearance(rng) for _ in range(6)]
    img = _canvas(400, 400)
    render_face(img, aps[0], (200, 200), 128)  # warm-up
    t0 = time.perf_counter()
    for k in range(30):
        render_face(img, aps[k % 6], (200, 200), 128, angle_deg=k % 7)
    per_face_ms = (time.perf_counter() - t0) / 30 * 1000
    assert per_face_ms < 40, per_face_ms  # ~8 ms on the 2-core dev box; generous for CI


def test_mtcnn_finds_rendered_faces():
    torch = pytest.importorskip("torch")
    facenet = pytest.importorskip("facenet_pytorch")
    torch.set_num_threads(2)
    mtcnn = facenet.MTCNN(keep_all=True, device="cpu")
    rng = np.random.default_rng(12)
    hits = 0
    for _ in range(12):
        img = _canvas(value=int(rng.integers(40, 200)))
        fh = float(rng.uniform(80, 110))
        c = (float(rng.uniform(120, 200)), float(rng.uniform(105, 125)))
        render_shoulders(img, c, fh, tuple(int(x) for x in rng.integers(0, 255, 3)))
        box = render_face(img, random_appearance(rng), c, fh, angle_deg=float(rng.uniform(-8, 8)))
        found, _ = mtcnn.detect(img)
        if found is None:
            continue
        found = np.asarray(found, dtype=np.float32)
        hits += max(_iou(box, f) for f in found) >= 0.5
    assert hits >= 11


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)
