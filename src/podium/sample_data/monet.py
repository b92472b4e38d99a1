"""A small, seeded sample of Kaggle's "I'm Something of a Painter Myself" (Monet) data.

The competition gives two UNPAIRED sets of 256x256 RGB jpgs, 7,038 photos and 300 Monet
paintings, in the layout read by :mod:`podium.layouts.monet`::

    photo_jpg/<10 hex digits>.jpg      e.g. photo_jpg/00068bc07f.jpg
    monet_jpg/<10 hex digits>.jpg      e.g. monet_jpg/000c1e3bff.jpg
    photo_tfrec/photo<NN>-<count>.tfrec   e.g. photo_tfrec/photo00-6.tfrec
    monet_tfrec/monet<NN>-<count>.tfrec   e.g. monet_tfrec/monet00-6.tfrec

The TFRecord shards hold the same images as the jpg folders, as the competition's do: one
``tf.train.Example`` per image with the bytes features ``image_name`` (the jpg's name
without suffix), ``image`` (the very bytes of the jpg) and ``target`` (the domain,
``photo`` or ``monet``: podium does not read it), the images split into
``photo_tfrec_shards`` and ``monet_tfrec_shards`` consecutive shards (the competition: 20
and 5), each named with its record count. Reading either half gives identical images.

Photos are procedural landscapes rendered at 1.5x the size and reduced (anti-aliased):
sky with a time-of-day gradient (day, golden hour, sunset, overcast, mist), clouds, a sun
with glow, layered hills and snow-capped mountains with aerial perspective, lakes, ponds,
rivers and sea with mirrored, rippled reflections and glints, fields in perspective with
crop rows, hay stacks and poppies, trees (round, poplars, pines) and grass, finished like a
camera (sharpening, contrast, exposure, sensor noise). Paintings are OTHER landscapes,
drawn from their own random streams and with Monet's favourite subjects weighted up (water
lily ponds, poplars, haystacks, misty and golden light), then painted: colours pulled
toward a Monet palette (pastel blues, greens, lilac, straw, cream) and lifted toward
pastel, edges softened into an underpainting, then two layers of visible brush strokes
that follow the image's edges (horizontal on water), each with a lighter ridge, dabs of
broken colour, and a canvas weave. No painting is a stylised copy of a photo.

Scale: ``n_photos`` and ``n_monet`` set the counts, ``size`` the side (256 by default, as
the competition). Each image draws from its own stream, so a larger sample starts with the
smaller one's photos: ``kedro run --pipelines=sample_data --tags=monet
--params="sample_data.monet.n_photos=960"`` writes 8x the default photos, and
``n_photos=7038,n_monet=300`` the competition's counts (about 60 ms an image on one core;
the jpg bytes, ~20 kB an image, and their TFRecord copy are held until the folder is
swapped in).

No kedro or mlflow imports.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import ClassVar

import cv2
import numpy as np
from matplotlib.figure import Figure

from podium.core.params import Fraction, Params
from podium.sample_data.drawing import (
    child_rng,
    decode_image,
    encode_jpeg,
    fbm_1d,
    lerp,
    value_noise,
)
from podium.sample_data.params import between

__all__ = [
    "MonetSampleParams",
    "contact_sheet",
    "generate_monet_sample",
    "paint",
    "render_landscape",
    "tfrecord_shards",
]


class MonetSampleParams(Params):
    """``sample_data.monet``: every parameter of :func:`generate_monet_sample`; a key left
    out takes conf/base's value."""

    block: ClassVar[str] = "sample_data.monet"

    n_photos: between(1, 100_000, int) = 120
    """photo_jpg/ images (real: 7,038)."""
    n_monet: between(1, 100_000, int) = 30
    """monet_jpg/ paintings (real: 300)."""
    size: between(32, 2048, int) = 256
    """Side of the square images (real: 256)."""
    jpeg_quality: between(1, 100, int) = 92
    """PIL JPEG quality, 4:2:0 subsampling."""
    palette_strength: Fraction = 0.55
    """How far painting colours move toward Monet's palette."""
    stroke_density: between(0.05, 8.0) = 1.0
    """Multiplier on the number of brush strokes per painting."""
    stroke_length: between(0.1, 8.0) = 1.0
    """Multiplier on brush stroke length."""
    softness: between(0.0, 8.0) = 1.0
    """Multiplier on the blur of the underpainting (edge softening)."""
    photo_noise: between(0.0, 64.0) = 2.0
    """Std of photo sensor noise (0..255 scale)."""
    photo_tfrec_shards: between(0, 1000, int) = 20
    """photo_tfrec/ shards (real: 20), at most one per photo; 0: none."""
    monet_tfrec_shards: between(0, 1000, int) = 5
    """monet_tfrec/ shards (real: 5), at most one per painting; 0: none."""


