"""A small, seeded, realistic sample of the 18-class face-mask status competition data.

Nobody can download the competition data on a fresh machine, so podium draws a sample in
the competition's own on-disk layout and the same loader (:mod:`podium.layouts.mask`)
reads either:

```
train/train.csv                 id,gender,race,age,path   e.g. 000001,female,Asian,45,000001_female_Asian_45
train/images/<path>/mask1.jpg   seven photos per person: mask1..mask5 (mask worn over nose and
                  ...           mouth, five different masks), incorrect_mask (below the nose or on
train/images/<path>/normal.jpg  the chin), normal (no mask); 384 wide x 512 high RGB. Most are
                                .jpg; a few are .png or .jpeg (png_share, jpeg_share), as in the
                                real set, so loaders must accept all three
train/_truth.csv                evaluation-only: true gender and photo swaps per person (see below)
eval/info.csv                   ImageID,ans  with ans = 0 on every row, as in the real file
eval/images/<ImageID>           ImageID = 40 hex characters + ".jpg"; all seven photos of each
                                eval person, in shuffled order
eval/_truth.csv                 evaluation-only: ImageID,ans (the true 18-class label),
                                mask,gender,age,age_class,person,stem
```

Labels: mask (wear 0, incorrect 1, not wear 2), gender (male 0, female 1), age class
(< 30: 0, 30-59: 1, >= 60: 2), class = mask * 6 + gender * 3 + age_class. The truth files
use the competition's bins (60); a training label may use another "old" threshold (58).

Photos: one person's head and shoulders (clothes of the same colour in all seven photos)
in front of a plain or lightly textured wall (off-white, beige, grey, pastel; a light
gradient, faint texture, wallpaper stripes, panel seams or a room corner), drawn by
:mod:`podium.sample_data.faces`. Each photo moves the camera and the person a little
(shift, scale, roll), changes the light and colour balance, adds camera noise and its own
JPEG quality. The five ``mask*`` photos show five different masks (surgical blue or white,
white or black KF94 with its centre seam, black/grey/navy/beige cloth with a weave,
patterned: dots, stripes, checks); ``incorrect_mask`` shows one of them below the nose (or,
for some people, on the chin); ``normal`` shows none. Faces follow the real set's
population ("Asian": a light-to-medium skin range and dark hair, parameters).

Ages: people fall into bands with fixed shares (``young_share`` < 30, ``fifties_share``
50-57, ``boundary_share`` 58-59, ``old_share`` >= 60, the rest 30-49); every band with a
positive share gets at least one person when ``n_people`` allows. Ages >= 60 are mostly
60-65 (``old_age_scale``). The renderer's age cues (grey hair, wrinkles) grow smoothly
with age and differ per person, so 58, 59 and 60 look alike: the 58/60 boundary is
genuinely ambiguous, as in the real set.

Label noise (off by default): ``gender_noise_share`` of the training people are listed
(in train.csv and their folder name) with the wrong gender, and in
``swap_incorrect_normal_share`` of the folders the ``incorrect_mask`` and ``normal``
photos are swapped, both known quirks of the real set. ``train/_truth.csv`` records the
truth (id, path, listed and true gender, age, swapped).

The ``_truth.csv`` files exist for evaluation, plots and tests only: no training or
inference node may read them (the real data has no such files; reading them leaks the
answer).

No kedro or mlflow imports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar

import cv2
import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from podium.core.params import (
    Fraction,
    Int,
    NonNegativeFloat,
    NonNegativeInt,
    Params,
    PositiveFloat,
    PositiveInt,
)
from podium.layouts.mask import GENDER_NAMES, STEM_MASK, STEMS, age_class, class_name, encode_class
from podium.sample_data.faces import Appearance, random_appearance, render_face, render_shoulders
from podium.sample_data.params import between, span

__all__ = [
    "EVAL_TRUTH_FILE",
    "MASK_STYLES",
    "STEMS",
    "TRAIN_TRUTH_FILE",
    "MaskSampleParams",
    "contact_sheet",
    "generate_mask_sample",
]


#: Evaluation-only sidecars (never read by training or inference nodes).
EVAL_TRUTH_FILE = "eval/_truth.csv"
TRAIN_TRUTH_FILE = "train/_truth.csv"


# ---------------------------------------------------------------------------- parameters

#: The age bands whose shares are given (the rest of the people are aged 30-49).
_AGE_BANDS = ("young_share", "fifties_share", "boundary_share", "old_share")


class MaskSampleParams(Params):
    """``sample_data.mask``: every parameter of :func:`generate_mask_sample`; a key left
    out takes conf/base's value."""

    block: ClassVar[str] = "sample_data.mask"

    # --- people and size
    n_people: PositiveInt = 90
    """Training people; 7 photos each (the real set: 2700 people)."""
    n_eval_people: NonNegativeInt = 18
    """Eval people; all 7 photos each, shuffled (the real set: 1800)."""
    female_share: Fraction = 0.6
    """Share of women (the real set: about 61%)."""
    race: Annotated[str, Field(strict=True)] = "Asian"
    """The race column and folder-name field: one word of letters (the real set: all
    "Asian")."""
    # --- ages: shares of people per band (the rest is 30-49); they add up to at most 1
    young_share: Fraction = 0.46
    """Aged min_age..29 (the real set: about 47%)."""
    fifties_share: Fraction = 0.22
    """Aged 50-57."""
    boundary_share: Fraction = 0.08
    """Aged 58-59: ambiguous with 60+ (the 58-vs-60 threshold matters here)."""
    old_share: Fraction = 0.075
    """Aged 60+ (the real set: about 7-8%)."""
    min_age: between(18, 29, int) = 18
    """Youngest age."""
    max_age: between(60, 100, int) = 80
    """Oldest age."""
    old_age_scale: PositiveFloat = 4.0
    """Ages 60+ are 60 + an exponential of this mean (years), capped."""
    # --- files
    width: Annotated[Int, Field(ge=32)] = 384
    """Photo width in pixels (the real set: 384)."""
    height: Annotated[Int, Field(ge=32)] = 512
    """Photo height in pixels (the real set: 512)."""
    png_share: Fraction = 0.02
    """Share of training photos stored as .png."""
    jpeg_share: Fraction = 0.03
    """Share of training photos stored as .jpeg (the rest .jpg); png_share + jpeg_share <= 1."""
    jpeg_quality: span(1, 100, int) = (82, 95)
    """Per-photo JPEG quality range."""
    # --- photos
    face_height: span(0.1, 0.6) = (0.33, 0.41)
    """Face (forehead to chin) height / photo height, per person: [low, high] range."""
    max_shift: NonNegativeFloat = 0.035
    """Per-photo shift of the person and of the camera (fraction of width)."""
    scale_jitter: NonNegativeFloat = 0.05
    """Per-photo relative change of the face size."""
    max_roll_deg: NonNegativeFloat = 6.0
    """Per-photo in-plane head roll (degrees)."""
    light: span(0.3, 2.0) = (0.8, 1.15)
    """Per-photo brightness range."""
    colour_cast: NonNegativeFloat = 0.025
    """Per-photo white-balance gain jitter (std)."""
    noise_sigma: NonNegativeFloat = 2.0
    """Camera noise (grey levels, std)."""
    wall_texture: NonNegativeFloat = 1.0
    """Strength of the wall's texture (0 = plain walls)."""
    skin_luma: span(0.0, 255.0) = (165.0, 228.0)
    """Accepted skin luminance range of drawn identities."""
    max_hair_luma: between(0.0, 255.0) = 95.0
    """Darkest-hair limit (luminance) of drawn identities before greying."""
    # --- label noise (known quirks of the real set; off by default)
    gender_noise_share: Fraction = 0.0
    """Training people listed with the wrong gender."""
    swap_incorrect_normal_share: Fraction = 0.0
    """Training folders with incorrect_mask/normal swapped."""

    @field_validator("race")
    @classmethod
    def _one_word(cls, race: str) -> str:
        if not race.isalpha():
            raise ValueError(f"must be one word of letters (a folder-name field), got {race!r}")
        return race

    @field_validator("old_share")
    @classmethod
    def _bands_fit(cls, old_share: float, info: ValidationInfo) -> float:
        shares = [info.data.get(band) for band in _AGE_BANDS[:-1]] + [old_share]
        if None not in shares and sum(shares) > 1.0 + 1e-9:
            raise ValueError(
                f"{' + '.join(_AGE_BANDS)} must be <= 1 (the rest is aged 30-49), "
                f"got {sum(shares):.3f}"
            )
        return old_share

    @field_validator("jpeg_share")
    @classmethod
    def _formats_fit(cls, jpeg_share: float, info: ValidationInfo) -> float:
        png_share = info.data.get("png_share")
        if png_share is not None and png_share + jpeg_share > 1.0:
            raise ValueError(f"png_share + jpeg_share must be <= 1, got {png_share + jpeg_share}")
        return jpeg_share


