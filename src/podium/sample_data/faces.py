"""Procedural, anti-aliased face renderer shared by the sample-data generators.

Everything is drawn in a *local face frame*: ``u`` to the right, ``v`` down, one unit equal
to ``face_height`` pixels and the origin at the centre of the face box, so the forehead top
is at ``v = -0.5`` and the chin at ``v = +0.5``. The frame is rotated by ``angle_deg`` (in-plane
roll, clockwise on screen for positive angles) and placed at ``center`` in the image.

Shapes are filled with OpenCV's anti-aliased polygon fill (``LINE_AA`` with sub-pixel
coordinates) and composited in float32 over the affected part of the image only: on
one CPU core a 96 px face takes about 5 ms and a 128 px face about 7 ms with hair, ears and
neck, about 4 ms with ``layers="face"``. Skin and hair are shaded (a soft ellipsoid
lighting model with a light from the upper left), not flat.

Identity lives in :class:`Appearance`; age shows gradually (greying hair mostly after ~45,
forehead lines, crow's feet, nasolabial folds and under-eye bags whose strength grows
smoothly with age, with a per-identity offset), so neighbouring ages are ambiguous. Gender
shows through hair, jaw width, brow thickness, face shape and lips, with overlap.

No kedro or mlflow imports: this module is a plain building block.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import astuple, dataclass
from functools import lru_cache

import cv2
import numpy as np

__all__ = [
    "Appearance",
    "HAIR_STYLES",
    "MASK_STATES",
    "face_box",
    "face_region_mask",
    "random_appearance",
    "render_face",
    "render_shoulders",
]

#: Hair styles by index: ``Appearance.hair_style`` is an index into this tuple.
HAIR_STYLES = ("buzz", "short", "bob", "long", "receding", "bun")
#: Accepted values of ``render_face(mask_state=...)``.
MASK_STATES = ("none", "worn", "incorrect")

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_SCALE = float(1 << _SHIFT)
_LIGHT = np.array([-0.45, -0.55, 0.70], dtype=np.float32)
_LIGHT /= np.linalg.norm(_LIGHT)


@dataclass(frozen=True)
class Appearance:
    """One identity (an "actor" or "person"). All fields are plain numbers or tuples.

    Geometry fields are relative: ``face_aspect`` is face width / face height (cheek to
    cheek), ``jaw_width`` the jaw width relative to the cheek width, ``eye_spacing`` the
    distance between the eye centres relative to the face width, ``nose_length`` the
    distance from eye line to nose tip in face heights, ``mouth_width`` relative to the
    face width, ``brow_thickness`` in face heights. ``hair_style`` indexes
    :data:`HAIR_STYLES`.
    """

    gender: int  # 0 male, 1 female
    age: float  # years, 18..80
    skin_rgb: tuple[int, int, int]
    hair_rgb: tuple[int, int, int]
    eye_rgb: tuple[int, int, int]
    lip_rgb: tuple[int, int, int]
    face_aspect: float
    jaw_width: float
    eye_spacing: float
    nose_length: float
    mouth_width: float
    brow_thickness: float
    hair_style: int


# ---------------------------------------------------------------------------- appearance

_SKIN_TONES = np.array(
    [
        (247, 215, 190),
        (236, 192, 160),
        (214, 164, 128),
        (184, 130, 94),
        (140, 94, 66),
        (98, 64, 46),
    ],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [(28, 24, 22), (55, 38, 28), (95, 64, 42), (150, 110, 70), (196, 160, 104), (136, 62, 32)],
    dtype=np.float64,
)
_HAIR_P_LIGHT = np.array([0.22, 0.28, 0.22, 0.1, 0.12, 0.06])
_EYE_COLOURS = np.array(
    [(70, 42, 24), (104, 66, 36), (112, 98, 52), (78, 112, 76), (72, 110, 150), (110, 124, 134)],
    dtype=np.float64,
)
_EYE_P_LIGHT = np.array([0.25, 0.2, 0.15, 0.12, 0.18, 0.1])
_STYLE_P = {
    0: np.array([0.28, 0.42, 0.04, 0.04, 0.18, 0.04]),  # male: mostly short
    1: np.array([0.02, 0.14, 0.30, 0.40, 0.0, 0.14]),  # female: mostly longer
}


def _clip_rgb(c) -> tuple[int, int, int]:
    return tuple(int(round(min(255.0, max(0.0, float(x))))) for x in c)  # type: ignore[return-value]


def random_appearance(
    rng: np.random.Generator, gender: int | None = None, age: float | None = None
) -> Appearance:
    """Draw one identity. ``gender``/``age`` fix those attributes; everything else is random.

    Draws a fixed number of values from ``rng`` whatever the arguments, so a stream of
    identities stays aligned when only gender or age are forced.
    """
    g_draw = int(rng.integers(2))
    a_draw = float(rng.uniform(18.0, 80.0))
    gender = g_draw if gender is None else int(gender)
    if gender not in (0, 1):
        raise ValueError(f"gender must be 0 (male) or 1 (female), got {gender!r}")
    age = a_draw if age is None else float(age)

    tone = float(rng.uniform(0.0, len(_SKIN_TONES) - 1.0))
    i0 = int(math.floor(tone))
    i1 = min(i0 + 1, len(_SKIN_TONES) - 1)
    skin = _SKIN_TONES[i0] * (1 - (tone - i0)) + _SKIN_TONES[i1] * (tone - i0)
    skin = skin + rng.normal(0.0, 5.0, 3)
    dark = tone / (len(_SKIN_TONES) - 1)

    p_hair = _HAIR_P_LIGHT * np.array([1 + 3 * dark, 1 + dark, 1, 1 - dark, 1 - dark, 1 - dark])
    hair = _HAIR_COLOURS[int(rng.choice(len(_HAIR_COLOURS), p=p_hair / p_hair.sum()))]
    hair = hair * rng.uniform(0.85, 1.15) + rng.normal(0.0, 4.0, 3)

    p_eye = _EYE_P_LIGHT * np.array([1 + 4 * dark, 1 + dark, 1, 1 - dark, 1 - dark, 1 - dark])
    eye = _EYE_COLOURS[int(rng.choice(len(_EYE_COLOURS), p=p_eye / p_eye.sum()))]
    eye = eye + rng.normal(0.0, 6.0, 3)

    lip = skin * np.array([0.86, 0.58, 0.58]) + np.array([18.0, 4.0, 8.0])
    lip = lip * (1.0 + 0.08 * gender) + rng.normal(0.0, 5.0, 3)

    male = gender == 0
    face_aspect = float(np.clip(rng.normal(0.80 if male else 0.76, 0.035), 0.66, 0.92))
    jaw_width = float(np.clip(rng.normal(0.86 if male else 0.76, 0.05), 0.6, 1.0))
    eye_spacing = float(np.clip(rng.normal(0.46, 0.02), 0.40, 0.52))
    nose_length = float(np.clip(rng.normal(0.21 if male else 0.20, 0.015), 0.16, 0.25))
    mouth_width = float(np.clip(rng.normal(0.40 if male else 0.38, 0.03), 0.30, 0.48))
    brow_thickness = float(np.clip(rng.normal(0.030 if male else 0.021, 0.005), 0.012, 0.045))
    p_style = _STYLE_P[gender].copy()
    if male:  # receding hairlines get more common with age
        p_style[4] *= 0.4 + 1.6 * float(np.clip((age - 25.0) / 40.0, 0.0, 1.0))
    hair_style = int(rng.choice(len(HAIR_STYLES), p=p_style / p_style.sum()))
    return Appearance(
        gender=gender,
        age=age,
        skin_rgb=_clip_rgb(skin),
        hair_rgb=_clip_rgb(hair),
        eye_rgb=_clip_rgb(eye),
        lip_rgb=_clip_rgb(lip),
        face_aspect=face_aspect,
        jaw_width=jaw_width,
        eye_spacing=eye_spacing,
        nose_length=nose_length,
        mouth_width=mouth_width,
        brow_thickness=brow_thickness,
        hair_style=hair_style,
    )


@lru_cache(maxsize=512)
def _identity_unit(appearance: Appearance, salt: int = 0) -> float:
    """A stable pseudo-random number in [0, 1) tied to the identity (not to age)."""
    fields = astuple(appearance)
    key = repr((fields[0], *fields[2:], salt)).encode()
    return (zlib.crc32(key) & 0xFFFFFF) / float(1 << 24)


@lru_cache(maxsize=512)
def _age_effects(appearance: Appearance) -> tuple[float, float]:
    """(wrinkle strength 0..1, grey fraction 0..1); smooth in age, offset per identity."""
    age = float(appearance.age)
    shift = 10.0 * (_identity_unit(appearance, 1) - 0.5)  # people age differently
    t = min(1.0, max(0.0, (age - 24.0 + shift) / 52.0))
    wrinkles = t**1.35
    grey_mid = 53.0 + 12.0 * (_identity_unit(appearance, 2) - 0.5)
    grey = 1.0 / (1.0 + math.exp(-(age - grey_mid) / 5.5))
    return wrinkles, grey


# ---------------------------------------------------------------------------- geometry


def _superellipse(
    cu: float, cv: float, a: float, b: float, n: float, t0: float, t1: float, k: int
) -> np.ndarray:
    t = np.linspace(t0, t1, k)
    c, s = np.cos(t), np.sin(t)
    u = cu + a * np.sign(c) * np.abs(c) ** (2.0 / n)
    v = cv + b * np.sign(s) * np.abs(s) ** (2.0 / n)
    return np.stack([u, v], axis=1)


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def _ellipse(cu, cv, a, b, rot=0.0, k=40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    cr, sr = math.cos(rot), math.sin(rot)
    return np.stack([cu + x * cr - y * sr, cv + x * sr + y * cr], axis=1)


_V_WIDE = -0.05  # level of the widest part of the face (cheekbones)
_V_SKULL = -0.76  # top of the skull (under the hair)
_V_EYE = -0.06


@lru_cache(maxsize=512)
def _face_outline(ap: Appearance, k: int = 72) -> np.ndarray:
    """Closed skin outline (skull + cheeks + jaw + chin) in local units."""
    a = ap.face_aspect / 2.0
    n_low = 1.75 + (ap.jaw_width - 0.6) * 3.2  # squarer jaw for wider jaws (see face_region_mask)
    lower = _superellipse(0.0, _V_WIDE, a, 0.5 - _V_WIDE, n_low, 0.0, np.pi, k // 2)
    upper = _superellipse(0.0, _V_WIDE, a * 1.0, _V_WIDE - _V_SKULL, 2.25, np.pi, 2 * np.pi, k // 2)
    return _frozen(np.concatenate([lower, upper[1:-1]]))


@lru_cache(maxsize=512)
def _ear_polys(ap: Appearance) -> list[np.ndarray]:
    a = ap.face_aspect / 2.0
    out = []
    for side in (-1.0, 1.0):
        out.append(_frozen(_ellipse(side * (a + 0.012), 0.015, 0.052, 0.125, side * 0.12, 28)))
    return out


def face_box(
    appearance: Appearance, center: tuple[float, float], face_height: float, angle_deg: float = 0.0
) -> tuple[float, float, float, float]:
    """The box (x1, y1, x2, y2) ``render_face`` returns, without drawing anything.

    Forehead top (``v = -0.5``) to chin, ear to ear, as the axis-aligned bounds of the
    rotated outline.
    """
    outline = _face_outline(appearance)
    outline = outline[outline[:, 1] >= -0.5]
    pts = np.concatenate([outline, *_ear_polys(appearance)])
    pts = pts[pts[:, 1] >= -0.5]
    th = math.radians(angle_deg)
    c, s = math.cos(th), math.sin(th)
    x = center[0] + face_height * (pts[:, 0] * c - pts[:, 1] * s)
    y = center[1] + face_height * (pts[:, 0] * s + pts[:, 1] * c)
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())


# ---------------------------------------------------------------------------- canvas


class _Canvas:
    """A float32 working copy of the image region around the face with local-frame helpers."""

    def __init__(self, image, center, face_height, angle_deg, extent):
        self.image = image
        self.h_px = float(face_height)
        th = math.radians(angle_deg)
        self.c, self.s = math.cos(th), math.sin(th)
        self.cx, self.cy = float(center[0]), float(center[1])
        u0, v0, u1, v1 = extent
        corners = np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], dtype=np.float64)
        xy = self._to_image(corners)
        H, W = image.shape[:2]
        self.x0 = int(max(0, math.floor(xy[:, 0].min()) - 2))
        self.y0 = int(max(0, math.floor(xy[:, 1].min()) - 2))
        self.x1 = int(min(W, math.ceil(xy[:, 0].max()) + 3))
        self.y1 = int(min(H, math.ceil(xy[:, 1].max()) + 3))
        self.empty = self.x1 <= self.x0 or self.y1 <= self.y0
        self.h = max(0, self.y1 - self.y0)
        self.w = max(0, self.x1 - self.x0)
        self.rgb = image[self.y0 : self.y1, self.x0 : self.x1].astype(np.float32)
        self._uv = None

    def _to_image(self, pts: np.ndarray) -> np.ndarray:
        u, v = pts[:, 0], pts[:, 1]
        x = self.cx + self.h_px * (u * self.c - v * self.s)
        y = self.cy + self.h_px * (u * self.s + v * self.c)
        return np.stack([x, y], axis=1)

    def to_px(self, pts: np.ndarray) -> np.ndarray:
        xy = self._to_image(np.asarray(pts, dtype=np.float64))
        xy[:, 0] -= self.x0
        xy[:, 1] -= self.y0
        return xy

    @property
    def uv(self) -> tuple[np.ndarray, np.ndarray]:
        if self._uv is None:
            X = (np.arange(self.w, dtype=np.float32) + self.x0 - self.cx)[None, :]
            Y = (np.arange(self.h, dtype=np.float32) + self.y0 - self.cy)[:, None]
            inv = 1.0 / self.h_px
            u = (X * self.c + Y * self.s) * inv
            v = (-X * self.s + Y * self.c) * inv
            self._uv = (u.astype(np.float32), v.astype(np.float32))
        return self._uv

    def px(self, length: float) -> float:
        return float(length) * self.h_px

    # -- masks: (mask float32 0..1, (row slice, col slice)) or None when off-canvas
    def _bbox(self, xy: np.ndarray, pad: float):
        xa = int(max(0, math.floor(xy[:, 0].min() - pad)))
        ya = int(max(0, math.floor(xy[:, 1].min() - pad)))
        xb = int(min(self.w, math.ceil(xy[:, 0].max() + pad) + 1))
        yb = int(min(self.h, math.ceil(xy[:, 1].max() + pad) + 1))
        if xb <= xa or yb <= ya:
            return None
        return xa, ya, xb, yb

    def poly(self, pts) -> tuple | None:
        xy = self.to_px(pts)
        bb = self._bbox(xy, 2)
        if bb is None:
            return None
        xa, ya, xb, yb = bb
        m = np.zeros((yb - ya, xb - xa), np.uint8)
        q = np.round((xy - [xa, ya]) * _SCALE).astype(np.int32)
        cv2.fillPoly(m, [q], 255, cv2.LINE_AA, _SHIFT)
        return m.astype(np.float32) * (1.0 / 255.0), (slice(ya, yb), slice(xa, xb))

    def stroke(self, pts, width: float, closed: bool = False) -> tuple | None:
        """Anti-aliased polyline of ``width`` local units (at least ~1 px)."""
        wpx = self.px(width)
        xy = self.to_px(pts)
        bb = self._bbox(xy, wpx + 2)
        if bb is None:
            return None
        xa, ya, xb, yb = bb
        q = np.round((xy - [xa, ya]) * _SCALE).astype(np.int32)
        # cv2 thickness is an integer: lines thinner than a pixel are drawn 1 px wide and
        # faded in proportion, thicker ones rounded to whole pixels (LINE_AA smooths both)
        m = np.zeros((yb - ya, xb - xa), np.uint8)
        cv2.polylines(m, [q], closed, 255, max(1, int(round(wpx))), cv2.LINE_AA, _SHIFT)
        scale = (min(1.0, wpx) if wpx >= 0.15 else 0.15) / 255.0
        return m.astype(np.float32) * scale, (slice(ya, yb), slice(xa, xb))

    def soft(self, cu, cv, su, sv, rot=0.0) -> tuple | None:
        """Gaussian blob centred at (cu, cv) with sigmas (su, sv) in local units."""
        r = 3.0 * max(su, sv)
        xy = self.to_px(
            np.array([[cu - r, cv - r], [cu + r, cv - r], [cu + r, cv + r], [cu - r, cv + r]])
        )
        bb = self._bbox(xy, 1)
        if bb is None:
            return None
        xa, ya, xb, yb = bb
        u, v = self.uv
        uu = u[ya:yb, xa:xb] - cu
        vv = v[ya:yb, xa:xb] - cv
        if rot:
            cr, sr = math.cos(rot), math.sin(rot)
            uu, vv = uu * cr + vv * sr, -uu * sr + vv * cr
        m = np.exp(-0.5 * ((uu / su) ** 2 + (vv / sv) ** 2)).astype(np.float32)
        return m, (slice(ya, yb), slice(xa, xb))

    def paint(self, mask, colour, alpha: float = 1.0, clip=None) -> None:
        """Composite ``colour`` (rgb triple or full-canvas HxWx3 field) through ``mask``."""
        if mask is None or alpha <= 0:
            return
        m, (rs, cs) = mask
        if clip is not None:
            m = m * clip[rs, cs]
            if alpha != 1.0:
                m *= alpha
        elif alpha != 1.0:
            m = m * alpha
        m = m[..., None]
        dst = self.rgb[rs, cs]
        if isinstance(colour, _Field):
            col = colour.region(rs, cs)
        else:
            col = np.asarray(colour, dtype=np.float32)
        diff = col - dst
        diff *= m
        dst += diff

    def full(self, mask) -> np.ndarray:
        out = np.zeros((self.h, self.w), np.float32)
        if mask is not None:
            m, (rs, cs) = mask
            out[rs, cs] = np.maximum(out[rs, cs], m)
        return out

    def commit(self) -> None:
        np.clip(self.rgb, 0, 255, out=self.rgb)
        self.image[self.y0 : self.y1, self.x0 : self.x1] = (self.rgb + 0.5).astype(np.uint8)


def _shade_field(cv: _Canvas, a: float, light: float, cu=0.0, cvv=-0.05, sa=1.12, sb=0.72):
    """Lambert-like shading of an ellipsoid head: HxW float32 multiplier."""
    u, v = cv.uv
    nx = (u - cu) / (a * sa)
    ny = (v - cvv) / sb
    r2 = np.minimum(nx * nx + ny * ny, 1.0)
    nz = np.sqrt(1.0 - r2)
    lam = np.maximum(0.0, nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2])
    return ((0.42 + 0.68 * lam) * light).astype(np.float32)


_WARM = np.array([10.0, -2.0, -6.0], np.float32)


class _Field:
    """A lazily evaluated colour field: ``shade * lerp(rgb, rgb2, mix) * scale`` per pixel."""

    def __init__(self, shade, rgb, warm=False, scale=1.0, rgb2=None, mix=None):
        self.shade, self.warm, self.scale = shade, warm, float(scale)
        self.rgb = np.asarray(rgb, np.float32)
        self.rgb2 = None if rgb2 is None else np.asarray(rgb2, np.float32)
        self.mix = mix

    def __mul__(self, k: float) -> _Field:
        return _Field(self.shade, self.rgb, self.warm, self.scale * k, self.rgb2, self.mix)

    def region(self, rs: slice, cs: slice) -> np.ndarray:
        s = self.shade[rs, cs][..., None]
        if self.mix is None:
            col = s * (self.rgb * self.scale)
        else:
            m = self.mix[rs, cs][..., None]
            col = s * ((self.rgb + (self.rgb2 - self.rgb) * m) * self.scale)
        if self.warm:
            col += (1.0 - np.minimum(s, 1.0)) * _WARM
        return col


# ---------------------------------------------------------------------------- hair


@lru_cache(maxsize=512)
def _hair_shapes(ap: Appearance, a: float) -> tuple[np.ndarray | None, np.ndarray, float]:
    """(back layer polygon or None, front cap polygon, hairline v) for the hair style."""
    style = HAIR_STYLES[ap.hair_style % len(HAIR_STYLES)]
    u_key = _identity_unit(ap, 3)
    vol = {"buzz": 0.012, "short": 0.045, "bob": 0.07, "long": 0.06, "receding": 0.02, "bun": 0.03}[
        style
    ]
    hairline = {
        "buzz": -0.5,
        "short": -0.47,
        "bob": -0.44,
        "long": -0.46,
        "receding": -0.6,
        "bun": -0.5,
    }[style]
    if style == "receding":
        hairline -= 0.08 * min(1.0, max(0.0, (ap.age - 30.0) / 40.0))
    b_top = _V_WIDE - _V_SKULL
    # outer crown arc (from left temple over the top to the right temple)
    side_v = {
        "buzz": -0.1,
        "short": -0.07,
        "bob": 0.3,
        "long": 0.1,
        "receding": -0.06,
        "bun": -0.1,
    }[style]
    t_side = math.asin(max(-1.0, min(1.0, (side_v - _V_WIDE) / b_top))) if side_v < _V_WIDE else 0.0
    outer = _superellipse(
        0.0, _V_WIDE, a + vol, b_top + vol, 2.25, np.pi - t_side, 2 * np.pi + t_side, 40
    )
    if side_v >= _V_WIDE:  # hair hangs down the sides
        left = np.array([[-(a + vol), side_v], [-(a + vol * 0.6), side_v + 0.02]])
        right = np.array([[a + vol * 0.6, side_v + 0.02], [a + vol, side_v]])
        outer = np.concatenate([left[::-1][:1], outer, right[1:]])
    # inner hairline: temples down to sideburns, fringe across the forehead
    part = -1.0 if u_key < 0.5 else 1.0
    k = 24
    uu = np.linspace(a * 0.9, -a * 0.9, k)
    x = uu / a
    if style in ("bob", "long"):
        # a side-swept fringe, lower on one side
        vv = hairline + 0.05 * (1 - x**2) ** 0.5 + 0.07 * np.clip(part * x, 0, 1) ** 1.5
        vv = np.minimum(vv, -0.3)
    elif style == "receding":
        vv = hairline + 0.16 * np.abs(x) ** 2.2
    else:
        vv = hairline + 0.03 * np.cos(x * np.pi / 2) + 0.12 * np.abs(x) ** 3
    temple_v = {
        "buzz": -0.1,
        "short": -0.04,
        "bob": 0.1,
        "long": 0.05,
        "receding": -0.05,
        "bun": -0.12,
    }[style]
    inner = np.stack([uu, vv], axis=1)
    inner = np.concatenate(
        [
            [[a + 0.005, temple_v], [a * 0.9, (temple_v + vv[0]) / 2]],
            inner,
            [[-a * 0.9, (temple_v + vv[-1]) / 2], [-(a + 0.005), temple_v]],
        ]
    )
    if outer[0, 0] < 0:  # outer runs left->right; inner runs right->left
        front = np.concatenate([outer, inner])
    else:
        front = np.concatenate([outer[::-1], inner])
    back = None
    if style in ("bob", "long"):
        bottom = 0.42 if style == "bob" else 1.05
        width_b = a + vol + (0.02 if style == "bob" else 0.09)
        arc = _superellipse(0.0, _V_WIDE, a + vol, b_top + vol, 2.25, np.pi, 2 * np.pi, 30)
        back = np.concatenate(
            [
                [[-width_b, bottom], [-(a + vol) * 1.02, 0.1]],
                arc,
                [[(a + vol) * 1.02, 0.1], [width_b, bottom], [0.0, bottom + 0.04]],
            ]
        )
    elif style == "bun":
        back = _ellipse(0.0, _V_SKULL - 0.02, 0.15, 0.11, 0.0, 28)
    return (None if back is None else _frozen(back)), _frozen(front), hairline


# ---------------------------------------------------------------------------- public API


def render_shoulders(
    image: np.ndarray,
    center: tuple[float, float],
    face_height: float,
    clothing_rgb: tuple[int, int, int],
    angle_deg: float = 0.0,
    light: float = 1.0,
) -> None:
    """Draw shoulders/upper body in clothing colour below the face (call before render_face)."""
    cv = _Canvas(image, center, face_height, angle_deg * 0.4, (-1.4, 0.3, 1.4, 2.2))
    if cv.empty:
        return
    body = np.concatenate(
        [
            [[-1.35, 2.3]],
            _superellipse(0.0, 1.05, 1.2, 0.42, 2.6, np.pi, 1.5 * np.pi, 10)[::1],
            [[-0.22, 0.64], [0.22, 0.64]],
            _superellipse(0.0, 1.05, 1.2, 0.42, 2.6, 1.5 * np.pi, 2 * np.pi, 10),
            [[1.35, 2.3]],
        ]
    )
    shade = _shade_field(cv, 0.9, light, 0.0, 1.4, 1.6, 1.4)
    cv.paint(cv.poly(body), _Field(shade, clothing_rgb))
    cv.paint(cv.stroke(np.array([[-0.2, 0.66], [0.0, 0.8], [0.2, 0.66]]), 0.02), (0, 0, 0), 0.3)
    cv.commit()


def _hair_fields(cv: _Canvas, a: float, hair, grey: float, light: float) -> tuple[_Field, _Field]:
    """Colour fields of the hair cap and the back hair layer."""
    grey_rgb = np.array([196, 194, 190], np.float32)
    hair_c = hair * (1 - grey) + grey_rgb * grey
    # hair texture: fine strands radiating from the crown on the cap, falling straight on
    # the back layer; grey arrives as streaks whose share follows ``grey``
    u, v = cv.uv
    theta = np.arctan2(v + 0.2, u)
    wave = np.sin(theta * 90.0 + 7.0 * np.sin(theta * 11.0))
    hair_shade = _shade_field(cv, a + 0.08, light, 0.0, -0.25, 1.2, 0.75) * (0.88 + 0.12 * wave)
    if 0.02 < grey < 0.98:
        mix = np.clip(grey + 0.9 * grey * (1.0 - grey) * np.sin(theta * 53.0 + 2.0 * wave), 0, 1)
    else:
        mix = None
    hair_f = (
        _Field(hair_shade, hair, rgb2=grey_rgb, mix=mix)
        if mix is not None
        else _Field(hair_shade, hair_c)
    )
    back_shade = _shade_field(cv, a + 0.1, light, 0.0, 0.1, 1.3, 1.2) * (
        0.86 + 0.14 * np.sin(u * 160.0 + 3.0 * np.sin(v * 9.0))
    )
    back_f = (
        _Field(back_shade, hair, rgb2=grey_rgb, mix=mix)
        if mix is not None
        else _Field(back_shade, hair_c)
    )
    return hair_f, back_f


def _paint_back_layers(
    cv: _Canvas, ap: Appearance, a: float, skin, skin_f, back, back_f, light
) -> None:
    """Back hair, neck (with the jaw's shadow) and ears: everything behind the face skin."""
    female = ap.gender == 1
    if back is not None:
        cv.paint(cv.poly(back), back_f * 0.8)
    neck_w = a * (0.62 if not female else 0.52)
    nb = np.linspace(1.0, -1.0, 9)
    neck = np.concatenate(
        [
            [[-neck_w, 0.2], [neck_w, 0.2]],
            np.stack([nb * neck_w * 1.06, 0.76 + 0.07 * (1 - nb**2)], 1),
        ]
    )
    neck_m = cv.poly(neck)
    cv.paint(neck_m, skin_f * 0.86)
    cv.paint(cv.soft(0.0, 0.52, a * 0.8, 0.07), skin * 0.45 * light, 0.7, clip=cv.full(neck_m))
    # 3. ears
    for side, ear in zip((-1.0, 1.0), _ear_polys(ap), strict=True):
        cv.paint(cv.poly(ear), skin_f * 0.92)
        inner = _ellipse(side * (a + 0.02), 0.02, 0.026, 0.08, side * 0.12, 16)[3:14]
        cv.paint(cv.stroke(inner, 0.012), skin * 0.55 * light, 0.6)


def render_face(
    image: np.ndarray,
    appearance: Appearance,
    center: tuple[float, float],
    face_height: float,
    angle_deg: float = 0.0,
    light: float = 1.0,
    mask_state: str = "none",
    *,
    mouth_open: float = 0.0,
    mask_rgb: tuple[int, int, int] | None = None,
    layers: str = "all",
) -> tuple[float, float, float, float]:
    """Draw one face in place on an HxWx3 uint8 RGB ``image``; return its box (x1, y1, x2, y2).

    ``center`` is the centre of the face box in pixels, ``face_height`` its height
    (forehead to chin), ``angle_deg`` an in-plane roll, ``light`` a brightness factor
    (about 0.6..1.4). ``mask_state``: "none", "worn" (a mask over nose and mouth) or
    "incorrect" (below the nose, or on the chin for some identities). Keyword-only
    extras: ``mouth_open`` 0..1 (talking), ``mask_rgb`` the mask colour (default light
    blue surgical), ``layers`` "all" or "face" (skin and inner features only: no hair,
    ears, neck or mask; what a face swap pastes in, and faster). The returned box is the one a face detector should report: forehead
    top to chin, ear to ear (see :func:`face_box`); it may extend beyond the image.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
    if mask_state not in MASK_STATES:
        raise ValueError(f"mask_state must be one of {MASK_STATES}, got {mask_state!r}")
    ap = appearance
    box = face_box(ap, center, face_height, angle_deg)
    if face_height < 4:
        return box
    a = ap.face_aspect / 2.0
    style = HAIR_STYLES[ap.hair_style % len(HAIR_STYLES)]
    if layers not in ("all", "face"):
        raise ValueError(f"layers must be 'all' or 'face', got {layers!r}")
    whole = layers == "all"
    if whole:
        bottom = 1.1 if style == "long" else 0.95
        extent = (-a - 0.2, _V_SKULL - 0.16, a + 0.2, bottom)
    else:
        extent = (-a - 0.02, -0.62, a + 0.02, 0.52)
    cv = _Canvas(image, center, face_height, angle_deg, extent)
    if cv.empty:
        return box
    wrinkles, grey = _age_effects(ap)
    female = ap.gender == 1
    line = max(0.006, 0.9 / face_height)  # thinnest visible line in local units

    skin = np.asarray(ap.skin_rgb, np.float32)
    # older skin: a little less saturated and slightly sallow
    sat = 1.0 - 0.18 * wrinkles
    skin = skin.mean() + (skin - skin.mean()) * sat
    hair = np.asarray(ap.hair_rgb, np.float32)
    grey_rgb = np.array([196, 194, 190], np.float32)
    shade = _shade_field(cv, a, light)
    skin_f = _Field(shade, skin, warm=True)

    back, front, hairline = _hair_shapes(ap, a)
    outline = _face_outline(ap)
    if whole:
        hair_f, back_f = _hair_fields(cv, a, hair, grey, light)
        # 1-3. back hair, neck with the jaw's shadow, ears
        _paint_back_layers(cv, ap, a, skin, skin_f, back, back_f, light)

    # 4. face skin
    face_m = cv.poly(outline)
    face_full = cv.full(face_m)
    cv.paint(face_m, skin_f)
    # 5. soft modelling on the skin (clipped to the face)
    ue = ap.eye_spacing * a
    ve = _V_EYE
    vn = ve + ap.nose_length
    vm = vn + (0.5 - vn) * 0.40
    mw = ap.mouth_width * a
    dark = skin * 0.55 * light
    for side in (-1.0, 1.0):
        cv.paint(cv.soft(side * ue, ve - 0.01, 0.075, 0.045), dark, 0.45, clip=face_full)  # socket
        cv.paint(
            cv.soft(side * a * 0.62, 0.12, 0.08, 0.06),
            (210, 110, 100),
            0.12 + 0.08 * female,
            clip=face_full,
        )
        cv.paint(cv.soft(side * a * 0.93, -0.25, 0.05, 0.16), dark, 0.25, clip=face_full)  # temples
    shadow_side = 1.0  # light comes from the upper left
    cv.paint(
        cv.soft(shadow_side * 0.045, (ve + vn) / 2 + 0.02, 0.018, ap.nose_length * 0.45),
        dark,
        0.55,
        clip=face_full,
    )
    cv.paint(cv.soft(0.0, vn + 0.045, 0.06, 0.014), dark, 0.5, clip=face_full)  # under the nose
    cv.paint(cv.soft(0.0, vm + 0.085, 0.07, 0.02), dark, 0.35, clip=face_full)  # under the lip
    cv.paint(
        cv.soft(-0.02, (ve + vn) / 2, 0.012, ap.nose_length * 0.4),
        (255, 245, 235),
        0.18,
        clip=face_full,
    )

    # 6. age: under-eye bags, nasolabial folds, forehead lines, crow's feet, marionette lines
    wr_c = skin * 0.5 * light
    lw = max(line, 0.009)
    for side in (-1.0, 1.0):
        bag = _ellipse(side * ue, ve + 0.02, 0.06, 0.04, 0.0, 30)[3:13]
        cv.paint(cv.stroke(bag, lw), wr_c, 0.08 + 0.45 * wrinkles, clip=face_full)
        nl = np.array(
            [
                [side * 0.085, vn - 0.02],
                [side * (0.11 + 0.2 * mw), vn + 0.06],
                [side * (mw + 0.025), vm + 0.02],
                [side * (mw + 0.03), vm + 0.06],
            ]
        )
        cv.paint(cv.stroke(_smooth(nl, 12), lw * 1.3), wr_c, 0.12 + 0.55 * wrinkles, clip=face_full)
        if wrinkles > 0.05:
            ox = side * (ue + 0.085)
            for k, ang in enumerate((-0.35, 0.0, 0.35)):
                r0, r1 = 0.012, 0.05 + 0.015 * (k == 1)
                p = np.array(
                    [
                        [ox + side * r0 * math.cos(ang), ve + r0 * math.sin(ang)],
                        [ox + side * r1 * math.cos(ang), ve + r1 * math.sin(ang)],
                    ]
                )
                cv.paint(cv.stroke(p, lw * 0.9), wr_c, 0.6 * wrinkles, clip=face_full)
            mar = np.array([[side * mw, vm + 0.03], [side * (mw + 0.01), vm + 0.1]])
            cv.paint(cv.stroke(mar, lw), wr_c, 0.45 * max(0.0, wrinkles - 0.3), clip=face_full)
    if wrinkles > 0.02:
        for k in range(3):
            vk = -0.29 - 0.045 * k
            if vk < hairline + 0.03:
                continue
            uu = np.linspace(-a * 0.55, a * 0.55, 9)
            pts = np.stack([uu, vk + 0.018 * (uu / a) ** 2 - 0.006 * np.sin(uu * 9 + k)], axis=1)
            cv.paint(cv.stroke(pts, lw), wr_c, 0.55 * wrinkles * (1.0 - 0.2 * k), clip=face_full)

    # 7. eyes
    ew, eh = 0.072, 0.03
    lid_c = np.asarray(ap.hair_rgb, np.float32) * 0.4 + 10
    for side in (-1.0, 1.0):
        cu = side * ue
        tilt = 0.008
        t = np.linspace(0, 1, 13)
        xs = cu + side * ew * (2 * t - 1)
        top = (
            ve
            - eh * np.sin(np.pi * t) ** 0.8 * (1 + 0.25 * (t - 0.5) * side)
            - tilt * (t - 0.5) * 2
        )
        bot = ve + eh * 0.75 * np.sin(np.pi * t) ** 1.2 - tilt * (t - 0.5) * 2
        eye_poly = np.concatenate([np.stack([xs, top], 1), np.stack([xs[::-1], bot[::-1]], 1)])
        eye_m = cv.poly(eye_poly)
        eye_full = cv.full(eye_m)
        cv.paint(eye_m, np.array([232, 228, 222], np.float32) * min(1.15, light))
        ir = eh * 1.05
        iu = cu + side * 0.004
        cv.paint(
            cv.poly(_ellipse(iu, ve, ir, ir, 0, 28)),
            np.asarray(ap.eye_rgb, np.float32) * light,
            clip=eye_full,
        )
        cv.paint(
            cv.stroke(_ellipse(iu, ve, ir, ir, 0, 28), max(line, 0.005), True),
            (25, 20, 20),
            0.6,
            clip=eye_full,
        )
        cv.paint(
            cv.poly(_ellipse(iu, ve, ir * 0.45, ir * 0.45, 0, 20)), (12, 10, 10), clip=eye_full
        )
        cv.paint(cv.soft(iu - 0.008, ve - 0.01, 0.005, 0.005), (255, 255, 255), 0.9, clip=eye_full)
        # shadow of the upper lid on the eyeball
        cv.paint(cv.soft(cu, ve - eh, ew, eh * 0.5), (40, 30, 30), 0.35, clip=eye_full)
        # upper lid line and lashes (thicker for women), lower lid, crease
        cv.paint(cv.stroke(np.stack([xs, top], 1), 0.012 + 0.006 * female), lid_c, 0.95)
        cv.paint(cv.stroke(np.stack([xs, bot], 1)[2:-1], max(line, 0.006)), skin * 0.45, 0.6)
        crease = np.stack([xs[2:-1], top[2:-1] - 0.022 - 0.01 * wrinkles], 1)
        cv.paint(cv.stroke(crease, max(line, 0.007)), skin * 0.5, 0.45, clip=face_full)

    # 8. brows: tapered, arched, hair coloured (they grey later than scalp hair)
    brow_c = (hair * (1 - 0.5 * grey) + grey_rgb * 0.5 * grey) * 0.75
    bt = ap.brow_thickness
    for side in (-1.0, 1.0):
        t = np.linspace(0, 1, 12)
        xs = side * (ue - 0.075 + 0.17 * t)
        arch = (
            0.022 * np.sin(np.pi * np.clip(t / 0.7, 0, 1) * 0.5)
            - 0.03 * np.clip((t - 0.7) / 0.3, 0, 1) ** 2
        )
        mid = ve - 0.085 - arch - 0.01 * female
        half = bt * (0.5 + 0.5 * (1 - t) ** 0.6) * 0.5 + 0.002
        brow = np.concatenate(
            [np.stack([xs, mid - half], 1), np.stack([xs[::-1], (mid + half)[::-1]], 1)]
        )
        cv.paint(cv.poly(brow), brow_c, 0.92)

    # 9. nose: alar wings, nostrils, tip highlight
    nwid = 0.075 + 0.01 * (1 - female)
    for side in (-1.0, 1.0):
        ang = np.linspace(-1.9, 1.9, 11) if side > 0 else np.linspace(np.pi - 1.9, np.pi + 1.9, 11)
        wc = side * (nwid - 0.025)
        wing = np.stack([wc + 0.026 * np.cos(ang), vn - 0.005 + 0.03 * np.sin(ang)], 1)
        cv.paint(cv.stroke(wing, max(line, 0.009)), skin * 0.42 * light, 0.7, clip=face_full)
        cv.paint(
            cv.poly(_ellipse(side * 0.028, vn + 0.012, 0.018, 0.01, side * 0.35, 18)),
            (45, 28, 25),
            0.85,
        )
    cv.paint(
        cv.soft(-0.005, vn - 0.012, 0.022, 0.016), (255, 245, 235), 0.22 * light, clip=face_full
    )

    # 10. mouth
    lip = np.asarray(ap.lip_rgb, np.float32) * light
    full = (1.0 + 0.25 * female) * (1.0 - 0.3 * wrinkles)
    ut, lt = 0.027 * full, 0.036 * full
    op = float(min(1.0, max(0.0, mouth_open))) * 0.045
    t = np.linspace(-1, 1, 17)
    xs = t * mw
    mouth_line = vm + 0.006 * t**2 - 0.004
    upper_edge = (
        vm - ut * (1 - np.abs(t) ** 1.6) - 0.006 * np.exp(-((np.abs(t) - 0.18) ** 2) / 0.01)
    )
    lower_line = mouth_line + op * (1 - t**2)
    lower_edge = lower_line + lt * (1 - np.abs(t) ** 2.0)
    up = np.concatenate([np.stack([xs, upper_edge], 1), np.stack([xs[::-1], mouth_line[::-1]], 1)])
    lo = np.concatenate([np.stack([xs, lower_line], 1), np.stack([xs[::-1], lower_edge[::-1]], 1)])
    if op > 0.002:
        gap = np.concatenate(
            [np.stack([xs, mouth_line], 1), np.stack([xs[::-1], lower_line[::-1]], 1)]
        )
        cv.paint(cv.poly(gap), (55, 22, 24))
        teeth = np.concatenate(
            [
                np.stack([xs[3:-3], mouth_line[3:-3]], 1),
                np.stack([xs[3:-3][::-1], (mouth_line + op * 0.35)[3:-3][::-1]], 1),
            ]
        )
        cv.paint(cv.poly(teeth), (225, 220, 205))
    cv.paint(cv.poly(up), lip * 0.86)
    cv.paint(cv.poly(lo), lip)
    cv.paint(
        cv.soft(0.0, (lower_line[8] + lower_edge[8]) / 2, mw * 0.35, lt * 0.25),
        (255, 235, 230),
        0.22,
    )
    cv.paint(cv.stroke(np.stack([xs, mouth_line], 1), max(line, 0.009)), lip * 0.35, 0.9)

    # 11. front hair (cap, fringe, sideburns)
    if whole:
        front_m = cv.poly(front)
        cv.paint(front_m, hair_f)
        if style == "buzz":  # very short hair lets skin through
            cv.paint(front_m, skin_f, 0.35)

    # 12. face mask
    if whole and mask_state != "none":
        mcol = np.asarray(mask_rgb if mask_rgb is not None else (168, 202, 226), np.float32)
        chin_variant = mask_state == "incorrect" and _identity_unit(ap, 4) < 0.35
        if mask_state == "worn":
            v_top = vn - 0.1
        elif chin_variant:
            v_top = vm + 0.05
        else:
            v_top = vn + 0.035
        v_bot = 0.55
        mwid = a * 1.02
        t = np.linspace(-1, 1, 15)
        topc = v_top - 0.04 * (1 - t**2) * (mask_state == "worn")
        botc = v_bot - 0.1 * t**2
        mpoly = np.concatenate(
            [np.stack([t * mwid, topc], 1), np.stack([t[::-1] * mwid * 0.95, botc[::-1]], 1)]
        )
        mshade = _shade_field(cv, a * 1.05, light, 0.0, (v_top + v_bot) / 2, 1.1, 0.6)
        m_m = cv.poly(mpoly)
        cv.paint(m_m, _Field(mshade, mcol))
        m_full = cv.full(m_m)
        for k in range(1, 4):
            vk = v_top + (v_bot - v_top) * k / 4.0
            cv.paint(
                cv.stroke(np.array([[-mwid * 0.9, vk], [mwid * 0.9, vk]]), max(line, 0.008)),
                mcol * 0.7,
                0.5,
                clip=m_full,
            )
        for side in (-1.0, 1.0):
            strap = np.array(
                [[side * mwid, v_top + 0.02], [side * (a + 0.03), 0.0], [side * (a + 0.02), -0.05]]
            )
            cv.paint(cv.stroke(strap, max(line, 0.01)), mcol * 0.92, 0.95)
            strap2 = np.array(
                [
                    [side * mwid * 0.97, v_bot - 0.1],
                    [side * (a + 0.03), 0.12],
                    [side * (a + 0.02), 0.1],
                ]
            )
            cv.paint(cv.stroke(strap2, max(line, 0.01)), mcol * 0.92, 0.95)
    cv.commit()
    return box


def _smooth(ctrl: np.ndarray, k: int) -> np.ndarray:
    """Quadratic B-spline-ish smoothing of a few control points into k points."""
    ctrl = np.asarray(ctrl, dtype=np.float64)
    t = np.linspace(0, 1, k)
    n = len(ctrl) - 1
    # Bernstein (Bezier) curve through the control polygon
    out = np.zeros((k, 2))
    for i, p in enumerate(ctrl):
        out += math.comb(n, i) * (t**i * (1 - t) ** (n - i))[:, None] * p
    return out


def face_region_mask(
    shape: tuple[int, ...],
    appearance: Appearance,
    center: tuple[float, float],
    face_height: float,
    angle_deg: float = 0.0,
    feather: float = 0.0,
) -> np.ndarray:
    """Soft float32 (H, W) mask in 0..1 of the inner face a face swap replaces.

    Mid-forehead to chin and cheek to cheek, following this identity's jaw line (slightly
    inside it), without ears or hair. ``feather`` is a Gaussian sigma as a fraction of
    ``face_height`` (0 gives just the anti-aliased edge).
    """
    H, W = int(shape[0]), int(shape[1])
    out = np.zeros((H, W, 3), np.uint8)
    ap = appearance
    a = ap.face_aspect / 2.0
    n_low = 1.75 + (ap.jaw_width - 0.6) * 3.2  # as in _face_outline
    lower = _superellipse(0.0, _V_WIDE, a * 0.93, (0.5 - _V_WIDE) * 0.96, n_low, 0.0, np.pi, 40)
    # upper edge: an arch over the brows to mid-forehead, like a landmark hull
    t = np.linspace(np.pi, 2 * np.pi, 17)
    arch = np.stack([a * 0.93 * np.cos(t), _V_WIDE + 0.31 * np.sin(t)], axis=1)
    poly = np.concatenate([lower, arch])
    cv = _Canvas(out, center, face_height, angle_deg, (-a - 0.05, -0.4, a + 0.05, 0.55))
    m = np.zeros((H, W), np.float32)
    if cv.empty:
        return m
    mk = cv.poly(poly)
    if mk is not None:
        mm, (rs, cs) = mk
        m[cv.y0 : cv.y1, cv.x0 : cv.x1][rs, cs] = mm
    if feather > 0:
        sigma = float(feather) * float(face_height)
        if sigma > 0.3:
            m = cv2.GaussianBlur(m, (0, 0), sigma)
    return m
