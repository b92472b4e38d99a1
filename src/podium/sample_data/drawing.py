"""Procedural drawing helpers shared by the UDA and Monet sample generators.

Everything takes an explicit ``numpy.random.Generator`` so that the same seed draws the same
picture, and encodes with fixed settings so that the same picture gives the same bytes.
No kedro or mlflow imports.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "child_rng",
    "decode_image",
    "encode_jpeg",
    "encode_png",
    "fbm_1d",
    "gradient",
    "lerp",
    "value_noise",
]


def child_rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for (seed, key, ...): one stream per split and item."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *keys]))


def value_noise(
    rng: np.random.Generator,
    height: int,
    width: int,
    cells: float = 4.0,
    octaves: int = 3,
    persistence: float = 0.5,
) -> np.ndarray:
    """Smooth fractal noise in [0, 1] of shape (height, width), float32.

    ``cells`` is the number of lattice cells across the longer side at the coarsest octave;
    each octave doubles it and scales its amplitude by ``persistence``.
    """
    out = np.zeros((height, width), np.float32)
    amplitude, total = 1.0, 0.0
    longer = max(height, width)
    for octave in range(octaves):
        n = cells * (2**octave)
        gh = max(2, int(np.ceil(n * height / longer)) + 1)
        gw = max(2, int(np.ceil(n * width / longer)) + 1)
        grid = rng.random((gh, gw), dtype=np.float32)
        out += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= persistence
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def fbm_1d(rng: np.random.Generator, n: int, cells: float = 4.0, octaves: int = 4) -> np.ndarray:
    """Smooth 1-D fractal noise of length ``n`` in [0, 1] (ridge lines, horizons)."""
    return value_noise(rng, 1, n, cells=cells, octaves=octaves)[0]


def lerp(a, b, t):
    """Linear interpolation that works on scalars, colours and arrays."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    return a + (b - a) * np.float32(t)


def gradient(
    height: int, width: int, stops: Sequence[tuple[float, Sequence[float]]], axis: int = 0
) -> np.ndarray:
    """An (H, W, 3) float32 colour gradient through ``stops`` = [(position 0..1, rgb), ...]."""
    n = height if axis == 0 else width
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    positions = np.array([p for p, _ in stops], np.float32)
    colours = np.array([c for _, c in stops], np.float32)
    ramp = np.stack([np.interp(t, positions, colours[:, k]) for k in range(3)], axis=-1)
    if axis == 0:
        return np.broadcast_to(ramp[:, None, :], (height, width, 3)).astype(np.float32)
    return np.broadcast_to(ramp[None, :, :], (height, width, 3)).astype(np.float32)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB (H, W, 3) or single-channel (H, W) image; deterministic."""
    image = _to_uint8(image)
    buf = io.BytesIO()
    Image.fromarray(image, mode="L" if image.ndim == 2 else "RGB").save(
        buf, format="PNG", compress_level=6, optimize=False
    )
    return buf.getvalue()


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """Baseline JPEG bytes (4:2:0, no EXIF) of an RGB image; deterministic."""
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(image), mode="RGB").save(
        buf, format="JPEG", quality=int(quality), subsampling=2, optimize=False
    )
    return buf.getvalue()


def decode_image(data: bytes, mode: str | None = "RGB") -> np.ndarray:
    """Decode image bytes into an array (``mode=None`` keeps the stored mode)."""
    image = Image.open(io.BytesIO(data))
    if mode is not None:
        image = image.convert(mode)
    return np.asarray(image)