# ---------------------------------------------------------------------------- people


def _allocate(n: int, shares: list[float]) -> list[int]:
    """Split ``n`` into counts close to ``shares * n``; every positive share gets >= 1 if n allows."""
    shares = [max(0.0, s) for s in shares]
    total = sum(shares) or 1.0
    target = [n * s / total for s in shares]
    counts = [int(math.floor(t)) for t in target]
    positive = [i for i, s in enumerate(shares) if s > 0]
    if n >= len(positive):
        for i in positive:
            counts[i] = max(1, counts[i])
    while sum(counts) > n:  # take from the band furthest above its target
        i = max(range(len(counts)), key=lambda k: counts[k] - target[k] if counts[k] > 1 else -1e9)
        counts[i] -= 1
    while sum(counts) < n:  # give to the band furthest below its target
        i = max(range(len(counts)), key=lambda k: target[k] - counts[k])
        counts[i] += 1
    return counts


def _draw_ages(rng: np.random.Generator, p: Mapping, n: int) -> np.ndarray:
    young, fifties = float(p["young_share"]), float(p["fifties_share"])
    boundary, old = float(p["boundary_share"]), float(p["old_share"])
    middle = max(0.0, 1.0 - young - fifties - boundary - old)
    counts = _allocate(n, [young, middle, fifties, boundary, old])
    lo, hi = int(p["min_age"]), int(p["max_age"])
    ages: list[int] = []
    ages += [int(a) for a in rng.integers(lo, 30, counts[0])]
    ages += [int(a) for a in rng.integers(30, 50, counts[1])]
    ages += [int(a) for a in rng.integers(50, 58, counts[2])]
    ages += [int(a) for a in rng.integers(58, 60, counts[3])]
    old_ages = 60 + np.floor(rng.exponential(float(p["old_age_scale"]), counts[4]))
    ages += [int(min(hi, a)) for a in old_ages]
    out = np.asarray(ages, dtype=np.int64)
    rng.shuffle(out)
    return out