SKY, WATER, LAND, FOLIAGE = 0, 1, 2, 3
_PHOTO_SUPERSAMPLE = 1.5  # photos are drawn this much larger, then reduced (anti-aliasing)

# top, horizon, sun colour per light
_SKIES = {
    "day": ((70, 128, 208), (196, 218, 238), (255, 250, 232)),
    "golden": ((92, 120, 186), (246, 204, 150), (255, 236, 180)),
    "sunset": ((58, 60, 118), (246, 142, 86), (255, 214, 140)),
    "overcast": ((146, 152, 164), (206, 206, 210), (240, 240, 240)),
    "mist": ((164, 182, 208), (230, 226, 220), (255, 248, 236)),
}
_PHOTO_SKIES = {"day": 0.45, "golden": 0.2, "sunset": 0.12, "overcast": 0.15, "mist": 0.08}
_MONET_SKIES = {"day": 0.25, "golden": 0.25, "sunset": 0.12, "overcast": 0.1, "mist": 0.28}
_PHOTO_KINDS = {"lake": 0.25, "coast": 0.15, "field": 0.2, "river": 0.15, "mountain": 0.2,
                "pond": 0.05}  # fmt: skip
_MONET_KINDS = {"pond": 0.3, "field": 0.2, "coast": 0.15, "river": 0.15, "poplars": 0.15,
                "lake": 0.05}  # fmt: skip
_GREENS = [(52, 92, 44), (74, 112, 50), (40, 74, 40), (96, 128, 62), (60, 100, 70)]
_FIELDS = [(116, 150, 64), (200, 176, 96), (148, 168, 80), (170, 140, 170), (184, 150, 84),
           (96, 136, 60)]  # fmt: skip

# Monet palettes: luminance stops -> colour (0..1)
_MONET_PALETTES = [
    [(0.0, (0.20, 0.22, 0.40)), (0.3, (0.30, 0.46, 0.54)), (0.55, (0.50, 0.66, 0.56)),
     (0.78, (0.80, 0.80, 0.62)), (1.0, (0.97, 0.94, 0.86))],  # water lilies: blue-green
    [(0.0, (0.30, 0.22, 0.40)), (0.3, (0.52, 0.44, 0.62)), (0.55, (0.70, 0.62, 0.70)),
     (0.78, (0.90, 0.78, 0.66)), (1.0, (0.99, 0.93, 0.84))],  # lilac mist
    [(0.0, (0.28, 0.22, 0.30)), (0.3, (0.54, 0.40, 0.36)), (0.55, (0.78, 0.60, 0.40)),
     (0.78, (0.93, 0.80, 0.54)), (1.0, (0.99, 0.95, 0.80))],  # haystacks: golden
    [(0.0, (0.16, 0.26, 0.34)), (0.3, (0.28, 0.48, 0.58)), (0.55, (0.52, 0.70, 0.78)),
     (0.78, (0.80, 0.86, 0.84)), (1.0, (0.98, 0.96, 0.90))],  # seascape: cool blue
]  # fmt: skip


def _choice(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _jit(rng, colour, amount=0.1) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) * rng.uniform(1 - amount, 1 + amount, 3), 0, 255)