def _draw_genders(rng: np.random.Generator, p: Mapping, n: int) -> np.ndarray:
    n_f = int(round(float(p["female_share"]) * n))
    g = np.array([1] * n_f + [0] * (n - n_f), dtype=np.int64)
    rng.shuffle(g)
    return g


def _luma(rgb) -> float:
    r, g, b = (float(x) for x in rgb)
    return 0.299 * r + 0.587 * g + 0.114 * b


def _draw_appearance(rng: np.random.Generator, p: Mapping, gender: int, age: int) -> Appearance:
    """An identity of the real set's population (rejection sampling on skin and hair)."""
    lo, hi = (float(x) for x in p["skin_luma"])
    hair_max = float(p["max_hair_luma"])
    best, best_err = None, math.inf
    for _ in range(200):
        ap = random_appearance(rng, gender=gender, age=float(age) + float(rng.uniform(0.0, 0.99)))
        s, h = _luma(ap.skin_rgb), _luma(ap.hair_rgb)
        err = max(0.0, lo - s) + max(0.0, s - hi) + max(0.0, h - hair_max)
        if err == 0.0:
            return ap
        if err < best_err:
            best, best_err = ap, err
    return best  # type: ignore[return-value]


# ---------------------------------------------------------------------------- masks


@dataclass(frozen=True)
class _MaskStyle:
    name: str
    rgb: tuple[int, int, int]
    texture: str  # "plain" (the renderer's own pleated mask), "kf94", "cloth", "pattern"
    weight: float


#: Mask styles a person's five ``mask*`` photos draw from (five distinct ones per person).
MASK_STYLES: tuple[_MaskStyle, ...] = (
    _MaskStyle("surgical_blue", (160, 198, 226), "plain", 3.0),
    _MaskStyle("surgical_white", (236, 238, 240), "plain", 2.0),
    _MaskStyle("kf94_white", (242, 243, 245), "kf94", 3.0),
    _MaskStyle("kf94_black", (40, 40, 44), "kf94", 2.0),
    _MaskStyle("black_cloth", (30, 30, 33), "cloth", 2.5),
    _MaskStyle("grey_cloth", (128, 130, 136), "cloth", 1.2),
    _MaskStyle("navy_cloth", (42, 54, 96), "cloth", 1.2),
    _MaskStyle("beige_cloth", (214, 196, 170), "cloth", 1.0),
    _MaskStyle("pink_surgical", (236, 190, 196), "plain", 0.8),
    _MaskStyle("patterned", (200, 60, 60), "pattern", 2.5),
)

_PATTERN_COLOURS = np.array(
    [
        (200, 56, 60),
        (40, 70, 140),
        (246, 242, 230),
        (30, 30, 34),
        (230, 180, 60),
        (70, 130, 90),
        (150, 90, 160),
        (240, 150, 170),
        (100, 170, 210),
    ],
    dtype=np.float32,
)
_KEY = 200.0  # key colour of the two-pass mask compositing (linear below 255 / 1.2)


def _mask_texture(
    style: _MaskStyle,
    pattern: tuple,
    u: np.ndarray,
    v: np.ndarray,
    v_band: tuple[float, float],
) -> np.ndarray:
    """Per-pixel mask colour (h, w, 3) float32 in local face coordinates (u, v)."""
    base = np.asarray(style.rgb, np.float32)
    h, w = u.shape
    if style.texture == "kf94":
        v0, v1 = v_band
        mid = v0 + 0.5 * (v1 - v0)
        seam = np.exp(-(((v - mid) / 0.006) ** 2)) * 0.22 + np.exp(-((u / 0.005) ** 2)) * 0.12 * (
            v > mid
        )
        edge = np.exp(-(((v - v0 - 0.02) / 0.007) ** 2)) * 0.1
        f = 1.0 - seam - edge
        return base[None, None, :] * f[..., None]
    if style.texture == "cloth":
        weave = 1.0 + 0.045 * np.sin(u * 900.0) * np.sin(v * 900.0) + 0.03 * np.sin((u + v) * 300.0)
        col = base[None, None, :] * weave[..., None]
        if base.mean() < 60:  # dark cloth shows its weave as a lighter sheen
            col += (14.0 * (weave - 1.0) / 0.075)[..., None]
        return col
    # patterned: two or three colours in one of several patterns
    kind, c1, c2, period, phase = pattern
    c1 = np.asarray(c1, np.float32)
    c2 = np.asarray(c2, np.float32)
    if kind == "dots":
        uu = np.mod(u + phase, period) - period / 2
        vv = (
            np.mod(v + phase + 0.5 * period * (np.floor((u + phase) / period) % 2), period)
            - period / 2
        )
        m = np.clip((0.28 * period - np.sqrt(uu * uu + vv * vv)) * 400.0, 0, 1)
    elif kind == "stripes":
        m = (np.sin((u + v) * (2 * np.pi / period) + phase) > 0.2).astype(np.float32)
    elif kind == "check":
        a = np.sin(u * (2 * np.pi / period) + phase) > 0
        b = np.sin(v * (2 * np.pi / period) + phase) > 0
        m = 0.5 * a + 0.5 * b
    else:  # "flowers": soft blobs on a grid with jitter
        uu = np.mod(u + phase, period) - period / 2
        vv = np.mod(v + 1.7 * phase, period) - period / 2
        r = np.sqrt(uu * uu + vv * vv)
        ang = np.arctan2(vv, uu)
        m = np.clip((0.3 * period * (0.75 + 0.25 * np.cos(5 * ang)) - r) * 300.0, 0, 1)
    m = m.astype(np.float32)[..., None]
    return c1[None, None, :] * (1 - m) + c2[None, None, :] * m


def _draw_pattern(rng: np.random.Generator) -> tuple:
    kind = ("dots", "stripes", "check", "flowers")[int(rng.integers(4))]
    i, j = rng.choice(len(_PATTERN_COLOURS), 2, replace=False)
    jitter = rng.normal(0.0, 6.0, (2, 3))
    c1 = tuple(np.clip(_PATTERN_COLOURS[i] + jitter[0], 0, 255).tolist())
    c2 = tuple(np.clip(_PATTERN_COLOURS[j] + jitter[1], 0, 255).tolist())
    period = float(rng.uniform(0.05, 0.1))
    phase = float(rng.uniform(0.0, 1.0))
    return (kind, c1, c2, period, phase)


# ---------------------------------------------------------------------------- walls