def _smooth(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at edge0 to 1 at edge1 (edge1 < edge0 gives a falling step)."""
    t = np.clip((x - edge0) / (np.asarray(edge1, np.float32) - edge0), 0, 1)
    return t * t * (3 - 2 * t)


def _col(c) -> tuple[float, float, float]:
    return tuple(float(v) for v in c)


# ----------------------------------------------------------------------------- landscape
def _tree(img, region, rng, x, y, h, kind, base, light):
    """A tree standing at (x, y) of height h pixels, lit from the side ``light`` (-1 / 1)."""
    trunk = (70, 56, 44)
    if kind == "poplar":
        w = h * rng.uniform(0.12, 0.18)
        cv2.line(img, (int(x), int(y)), (int(x), int(y - h * 0.2)), trunk, max(1, int(w * 0.15)))
        for k in range(6):
            c = _col(_jit(rng, base, 0.15) * (0.8 + 0.08 * k))
            cy = y - h * (0.5 + rng.normal(0, 0.03))
            ax, ay = max(1, int(w * (0.55 - 0.05 * k))), max(1, int(h * (0.48 - 0.04 * k)))
            cv2.ellipse(img, (int(x + light * k * w * 0.04), int(cy)), (ax, ay), 0, 0, 360, c, -1)
            cv2.ellipse(region, (int(x), int(cy)), (ax, ay), 0, 0, 360, FOLIAGE, -1)
    elif kind == "pine":
        w = h * rng.uniform(0.3, 0.42)
        cv2.line(img, (int(x), int(y)), (int(x), int(y - h * 0.25)), trunk, max(1, int(w * 0.08)))
        for k in range(4):
            top, bottom = y - h * (1 - 0.2 * k), y - h * (0.45 - 0.13 * k)
            half = w * (0.3 + 0.18 * k)
            pts = np.array([[x, top], [x + half, bottom], [x - half, bottom]], np.int32)
            c = _col(_jit(rng, base, 0.1) * (0.85 + 0.07 * k))
            cv2.fillPoly(img, [pts], c)
            cv2.fillPoly(region, [pts], FOLIAGE)
    else:
        w = h * rng.uniform(0.6, 0.9)
        cv2.line(img, (int(x), int(y)), (int(x), int(y - h * 0.5)), trunk, max(1, int(w * 0.07)))
        for _ in range(int(rng.integers(7, 13))):
            cx = x + rng.normal(0, 0.22) * w
            cy = y - h * rng.uniform(0.45, 0.85)
            r = max(1, int(w * rng.uniform(0.18, 0.32)))
            lit = 1.0 + 0.25 * light * (cx - x) / max(w, 1)
            c = _col(_jit(rng, base, 0.12) * lit)
            cv2.ellipse(img, (int(cx), int(cy)), (r, int(r * 0.85)), 0, 0, 360, c, -1)
            cv2.ellipse(region, (int(cx), int(cy)), (r, int(r * 0.85)), 0, 0, 360, FOLIAGE, -1)


def render_landscape(
    rng: np.random.Generator, size: int, kinds: Mapping[str, float], skies: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One landscape: (float32 RGB (S, S, 3) in 0..255, region map (S, S), description)."""
    S = size
    kind, light = _choice(rng, kinds), _choice(rng, skies)
    top, hor, sunc = (_jit(rng, c, 0.06) for c in _SKIES[light])
    if kind == "pond":
        hy = int(S * rng.uniform(0.1, 0.28))
    elif kind == "mountain":
        hy = int(S * rng.uniform(0.45, 0.62))
    else:
        hy = int(S * rng.uniform(0.34, 0.58))
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    t = np.clip(yy / hy, 0, 1) ** rng.uniform(0.6, 1.3)
    img = np.ascontiguousarray(lerp(top, hor, t[..., None]), np.float32)
    region = np.zeros((S, S), np.uint8)
    sun_side = 1.0 if rng.random() < 0.5 else -1.0

    if light != "overcast" and rng.random() < 0.55:  # sun and glow
        sx = S * (0.5 + sun_side * rng.uniform(0.1, 0.4))
        sy = hy * rng.uniform(0.3, 0.92)
        d2 = (xx - sx) ** 2 + (yy - sy) ** 2
        r = S * rng.uniform(0.02, 0.045)
        glow = 0.55 * np.exp(-d2 / (2 * (S * 0.13) ** 2)) + _smooth(r * 1.1, r * 0.9, np.sqrt(d2))
        img += (sunc - img) * np.clip(glow, 0, 1)[..., None]
    # clouds: noise stretched horizontally, fading toward the horizon
    cover = rng.uniform(0.1, 0.7)
    noise = value_noise(rng, S, max(8, S // 3), cells=rng.uniform(4, 8), octaves=5)
    noise = cv2.resize(noise, (S, S), interpolation=cv2.INTER_CUBIC)  # stretched sideways
    a = _smooth(1 - cover, 1 - cover + 0.25, noise) * np.clip((hy - yy) / (0.25 * hy), 0, 1)
    shade = value_noise(rng, S, S, cells=5, octaves=3)
    cloud = lerp(lerp(hor, top, 0.45) * 0.92, lerp((250, 250, 250), sunc, 0.4), shade[..., None])
    img = img * (1 - a[..., None]) + cloud * a[..., None]

    # hills and mountains, far to near, with aerial perspective
    n_layers = int(rng.integers(1, 4))
    hill_base = _jit(rng, (70, 100, 96), 0.15)
    for k in range(n_layers):
        depth = (k + 1) / (n_layers + 1)
        amp = S * rng.uniform(0.03, 0.12)
        if kind == "mountain" and k == 0:
            amp = S * rng.uniform(0.22, 0.34)
        ridge = hy - amp * (0.25 + fbm_1d(rng, S, cells=rng.uniform(2, 6), octaves=5))
        colour = lerp(hor, hill_base, 0.3 + 0.55 * depth)
        mask = yy >= ridge[None, :]
        tex = value_noise(rng, S, S, cells=12, octaves=3)[..., None] - 0.5
        layer = colour + 18 * tex * depth
        if kind == "mountain" and k == 0:  # snow on the peaks above a ragged snow line
            line = hy - amp * rng.uniform(0.55, 0.8) + (tex[..., 0] * 2) * amp * 0.18
            snow = _smooth(line + 2, line - 2, yy)[..., None]
            lit = 0.94 + 0.16 * tex  # tex is centred on 0
            layer = layer * (1 - snow) + np.asarray((236, 238, 244), np.float32) * lit * snow
        img = np.where(mask[..., None], layer, img)
        region[mask] = LAND

    water = np.zeros((S, S), bool)
    if kind in ("lake", "coast", "pond", "river"):
        if kind == "coast":
            wl = hy
        else:  # a far shore with a tree line
            wl = hy + int(S * rng.uniform(0.015, 0.05))
            shore = _jit(rng, _GREENS[int(rng.integers(len(_GREENS)))], 0.1) * 0.8
            img[hy:wl] = shore
            region[hy:wl] = LAND
            n_trees = int(rng.integers(6, 20)) if kind != "pond" else int(rng.integers(3, 8))
            for _ in range(n_trees):
                h = S * (rng.uniform(0.04, 0.12) if kind != "pond" else rng.uniform(0.15, 0.35))
                tk = (
                    "poplar" if rng.random() < 0.25 else ("pine" if rng.random() < 0.2 else "round")
                )
                _tree(img, region, rng, rng.uniform(0, S), wl, h, tk, _GREENS[int(rng.integers(5))],
                      sun_side)  # fmt: skip
        if kind == "river":  # a river widening toward the viewer between grassy banks
            cx0, cx1 = S * rng.uniform(0.35, 0.65), S * rng.uniform(0.3, 0.7)
            w0, w1 = S * rng.uniform(0.02, 0.06), S * rng.uniform(0.35, 0.7)
            tt = np.clip((yy - wl) / max(S - wl, 1), 0, 1)
            wiggle = (fbm_1d(rng, S, cells=3) - 0.5)[yy.astype(int)] * S * 0.15 * tt
            centre = cx0 + (cx1 - cx0) * tt + wiggle
            water = (yy >= wl) & (np.abs(xx - centre) <= w0 + (w1 - w0) * tt**1.3)
            grass = _jit(rng, _GREENS[int(rng.integers(5))], 0.1)
            tex = value_noise(rng, S, S, cells=30, octaves=3)[..., None] - 0.5
            land = (yy >= wl) & ~water
            img = np.where(land[..., None], grass * (0.85 + 0.3 * tt[..., None]) + 30 * tex, img)
            region[land] = LAND
        else:
            water = yy >= wl
        # reflection of everything above the water line, rippled
        ripple = (np.sin(yy * rng.uniform(0.5, 1.2) + xx * 0.05) * S * 0.004
                  + (value_noise(rng, S, S, cells=20, octaves=2) - 0.5) * S * 0.02)  # fmt: skip
        map_y = np.clip(2 * wl - yy, 0, S - 1).astype(np.float32)
        map_x = (xx + ripple * np.clip((yy - wl) / 8, 0, 1)).astype(np.float32)
        reflect = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        tt = np.clip((yy - wl) / max(S - wl, 1), 0, 1)[..., None]
        deep = lerp(top, (34, 64, 84), 0.55)
        mix = 0.2 + 0.4 * tt
        surface = reflect * (1 - mix) * 0.88 + deep * mix
        streak = value_noise(rng, S, max(8, S // 8), cells=24, octaves=3)
        streak = cv2.resize(streak, (S, S), interpolation=cv2.INTER_LINEAR)[..., None]
        surface = surface + _smooth(0.7, 0.95, streak) * lerp(sunc, (255, 255, 255), 0.3) * 0.35
        surface = surface - _smooth(0.3, 0.05, streak) * 25
        img = np.where(water[..., None], surface, img)
        region[water] = WATER
        if kind == "pond":  # water lilies: pads with a notch and pink / white flowers
            for _ in range(int(rng.integers(12, 40))):
                py = rng.uniform(wl + 4, S)
                scale = 0.3 + 0.9 * (py - wl) / max(S - wl, 1)
                px = rng.uniform(0, S)
                r = max(2, int(S * 0.03 * scale * rng.uniform(0.6, 1.4)))
                c = _col(_jit(rng, (70, 120, 60), 0.2))
                cv2.ellipse(img, (int(px), int(py)), (r, max(1, int(r * 0.4))), 0, 20, 340, c, -1)
                if rng.random() < 0.4:
                    fc = (238, 170, 190) if rng.random() < 0.6 else (250, 246, 240)
                    cv2.circle(img, (int(px), int(py - r * 0.2)), max(1, r // 3), fc, -1)
        if kind == "coast" or rng.random() < 0.4:  # a near bank at the bottom
            bank = S * rng.uniform(0.82, 0.96) + (fbm_1d(rng, S, cells=3) - 0.5) * S * 0.08
            near = yy >= bank[None, :]
            sand = kind == "coast" and rng.random() < 0.6
            colour = _jit(rng, (210, 190, 150) if sand else _GREENS[int(rng.integers(5))], 0.1)
            tex = value_noise(rng, S, S, cells=40, octaves=2)[..., None] - 0.5
            img = np.where(near[..., None], colour + 35 * tex, img)
            region[near] = LAND
    else:  # fields / meadows in perspective
        n_bands = int(rng.integers(3, 7))
        edges = [hy] + [hy + (S - hy) * ((k / n_bands) ** 1.6) for k in range(1, n_bands)] + [S + 2]
        rows_tex = value_noise(rng, S, S, cells=40, octaves=2) - 0.5
        vx = S * rng.uniform(0.2, 0.8)
        for k in range(n_bands):
            wobble = (fbm_1d(rng, S, cells=3) - 0.5) * S * 0.04 * (k > 0)
            band = (yy >= (edges[k] + wobble)[None, :]) & (yy < edges[k + 1])
            colour = _jit(rng, _FIELDS[int(rng.integers(len(_FIELDS)))], 0.1)
            # crop rows converging to a vanishing point on the horizon
            ang = np.arctan2(xx - vx, np.maximum(yy - hy, 1))
            rows = 0.5 + 0.5 * np.sin(ang * rng.uniform(40, 90))
            fieldc = colour * (0.88 + 0.18 * rows[..., None]) + 30 * rows_tex[..., None]
            img = np.where(band[..., None], fieldc, img)
            region[band] = LAND
        if rng.random() < 0.5:  # poppies in the nearest band
            red = (200, 40, 36)
            for _ in range(int(rng.integers(60, 220))):
                py = rng.uniform(edges[-2], S)
                r = max(1, int(S * 0.006 * (0.4 + (py - hy) / (S - hy))))
                cv2.circle(
                    img, (int(rng.uniform(0, S)), int(py)), r, _col(_jit(rng, red, 0.15)), -1
                )
        if rng.random() < 0.5 or kind == "field":  # hay stacks
            for _ in range(int(rng.integers(1, 4))):
                py = rng.uniform(hy + (S - hy) * 0.2, S * 0.92)
                scale = (py - hy) / (S - hy)
                px, w = rng.uniform(0.1, 0.9) * S, S * 0.12 * scale
                hay = _col(_jit(rng, (196, 160, 92), 0.1))
                cv2.ellipse(img, (int(px), int(py)), (int(w), int(w * 0.5)), 0, 180, 360, hay, -1)
                roof = np.array([[px - w * 1.05, py - w * 0.45], [px + w * 1.05, py - w * 0.45],
                                 [px, py - w * 1.3]], np.int32)  # fmt: skip
                cv2.fillPoly(img, [roof], _col(np.asarray(hay) * 0.82))
                cv2.ellipse(img, (int(px), int(py)), (int(w), max(1, int(w * 0.12))), 0, 0, 360,
                            _col(np.asarray(hay) * 0.5), -1)  # fmt: skip

    # trees on the land: a row of poplars, scattered trees, or pines on mountain slopes
    tree_kind = {"poplars": "poplar", "mountain": "pine"}.get(kind, "round")
    n = int(rng.integers(8, 16)) if kind == "poplars" else int(rng.integers(0, 6))
    if kind == "poplars":
        y0 = rng.uniform(hy + 0.05 * S, hy + 0.3 * (S - hy))
        x0, dx = rng.uniform(0.0, 0.15) * S, S / n * rng.uniform(0.7, 1.1)
    for i in range(n):
        if kind == "poplars":
            x, y = x0 + i * dx + rng.normal(0, 2), y0 + i * rng.uniform(-1.5, 2.5)
            h = S * rng.uniform(0.35, 0.6) * (1 + (y - hy) / S)
        else:
            y = rng.uniform(hy + 2, S)
            x = rng.uniform(0, S)
            if water[min(int(y), S - 1), min(int(x), S - 1)]:
                continue
            h = S * (0.06 + 0.5 * ((y - hy) / (S - hy)) ** 1.4) * rng.uniform(0.7, 1.2)
        k = tree_kind if rng.random() < 0.8 else "round"
        _tree(img, region, rng, x, y, h, k, _GREENS[int(rng.integers(5))], sun_side)
    return img, region, {"kind": kind, "light": light, "horizon": hy}


def _photo_finish(img: np.ndarray, region: np.ndarray, rng: np.random.Generator, noise: float):
    S = img.shape[0]
    tex = value_noise(rng, S, S, cells=S / 3, octaves=2)[..., None] - 0.5
    amp = np.array([2, 6, 16, 26], np.float32)[region][..., None]
    img = img + amp * tex
    img = img + 0.6 * (img - cv2.GaussianBlur(img, (0, 0), 1.0))  # sharpening
    img = 255 * np.clip(img / 255 * rng.uniform(0.9, 1.12), 0, 1)
    img = 255 * _smooth(0.0, 1.0, img / 255) * 0.35 + img * 0.65  # a gentle S-curve
    if noise > 0:
        img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return img


def _photo(rng: np.random.Generator, p: Mapping) -> np.ndarray:
    S = int(p["size"])
    big = int(round(S * _PHOTO_SUPERSAMPLE))
    img, region, _ = render_landscape(rng, big, _PHOTO_KINDS, _PHOTO_SKIES)
    img = _photo_finish(img, region, rng, 0.0)
    img = cv2.resize(img, (S, S), interpolation=cv2.INTER_AREA)
    noise = float(p["photo_noise"])
    if noise > 0:
        img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- painting
def paint(img: np.ndarray, region: np.ndarray, rng: np.random.Generator, p: Mapping) -> np.ndarray:
    """Turn a rendered landscape (float 0..255) into a Monet-like painting (uint8 RGB)."""
    S = img.shape[0]
    base = np.clip(img / 255.0, 0, 1).astype(np.float32)
    # 1) palette: map luminance through a Monet palette, lift toward pastel
    palette = _MONET_PALETTES[int(rng.integers(len(_MONET_PALETTES)))]
    lum = base @ np.array([0.3, 0.59, 0.11], np.float32)
    pos = np.array([s for s, _ in palette], np.float32)
    cols = np.array([c for _, c in palette], np.float32)
    mapped = np.stack([np.interp(lum, pos, cols[:, k]) for k in range(3)], -1).astype(np.float32)
    strength = float(p["palette_strength"])
    colour = base * (1 - strength) + mapped * strength
    colour = colour * 0.88 + 0.1  # pastel: lifted shadows, lower contrast
    grey = colour.mean(-1, keepdims=True)
    colour = np.clip(grey + (colour - grey) * 1.15, 0, 1)
    # 2) soften edges into an underpainting
    soft = float(p["softness"])
    under = cv2.GaussianBlur(colour, (0, 0), max(0.1, 2.5 * soft * S / 256))
    ref = cv2.GaussianBlur(colour, (0, 0), max(0.1, 1.0 * soft * S / 256))
    # 3) stroke directions: along edges, horizontal on water, a smooth random field elsewhere
    g = cv2.GaussianBlur(lum, (0, 0), 3.0 * S / 256)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    mag = np.hypot(gx, gy)
    edge_angle = np.arctan2(gy, gx) + np.pi / 2
    field = (value_noise(rng, S, S, cells=3, octaves=2) - 0.5) * 2.2
    field[region == SKY] *= 0.35
    angle = np.where(mag > np.percentile(mag, 70), edge_angle, field)
    angle[region == WATER] = rng.normal(0, 0.08, (region == WATER).sum())
    canvas = np.clip(under * 255, 0, 255).astype(np.uint8)
    density, length = float(p["stroke_density"]), float(p["stroke_length"])
    for step, (lo, hi), width, share in ((7.0, (10, 20), 4, 1.0), (4.5, (6, 12), 2, 0.6)):
        step = step * S / 256 / math.sqrt(max(density, 1e-3))
        grid = np.arange(step / 2, S, step)
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        ys = ys.ravel() + rng.uniform(-step / 2, step / 2, ys.size)
        xs = xs.ravel() + rng.uniform(-step / 2, step / 2, xs.size)
        order = rng.permutation(ys.size)[: int(round(share * ys.size))]
        lens = rng.uniform(lo, hi, ys.size) * length * S / 256
        jitter = rng.normal(0, 0.028, (ys.size, 3)) + rng.normal(0, 0.03, (ys.size, 1))
        broken = rng.random(ys.size) < 0.08
        th = max(1, int(round(width * S / 256)))
        for i in order:
            y, x = int(np.clip(ys[i], 0, S - 1)), int(np.clip(xs[i], 0, S - 1))
            a = angle[y, x] + rng.normal(0, 0.15)
            half = lens[i] / 2
            r = region[y, x]
            if r == WATER:
                half *= 1.3
            elif r == FOLIAGE:
                half *= 0.55
            dx, dy = math.cos(a) * half, math.sin(a) * half
            c = ref[y, x] + jitter[i]
            if broken[i]:  # a dab of broken colour: toward lilac or straw
                c = c * 0.6 + (np.array([0.72, 0.6, 0.82]) if rng.random() < 0.5
                               else np.array([0.95, 0.85, 0.55])) * 0.4  # fmt: skip
            c = np.clip(c, 0, 1) * 255
            p0 = (int(round(x - dx)), int(round(y - dy)))
            p1 = (int(round(x + dx)), int(round(y + dy)))
            cv2.line(canvas, p0, p1, _col(c), th, cv2.LINE_AA)
            ridge = np.clip(c * 1.1 + 10, 0, 255)
            off = (int(round(-math.sin(a))), int(round(math.cos(a))))
            cv2.line(canvas, (p0[0] - off[0], p0[1] - off[1]), (p1[0] - off[0], p1[1] - off[1]),
                     _col(ridge), max(1, th // 3), cv2.LINE_AA)  # fmt: skip
    out = canvas.astype(np.float32)
    # 4) canvas weave and a warm varnish
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    weave = (
        np.sin(xx * 2.1) * np.sin(yy * 2.1) * 5 + (value_noise(rng, S, S, cells=S / 4) - 0.5) * 8
    )
    out = out + weave[..., None]
    out = out * np.array([1.02, 1.0, 0.96], np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _painting(rng: np.random.Generator, p: Mapping) -> np.ndarray:
    S = int(p["size"])
    img, region, _ = render_landscape(rng, S, _MONET_KINDS, _MONET_SKIES)
    return paint(img, region, rng, p)


# ----------------------------------------------------------------------------- generator
def generate_monet_sample(params: MonetSampleParams | None, seed: int) -> dict[str, bytes]:
    """Draw the Monet sample: ``{relative path: bytes}``, the jpgs under photo_jpg/ and
    monet_jpg/ and the same JPEG bytes as TFRecord shards under photo_tfrec/ and
    monet_tfrec/.

    ``params``: a :class:`MonetSampleParams`, a plain dict of some of its keys (the rest take
    their defaults; an unknown key or a value out of range raises
    :class:`~podium.core.params.ParametersInvalid` naming ``sample_data.monet.<key>``) or
    None (all defaults). The same (params, seed) gives identical bytes; each image draws from
    its own random stream (seed, domain, index), and file names are 10 random hex digits
    from the seed's own stream, unique across both folders.
    """
    p = MonetSampleParams.of({} if params is None else params)
    names_rng = child_rng(seed, 0)
    used: set[str] = set()

    def name() -> str:
        while True:
            n = names_rng.bytes(5).hex()
            if n not in used:
                used.add(n)
                return n

    files: dict[str, bytes] = {}
    for i in range(p["n_photos"]):
        files[f"photo_jpg/{name()}.jpg"] = encode_jpeg(
            _photo(child_rng(seed, 1, i), p), p["jpeg_quality"]
        )
    for i in range(p["n_monet"]):
        files[f"monet_jpg/{name()}.jpg"] = encode_jpeg(
            _painting(child_rng(seed, 2, i), p), p["jpeg_quality"]
        )
    for domain in ("photo", "monet"):
        jpgs = {k: v for k, v in files.items() if k.startswith(f"{domain}_jpg/")}
        files |= tfrecord_shards(jpgs, domain, p[f"{domain}_tfrec_shards"])
    return files


def tfrecord_shards(jpgs: Mapping[str, bytes], domain: str, shards: int) -> dict[str, bytes]:
    """The jpgs ``{"<domain>_jpg/<name>.jpg": bytes}`` as the competition's TFRecords:
    ``{"<domain>_tfrec/<domain><NN>-<count>.tfrec": bytes}``, the images in order split into
    ``shards`` consecutive shards (at most one per image), framed as ``tfrecord``'s writer
    frames them. One ``tf.train.Example`` per image: ``image_name`` (the jpg's name),
    ``image`` (its bytes), ``target`` (the domain)."""
    items = list(jpgs.items())
    count = min(int(shards), len(items))
    out = {}
    for k, part in enumerate(np.array_split(np.arange(len(items)), count) if count else []):
        records = []
        for i in part:
            key, data = items[int(i)]
            stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            records.append(
                _tfrecord({"image_name": stem.encode(), "image": data, "target": domain.encode()})
            )
        out[f"{domain}_tfrec/{domain}{k:02d}-{len(part)}.tfrec"] = b"".join(records)
    return out


def _tfrecord(features: Mapping[str, bytes]) -> bytes:
    """One framed record (length, its CRC, the ``tf.train.Example``, its CRC) of bytes
    features. ``tfrecord``'s writer serialises the feature map in no fixed order, so the
    same images gave other shard bytes (and another data fingerprint) in every process;
    this serialises it deterministically, framed by the writer's own CRC."""
    from tfrecord import example_pb2
    from tfrecord.writer import TFRecordWriter

    feature = {
        name: example_pb2.Feature(bytes_list=example_pb2.BytesList(value=[value]))
        for name, value in features.items()
    }
    example = example_pb2.Example(features=example_pb2.Features(feature=feature))
    record = example.SerializeToString(deterministic=True)
    length = struct.pack("<Q", len(record))
    return length + TFRecordWriter.masked_crc(length) + record + TFRecordWriter.masked_crc(record)


def contact_sheet(files: Mapping[str, bytes], n: int = 8) -> Figure:
    """A figure of the first ``n`` photos (top row) and ``n`` Monet paintings (bottom row)."""
    groups = [
        ("photo", sorted(k for k in files if k.startswith("photo_jpg/"))[:n]),
        ("monet", sorted(k for k in files if k.startswith("monet_jpg/"))[:n]),
    ]
    cols = max(1, n)
    fig = Figure(figsize=(1.9 * cols, 4.6), dpi=110)
    for g, (domain, keys) in enumerate(groups):
        count = sum(1 for k in files if k.startswith(f"{domain}_jpg/"))
        for c in range(cols):
            ax = fig.add_subplot(2, cols, g * cols + c + 1)
            ax.set_axis_off()
            if c < len(keys):
                ax.imshow(decode_image(files[keys[c]]))
                ax.set_title(f"{domain}: {keys[c].split('/')[-1]}", fontsize=6)
                if c == 0:
                    ax.text(-0.08, 0.5, f"{domain}_jpg ({count})", transform=ax.transAxes,
                            rotation=90, va="center", ha="right", fontsize=8)  # fmt: skip
    fig.suptitle("Monet sample: unpaired photos (top) and paintings (bottom)", fontsize=9)
    fig.tight_layout(rect=(0.02, 0, 1, 0.95))
    return fig