_WALLS = np.array(
    [
        (236, 233, 226),  # off-white
        (224, 212, 192),  # warm beige
        (208, 208, 210),  # light grey
        (198, 210, 222),  # pale blue
        (204, 214, 198),  # pale green
        (236, 226, 200),  # cream
        (226, 214, 214),  # pale pink
        (190, 182, 170),  # greige
    ],
    dtype=np.float32,
)


def _wall(rng: np.random.Generator, p: Mapping, h: int, w: int) -> np.ndarray:
    """A plain or lightly textured wall (h, w, 3) float32, larger than the photo."""
    k = float(p["wall_texture"])
    base = _WALLS[int(rng.integers(len(_WALLS)))] + rng.normal(0.0, 6.0, 3).astype(np.float32)
    yy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    ang = float(rng.uniform(0, 2 * np.pi))
    grad = 1.0 + float(rng.uniform(0.03, 0.12)) * (xx * math.cos(ang) + yy * math.sin(ang))
    vign = 1.0 - float(rng.uniform(0.02, 0.1)) * (xx * xx + yy * yy)
    shade = grad * vign
    kind = ("plain", "plain", "mottled", "stripes", "panel", "corner")[int(rng.integers(6))]
    if k > 0:
        low = rng.normal(0.0, 1.0, (max(2, h // 24), max(2, w // 24))).astype(np.float32)
        low = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        amp = 0.012 if kind != "mottled" else 0.035
        shade = shade * (1.0 + k * amp * low)
        if kind == "stripes":
            period = float(rng.uniform(0.04, 0.12)) * w
            stripe = np.sin(np.arange(w, dtype=np.float32) * (2 * np.pi / period))[None, :]
            shade = shade * (1.0 + k * 0.025 * np.sign(stripe) * (np.abs(stripe) > 0.3))
        elif kind == "panel":
            for x in rng.uniform(0.05, 0.95, int(rng.integers(1, 3))) * w:
                d = np.abs(np.arange(w, dtype=np.float32) - x)[None, :]
                shade = shade * (
                    1.0
                    - k * 0.12 * np.exp(-((d / 1.5) ** 2))
                    + k * 0.03 * np.exp(-(((d - 3) / 2) ** 2))
                )
        elif kind == "corner":
            x = float(rng.choice([rng.uniform(0.05, 0.25), rng.uniform(0.75, 0.95)])) * w
            side = np.arange(w, dtype=np.float32)[None, :] < x
            if x > w / 2:
                side = ~side
            shade = shade * np.where(side, 1.0 - k * float(rng.uniform(0.08, 0.18)), 1.0)
    fine = rng.normal(0.0, 1.2 * k, (h, w, 1)).astype(np.float32)
    return base[None, None, :] * shade[..., None] + fine


# ---------------------------------------------------------------------------- photos


@dataclass
class _Person:
    appearance: Appearance
    wall: np.ndarray  # float32, larger than the photo by the camera margin
    margin: int
    clothing: tuple[int, int, int]
    face_height: float  # pixels
    center: tuple[float, float]  # pixels
    noise: np.ndarray  # float32 noise pool, larger than the photo
    masks: list[_MaskStyle]  # five distinct mask styles for mask1..mask5
    patterns: list[tuple]
    incorrect: int  # which of the five masks the incorrect_mask photo shows


_CLOTHES = np.array(
    [
        (30, 32, 40),
        (60, 80, 120),
        (235, 235, 232),
        (120, 124, 130),
        (150, 40, 50),
        (70, 100, 70),
        (200, 180, 140),
        (40, 60, 110),
        (180, 120, 150),
        (90, 70, 60),
    ],
    dtype=np.float64,
)


def _make_person(rng: np.random.Generator, p: Mapping, gender: int, age: int) -> _Person:
    W, H = p["width"], p["height"]
    margin = int(math.ceil(float(p["max_shift"]) * W)) + 1
    ap = _draw_appearance(rng, p, gender, age)
    wall = _wall(rng, p, H + 2 * margin, W + 2 * margin)
    clothing = tuple(
        int(x)
        for x in np.clip(_CLOTHES[int(rng.integers(len(_CLOTHES)))] + rng.normal(0, 10, 3), 0, 255)
    )
    fh = float(rng.uniform(*(float(x) for x in p["face_height"]))) * H
    center = (W * float(rng.uniform(0.47, 0.53)), H * float(rng.uniform(0.36, 0.42)))
    noise = rng.standard_normal((H + 16, W + 16, 3), dtype=np.float32)
    weights = np.array([s.weight for s in MASK_STYLES])
    picks = rng.choice(len(MASK_STYLES), 5, replace=False, p=weights / weights.sum())
    masks = [MASK_STYLES[int(i)] for i in picks]
    patterns = [_draw_pattern(rng) for _ in masks]
    return _Person(
        ap, wall, margin, clothing, fh, center, noise, masks, patterns, int(rng.integers(5))
    )


def _scene(person: _Person, p: Mapping, dx: int, dy: int, center, fh, roll, light) -> np.ndarray:
    W, H = p["width"], p["height"]
    wall = person.wall[dy : dy + H, dx : dx + W]
    img = np.clip(wall * (1.0 + 0.6 * (light - 1.0)), 0, 255).astype(np.uint8)
    render_shoulders(img, center, fh, person.clothing, roll, light)
    return img


def _local_uv(
    shape, center, fh: float, roll: float, box
) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """Rows/cols of the mask's neighbourhood and the local face coordinates (u, v) there."""
    H, W = shape[:2]
    x1, y1, x2, y2 = box
    r0, r1 = max(0, int(y1)), min(H, int(math.ceil(y2 + 0.2 * fh)) + 1)
    c0, c1 = max(0, int(x1 - 0.1 * fh)), min(W, int(math.ceil(x2 + 0.1 * fh)) + 1)
    th = math.radians(roll)
    c, s = math.cos(th), math.sin(th)
    X = (np.arange(c0, c1, dtype=np.float32) - center[0])[None, :]
    Y = (np.arange(r0, r1, dtype=np.float32) - center[1])[:, None]
    u = (X * c + Y * s) / fh
    v = (-X * s + Y * c) / fh
    return slice(r0, r1), slice(c0, c1), u, v


def _photo(rng: np.random.Generator, p: Mapping, person: _Person, stem: str) -> np.ndarray:
    """One RGB uint8 photo of ``person`` for photo ``stem`` (mask1..normal)."""
    W, H = p["width"], p["height"]
    m = person.margin
    dx, dy = (int(x) for x in rng.integers(0, 2 * m + 1, 2))
    shift = float(p["max_shift"]) * W
    cx = person.center[0] + float(rng.uniform(-shift, shift)) * 0.6 + (m - dx)
    cy = person.center[1] + float(rng.uniform(-shift, shift)) * 0.4 + (m - dy)
    fh = person.face_height * (1.0 + float(rng.uniform(-1, 1)) * float(p["scale_jitter"]))
    roll = float(rng.uniform(-1, 1)) * float(p["max_roll_deg"])
    light = float(rng.uniform(*(float(x) for x in p["light"])))
    cast = 1.0 + rng.normal(0.0, float(p["colour_cast"]), 3).astype(np.float32)
    ox, oy = (int(x) for x in rng.integers(0, 17, 2))
    center = (cx, cy)
    if stem == "normal":
        k, state = None, "none"
    elif stem == "incorrect_mask":
        k, state = person.incorrect, "incorrect"
    else:
        k, state = int(stem[-1]) - 1, "worn"
    ap = person.appearance
    base = _scene(person, p, dx, dy, center, fh, roll, light)
    if k is None or person.masks[k].texture == "plain":
        img = base
        mrgb = None if k is None else person.masks[k].rgb
        box = render_face(img, ap, center, fh, roll, light, state, mask_rgb=mrgb)
    else:
        # two passes with a black and a grey key mask: the mask layer is linear in its
        # colour, so black + (key - black) * colour / key composites any per-pixel colour
        img = base
        keyed = base.copy()
        box = render_face(img, ap, center, fh, roll, light, state, mask_rgb=(0, 0, 0))
        render_face(keyed, ap, center, fh, roll, light, state, mask_rgb=(int(_KEY),) * 3)
        rs, cs, u, v = _local_uv(img.shape, center, fh, roll, box)
        black = img[rs, cs].astype(np.float32)
        diff = keyed[rs, cs].astype(np.float32) - black
        cover = diff.max(axis=2) > 20.0
        central = cover & (np.abs(u) < 0.12)
        vs = v[central] if central.any() else np.array([0.1, 0.5], np.float32)
        band = (float(vs.min()), float(vs.max()))
        tex = _mask_texture(person.masks[k], person.patterns[k], u, v, band)
        img[rs, cs] = np.clip(black + diff * (tex / _KEY), 0, 255).astype(np.uint8)
    out = img.astype(np.float32) * cast[None, None, :]
    sigma = float(p["noise_sigma"])
    if sigma > 0:
        out += person.noise[oy : oy + H, ox : ox + W] * sigma
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _encode(img: np.ndarray, ext: str, quality: int) -> bytes:
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if ext == ".png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 failure
        raise RuntimeError(f"could not encode a {ext} image")
    return buf.tobytes()


def _person_photos(p: Mapping, seed: int, split: int, index: int, gender: int, age: int):
    """The seven photos of one person, from its own random stream (order-independent)."""
    rng = np.random.default_rng([int(seed), split, index])
    person = _make_person(rng, p, gender, age)
    return [_photo(rng, p, person, stem) for stem in STEMS], rng


# ---------------------------------------------------------------------------- generator


def _csv(header: list[str], rows: list[list]) -> bytes:
    lines = [",".join(header)] + [",".join(str(x) for x in r) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def generate_mask_sample(params: MaskSampleParams, seed: int) -> dict[str, bytes]:
    """Draw the sample: relative path (under the competition root) -> file content.

    ``params``: a :class:`MaskSampleParams` or a plain dict of some of its keys (the rest
    take their defaults; an unknown key or a value out of range raises
    :class:`~podium.core.params.ParametersInvalid` naming ``sample_data.mask.<key>`` and
    what is allowed). The same ``params`` and ``seed`` give byte-identical files.
    """
    p = MaskSampleParams.of(params)
    seed = int(seed)
    plan = np.random.default_rng([seed, 0])
    race = str(p["race"])
    q_lo, q_hi = (int(x) for x in p["jpeg_quality"])
    png, jpeg = float(p["png_share"]), float(p["jpeg_share"])
    files: dict[str, bytes] = {}

    # --- training people: ids (not contiguous, as in the real set), ages, genders
    n = p["n_people"]
    ids = np.sort(plan.choice(np.arange(1, max(7000, 3 * n) + 1), n, replace=False))
    ages = _draw_ages(plan, p, n)
    genders = _draw_genders(plan, p, n)
    listed = genders.copy()
    flip = plan.random(n) < float(p["gender_noise_share"])
    listed[flip] = 1 - listed[flip]
    swap = plan.random(n) < float(p["swap_incorrect_normal_share"])
    train_rows, truth_rows = [], []
    for i in range(n):
        pid = f"{int(ids[i]):06d}"
        gname = GENDER_NAMES[int(listed[i])]
        folder = f"{pid}_{gname}_{race}_{int(ages[i])}"
        train_rows.append([pid, gname, race, int(ages[i]), folder])
        truth_rows.append(
            [pid, folder, gname, GENDER_NAMES[int(genders[i])], int(ages[i]), int(bool(swap[i]))]
        )
        photos, rng = _person_photos(p, seed, 1, i, int(genders[i]), int(ages[i]))
        u = rng.random(len(STEMS))
        for stem, img, uk in zip(STEMS, photos, u, strict=True):
            ext = ".png" if uk < png else ".jpeg" if uk < png + jpeg else ".jpg"
            name = stem
            if swap[i] and stem in ("incorrect_mask", "normal"):
                name = "normal" if stem == "incorrect_mask" else "incorrect_mask"
            quality = int(rng.integers(q_lo, q_hi + 1))
            files[f"train/images/{folder}/{name}{ext}"] = _encode(img, ext, quality)
    files["train/train.csv"] = _csv(["id", "gender", "race", "age", "path"], train_rows)
    files[TRAIN_TRUTH_FILE] = _csv(
        ["id", "path", "listed_gender", "true_gender", "age", "swapped_incorrect_normal"],
        truth_rows,
    )

    # --- eval people: all seven photos each, hashed names, shuffled
    m = p["n_eval_people"]
    e_ages = _draw_ages(plan, p, m)
    e_genders = _draw_genders(plan, p, m)
    entries = []
    for j in range(m):
        photos, rng = _person_photos(p, seed, 2, j, int(e_genders[j]), int(e_ages[j]))
        for stem, img in zip(STEMS, photos, strict=True):
            image_id = rng.bytes(20).hex() + ".jpg"
            quality = int(rng.integers(q_lo, q_hi + 1))
            mask = STEM_MASK[stem]
            age_cls = age_class(int(e_ages[j]), 60)
            ans = encode_class(mask, int(e_genders[j]), age_cls)
            truth = [
                image_id,
                ans,
                mask,
                int(e_genders[j]),
                int(e_ages[j]),
                age_cls,
                f"eval{j:05d}",
                stem,
            ]
            entries.append((image_id, _encode(img, ".jpg", quality), truth))
    order = plan.permutation(len(entries))
    entries = [entries[k] for k in order]
    for image_id, data, _ in entries:
        files[f"eval/images/{image_id}"] = data
    files["eval/info.csv"] = _csv(["ImageID", "ans"], [[e[0], 0] for e in entries])
    files[EVAL_TRUTH_FILE] = _csv(
        ["ImageID", "ans", "mask", "gender", "age", "age_class", "person", "stem"],
        [e[2] for e in entries],
    )
    return dict(sorted(files.items()))


# ---------------------------------------------------------------------------- preview


def _label_of(path: str) -> tuple[int, str, str, int] | None:
    """(class, person folder, stem, age) of a training photo path, or None."""
    parts = path.split("/")
    if len(parts) != 4 or parts[:2] != ["train", "images"]:
        return None
    folder, fname = parts[2], parts[3]
    stem = fname.rsplit(".", 1)[0]
    fields = folder.split("_")
    if stem not in STEMS or len(fields) != 4 or fields[1] not in GENDER_NAMES:
        return None
    age = int(fields[3])
    mask = STEM_MASK[stem]
    return encode_class(mask, GENDER_NAMES.index(fields[1]), age_class(age, 60)), folder, stem, age


# gender/age combinations in an order that shows both genders and all ages early, with the
# three mask states of each combination side by side
_SHEET_ORDER = [m * 6 + ga for ga in (0, 4, 2, 3, 1, 5) for m in range(3)]


def contact_sheet(files: Mapping[str, bytes], n: int = 12):
    """A matplotlib Figure (Agg) of ``n`` training photos with their decoded 18-class labels.

    Picks one photo per class in turn (round robin over the classes present, a different
    person each time where possible) so rare classes show up; with ``n`` = 12 the sheet
    shows the three mask states of male <30, female 30-59, male >=60 and female <30.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_class: dict[int, list[tuple[str, str, str, int]]] = {}
    for path in sorted(files):
        lab = _label_of(path)
        if lab is not None:
            by_class.setdefault(lab[0], []).append((path, lab[1], lab[2], lab[3]))
    picks: list[tuple[int, str, str, str, int]] = []
    used_paths: set[str] = set()
    used_people: set[str] = set()
    while len(picks) < n:
        added = False
        for c in [c for c in _SHEET_ORDER if c in by_class]:
            if len(picks) >= n:
                break
            free = [x for x in by_class[c] if x[0] not in used_paths]
            fresh = [x for x in free if x[1] not in used_people]
            if not free:
                continue
            path, folder, stem, age = (fresh or free)[0]
            picks.append((c, path, folder, stem, age))
            used_paths.add(path)
            used_people.add(folder)
            added = True
        if not added:
            break
    cols = min(6, max(1, len(picks)))
    rows = max(1, math.ceil(len(picks) / cols))
    fig = Figure(figsize=(2.3 * cols, 3.3 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, (c, path, folder, _stem, age) in enumerate(picks):
        ax = fig.add_subplot(rows, cols, k + 1)
        bgr = cv2.imdecode(np.frombuffer(files[path], np.uint8), cv2.IMREAD_COLOR)
        ax.imshow(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        ax.set_title(
            f"{class_name(c)} ({c})\n{folder.split('_')[0]} age {age} {path.rsplit('/', 1)[1]}",
            fontsize=7,
        )
        ax.axis("off")
    if not picks:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no training photos found", ha="center")
        ax.axis("off")
    fig.tight_layout()
    return fig


if __name__ == "__main__":  # pragma: no cover - manual timing and preview
    t0 = time.perf_counter()
    out = generate_mask_sample({}, 0)
    dt = time.perf_counter() - t0
    print(f"{len(out)} files, {sum(map(len, out.values())) / 1e6:.1f} MB in {dt:.1f} s")
    contact_sheet(out).savefig("/tmp/mask_contact.png")
