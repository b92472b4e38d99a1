"""Manipulation families of the DFDC sample's fakes, and the distractors of its test videos.

DFDC's fakes came from several methods, each leaving its own traces; a detector trained on
one method learns that method's traces only. Each family here follows how the real method
works (what it renders, at which resolution, how it blends), and its strength follows
``difficulty`` (0 subtle ... 1 obvious):

``face_swap``
    Low-resolution autoencoder swap (DF-128): the donor's inner face, resampled down and
    up inside a feathered mask, colour-corrected towards the target, with a boundary seam,
    per-frame colour flicker and mask jitter. Traces: blur inside the mask, seams.
``autoencoder_256``
    Sharper autoencoder swap (DF-256): almost no resolution loss, but the decoder's
    texture: skin smoothed edge-preservingly (camera noise mostly gone inside the mask)
    plus a faint grid pattern fixed to the face (the decoder's upsampling), tighter mask.
    Traces: little fine noise in the face, a periodic pattern that moves with the face.
``morphable_mask``
    Morphable-mask / nearest-neighbour swap (MM/NN): the donor's face fitted geometrically
    to per-frame landmarks (small stretch, independent per-frame position, scale and roll
    errors) and pasted with a hard-edged mask, no resolution loss, skin tone matched once
    but lighting from the donor's own video (constant: it does not follow the scene's).
    Traces: a sharp boundary step, the face wobbling against the head frame to frame.
``talking_head``
    Neural talking head (NTH): the target's own identity re-rendered from ONE source frame
    of the video, driven by the pose (head motion, mouth opening smoothed as a driver's
    landmarks are): the whole head (hair, ears, neck) is replaced, slightly over-smoothed,
    lit as in the source frame, with the source frame's camera noise carried along with
    the head instead of fresh noise. Traces: texture static over time (frame-to-frame
    noise correlation inside the head), light that does not follow the scene.
``poisson_blend``
    FSGAN-like reenactment and blending: the donor's face reenacted to the target's pose
    and expression at a moderate resolution, cut by the donor's own face outline (slightly
    resized: the face shapes do not quite match) and blended in the gradient domain (a
    Poisson blend, as ``cv2.seamlessClone``'s normal clone). Traces: no colour seam, but the donor's gradients at the
    boundary and a shape mismatch with the target's jaw line.
``gan_face``
    StyleGAN-like generated face: an identity mixed from donor and target traits (style
    mixing), generated at half resolution and upsampled as a transposed convolution does,
    which leaves a periodic (checkerboard) pattern, no camera noise inside the face,
    feathered mask. Traces: a peak at the Nyquist frequencies of the face's spectrum.

Every family takes ``(rng, p, orig, target, donor)`` (the original's clean frames, camera
noise and poses; the target's and the donor's :class:`Appearance`) and returns the fake's
uint8 frames before encoding. Outside its region (the inner face, or the head for
``talking_head``) a fake equals its original pixel for pixel, camera noise included.

Test-video distractors (DFDC's test set added augmentations to real and fake videos
alike): ``reencode`` (another crf), ``resize`` (down then up to the same size, so the
face boxes still hold), ``frame_rate`` (another fps over the same duration: frames dropped
or duplicated), ``text`` (a caption), ``logo`` (a box with a letter in a corner) and
``flower_crown`` (a ring of flowers that follows the head).

No kedro or mlflow imports.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from podium.sample_data.faces import Appearance, face_region_mask, render_face

__all__ = [
    "DISTRACTORS",
    "FAMILIES",
    "OWN_IDENTITY",
    "apply_distractor",
    "draw_distractors",
    "draw_families",
    "finish",
    "render_family",
]

#: Manipulation families, in the order shares are drawn (the mapping's order is no part of it).
FAMILIES = (
    "face_swap",
    "autoencoder_256",
    "morphable_mask",
    "talking_head",
    "poisson_blend",
    "gan_face",
)
#: Families that re-render the target's own identity (no donor: truth ``swap_actor`` null).
OWN_IDENTITY = frozenset({"talking_head"})
#: Test-video distractor kinds, in the order their weights are drawn.
DISTRACTORS = ("reencode", "resize", "frame_rate", "text", "logo", "flower_crown")

_MASK_FLOOR = 0.003  # mask values below this are zero: outside, a fake equals its original


def finish(frame: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
    """Add camera noise to a clean frame (uint8 in, uint8 out)."""
    if noise is None:
        return frame
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _weights(shares: Mapping[str, float], order: Sequence[str]) -> tuple[list[str], np.ndarray]:
    names = [k for k in order if float(shares.get(k, 0.0)) > 0]
    if not names:
        raise ValueError(f"no positive share among {sorted(shares)}")
    w = np.array([float(shares[k]) for k in names], dtype=np.float64)
    return names, w / w.sum()


def draw_families(rng: np.random.Generator, shares: Mapping[str, float], k: int) -> list[str]:
    """``k`` family names drawn independently with probabilities ``shares``."""
    names, w = _weights(shares, FAMILIES)
    return [names[int(i)] for i in rng.choice(len(names), size=int(k), p=w)]


# ---------------------------------------------------------------------------- helpers


def _bbox(mask: np.ndarray, pad: int) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask > _MASK_FLOOR)
    if len(ys) == 0:
        return None
    H, W = mask.shape
    return (
        max(0, ys.min() - pad),
        min(H, ys.max() + pad + 1),
        max(0, xs.min() - pad),
        min(W, xs.max() + pad + 1),
    )


def _floor(mask: np.ndarray) -> np.ndarray:
    mask = mask.astype(np.float32, copy=True)
    mask[mask < _MASK_FLOOR] = 0.0
    return mask


def _layer(frame, ap, center, fh, angle, light, mouth, layers="face") -> np.ndarray:
    out = frame.copy()
    render_face(out, ap, center, fh, angle, light, mouth_open=mouth, layers=layers)
    return out


def _direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(0, 1, 3)
    return v / (np.linalg.norm(v) + 1e-9)


def _composite(frame, noise, y0, y1, x0, x1, crop, m, noise_keep: float = 1.0) -> np.ndarray:
    """``crop`` over ``frame[y0:y1, x0:x1]`` with alpha ``m``; camera noise scaled by
    ``noise_keep`` where the alpha is 1 (a rendered face has no camera noise of its own)."""
    base = frame[y0:y1, x0:x1].astype(np.float32)
    alpha = m[..., None]
    result = frame.copy()
    result[y0:y1, x0:x1] = np.clip(base * (1 - alpha) + crop * alpha + 0.5, 0, 255).astype(np.uint8)
    if noise is not None and noise_keep != 1.0:
        noise = noise.copy()
        noise[y0:y1, x0:x1] *= 1.0 - (1.0 - noise_keep) * alpha
    return finish(result, noise)


# ---------------------------------------------------------------------------- families


def face_swap(rng, p, orig, target: Appearance, donor: Appearance) -> list[np.ndarray]:
    """Swap ``donor``'s face into ``orig`` frame by frame, with difficulty-scaled artifacts."""
    d = float(p["difficulty"])
    H, W = orig.clean[0].shape[:2]
    # per-video artifact settings
    colour_match = 1.0 - 0.35 * d  # how much the donor's colours are pulled to the target's
    direction = rng.normal(0, 1, 3)
    direction /= np.linalg.norm(direction) + 1e-9
    colour_shift = direction * (1.0 + 10.0 * d) * rng.uniform(0.7, 1.3)
    down = 1.05 + 1.2 * d * rng.uniform(0.7, 1.3)  # resolution loss inside the mask
    blur = 0.15 + 0.6 * d
    feather = max(0.004, float(p["feather"]) * (1.0 - 0.8 * d))
    seam = (2.0 + 14.0 * d) * rng.choice([-1.0, 1.0])
    flicker = 0.8 + 5.0 * d  # per-frame colour jitter (grey levels)
    jitter = 0.3 + 1.2 * d  # per-frame mask/pose jitter (pixels)
    out = []
    for frame, noise, pose in zip(orig.clean, orig.noise, orig.poses, strict=True):
        jx, jy = rng.normal(0, jitter, 2)
        donor_layer = frame.copy()
        render_face(
            donor_layer,
            donor,
            (pose.cx + jx * 0.5, pose.cy + jy * 0.5),
            pose.fh,
            pose.angle,
            pose.light,
            mouth_open=pose.mouth,
            layers="face",
        )
        mask = face_region_mask(
            (H, W), target, (pose.cx + jx, pose.cy + jy), pose.fh, pose.angle, feather
        )
        ys, xs = np.nonzero(mask > 0.003)
        if len(ys) == 0:
            out.append(finish(frame, noise))
            continue
        y0, y1 = max(0, ys.min() - 4), min(H, ys.max() + 5)
        x0, x1 = max(0, xs.min() - 4), min(W, xs.max() + 5)
        crop = donor_layer[y0:y1, x0:x1].astype(np.float32)
        base = frame[y0:y1, x0:x1].astype(np.float32)
        m = mask[y0:y1, x0:x1]
        ch, cw = crop.shape[:2]
        small = cv2.resize(
            crop, (max(2, int(cw / down)), max(2, int(ch / down))), interpolation=cv2.INTER_AREA
        )
        crop = cv2.resize(small, (cw, ch), interpolation=cv2.INTER_LINEAR)
        crop = cv2.GaussianBlur(crop, (0, 0), blur)
        inner = m > 0.5
        if inner.any():
            delta = base[inner].mean(0) - crop[inner].mean(0)
            crop += delta * colour_match
        crop += colour_shift + rng.normal(0, flicker, 3)
        ring = (4.0 * m * (1.0 - m))[..., None]
        alpha = np.clip(m * (1.0 - abs(rng.normal(0, 0.04 * d))), 0, 1)[..., None]
        blended = base * (1 - alpha) + crop * alpha + seam * ring
        result = frame.copy()
        result[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        out.append(finish(result, noise))
    return out


def autoencoder_256(rng, p, orig, target: Appearance, donor: Appearance) -> list[np.ndarray]:
    """DF-256: sharp swap with the decoder's smoothed skin and faint grid, tighter mask."""
    d = float(p["difficulty"])
    H, W = orig.clean[0].shape[:2]
    colour_match = 1.0 - 0.1 * d
    colour_shift = _direction(rng) * (0.5 + 4.0 * d) * rng.uniform(0.7, 1.3)
    down = 1.0 + 0.25 * d * rng.uniform(0.7, 1.3)  # little resolution loss
    smooth = 10.0 + 30.0 * d  # edge-preserving smoothing (bilateral sigma, grey levels)
    grid_amp = (0.6 + 2.0 * d) * rng.uniform(0.8, 1.2)  # decoder pattern (grey levels)
    grid_phase = rng.uniform(0, 2 * np.pi, 2)
    noise_keep = 0.35 - 0.25 * d  # camera noise surviving inside the mask
    feather = max(0.003, float(p["feather"]) * (0.6 - 0.4 * d))
    shrink = 0.93  # the tighter mask of a higher-resolution model
    flicker = 0.3 + 1.5 * d
    jitter = 0.2 + 0.6 * d
    out = []
    for frame, noise, pose in zip(orig.clean, orig.noise, orig.poses, strict=True):
        jx, jy = rng.normal(0, jitter, 2)
        centre = (pose.cx + jx * 0.5, pose.cy + jy * 0.5)
        layer = _layer(frame, donor, centre, pose.fh, pose.angle, pose.light, pose.mouth)
        mask = _floor(
            face_region_mask(
                (H, W), target, (pose.cx + jx, pose.cy + jy), pose.fh * shrink, pose.angle, feather
            )
        )
        box = _bbox(mask, 3)
        if box is None:
            out.append(finish(frame, noise))
            continue
        y0, y1, x0, x1 = box
        crop = layer[y0:y1, x0:x1].astype(np.float32)
        base = frame[y0:y1, x0:x1].astype(np.float32)
        m = mask[y0:y1, x0:x1]
        ch, cw = crop.shape[:2]
        if down > 1.01:
            small = cv2.resize(
                crop, (max(2, int(cw / down)), max(2, int(ch / down))), interpolation=cv2.INTER_AREA
            )
            crop = cv2.resize(small, (cw, ch), interpolation=cv2.INTER_LINEAR)
        crop = cv2.bilateralFilter(crop, 5, smooth, 1.5)
        # the decoder's grid, fixed to the face (it moves and turns with the head)
        period = max(2.5, pose.fh / 24.0)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        th = math.radians(pose.angle)
        u = (xx - centre[0]) * math.cos(th) + (yy - centre[1]) * math.sin(th)
        v = -(xx - centre[0]) * math.sin(th) + (yy - centre[1]) * math.cos(th)
        grid = np.cos(2 * np.pi * u / period + grid_phase[0]) * np.cos(
            2 * np.pi * v / period + grid_phase[1]
        )
        crop += grid_amp * grid[..., None]
        inner = m > 0.5
        if inner.any():
            crop += (base[inner].mean(0) - crop[inner].mean(0)) * colour_match
        crop += colour_shift + rng.normal(0, flicker, 3)
        out.append(_composite(frame, noise, y0, y1, x0, x1, crop, m, noise_keep))
    return out


def morphable_mask(rng, p, orig, target: Appearance, donor: Appearance) -> list[np.ndarray]:
    """MM/NN: donor face fitted to noisy per-frame landmarks, pasted with a hard mask."""
    d = float(p["difficulty"])
    H, W = orig.clean[0].shape[:2]
    light = rng.uniform(0.8, 1.2)  # the donor video's own lighting, constant
    stretch = 1.0 + rng.choice([-1.0, 1.0]) * (0.02 + 0.08 * d)  # model-fit error
    wobble = 0.4 + 2.0 * d  # per-frame landmark error (pixels), not smoothed
    scale_wobble = 0.005 + 0.02 * d
    roll_wobble = 0.3 + 2.0 * d  # degrees
    tone_match = 1.0 - 0.5 * d  # skin tone matched once, on the first frame, not per frame
    tone = None
    out = []
    for frame, noise, pose in zip(orig.clean, orig.noise, orig.poses, strict=True):
        jx, jy = rng.normal(0, wobble, 2)
        fh = pose.fh * (1.0 + rng.normal(0, scale_wobble))
        angle = pose.angle + rng.normal(0, roll_wobble)
        centre = (pose.cx + jx, pose.cy + jy)
        layer = _layer(frame, donor, centre, fh, angle, light, pose.mouth)
        mask = face_region_mask((H, W), target, centre, fh, angle, 0.0)
        mask = (mask > 0.5).astype(np.float32)  # hard-edged paste
        box = _bbox(mask, 3)
        if box is None:
            out.append(finish(frame, noise))
            continue
        y0, y1, x0, x1 = box
        # the fitted geometry: a stretch along the face's own horizontal axis
        th = math.radians(angle)
        rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        a = rot @ np.diag([stretch, 1.0]) @ rot.T
        c = np.array([centre[0] - x0, centre[1] - y0])
        affine = np.hstack([a, (c - a @ c)[:, None]])
        crop = cv2.warpAffine(
            layer[y0:y1, x0:x1].astype(np.float32),
            affine,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        m = mask[y0:y1, x0:x1]
        if tone is None:
            inner = m > 0.5
            base = frame[y0:y1, x0:x1].astype(np.float32)
            tone = (base[inner].mean(0) - crop[inner].mean(0)) * tone_match
        out.append(_composite(frame, noise, y0, y1, x0, x1, crop + tone, m))
    return out


def _head_layer(
    shape, ap: Appearance, center, fh, angle, light, mouth
) -> tuple[np.ndarray, np.ndarray]:
    """The whole head (hair, ears, neck, face) as premultiplied colour and coverage alpha,
    from two renders over black and white."""
    black = np.zeros(shape, np.uint8)
    white = np.full(shape, 255, np.uint8)
    render_face(black, ap, center, fh, angle, light, mouth_open=mouth)
    render_face(white, ap, center, fh, angle, light, mouth_open=mouth)
    alpha = 1.0 - (white.astype(np.float32) - black).max(axis=2) / 255.0
    return black.astype(np.float32), np.clip(alpha, 0.0, 1.0)


def talking_head(rng, p, orig, target: Appearance, donor: Appearance) -> list[np.ndarray]:
    """NTH: the target's head re-rendered from one source frame, driven by the pose."""
    d = float(p["difficulty"])
    n = len(orig.clean)
    H, W = orig.clean[0].shape[:2]
    src = int(rng.integers(n))  # the one source frame
    sp = orig.poses[src]
    blur = 0.4 + 0.9 * d  # over-smoothing of the generator
    # the few-shot model's identity gap: skin and hair tones off by a little
    drift = rng.normal(0, 2.0 + 8.0 * d, 3)
    ap = dataclasses.replace(
        target,
        skin_rgb=tuple(
            int(np.clip(c + dv, 0, 255)) for c, dv in zip(target.skin_rgb, drift, strict=True)
        ),
        hair_rgb=tuple(
            int(np.clip(c + dv * 0.5, 0, 255)) for c, dv in zip(target.hair_rgb, drift, strict=True)
        ),
    )
    mouth = np.array([q.mouth for q in orig.poses], dtype=np.float64)
    mouth = np.convolve(np.pad(mouth, 1, mode="edge"), np.ones(3) / 3.0, mode="valid")
    mouth *= 0.9 - 0.2 * d  # driver landmarks under-state the mouth's motion
    src_noise = orig.noise[src]
    out = []
    for frame, noise, pose, mo in zip(orig.clean, orig.noise, orig.poses, mouth, strict=True):
        colour, alpha = _head_layer(
            frame.shape, ap, (pose.cx, pose.cy), pose.fh, pose.angle, sp.light, float(mo)
        )
        head = frame.astype(np.float32) * (1.0 - alpha[..., None]) + colour
        head = cv2.GaussianBlur(head, (0, 0), blur)
        alpha = _floor(cv2.GaussianBlur(alpha, (0, 0), 0.8))
        box = _bbox(alpha, 2)
        if box is None:
            out.append(finish(frame, noise))
            continue
        y0, y1, x0, x1 = box
        m = alpha[y0:y1, x0:x1]
        if noise is not None:
            # the source frame's noise carried with the head: static texture, not fresh noise
            s = pose.fh / sp.fh
            th = math.radians(pose.angle - sp.angle)
            a = s * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
            t = np.array([pose.cx, pose.cy]) - a @ np.array([sp.cx, sp.cy])
            carried = cv2.warpAffine(
                src_noise,
                np.hstack([a, t[:, None]]),
                (W, H),
                flags=cv2.INTER_NEAREST,
                borderMode=cv2.BORDER_REFLECT,
            )
            noise = noise.copy()
            mm = m[..., None]
            noise[y0:y1, x0:x1] = noise[y0:y1, x0:x1] * (1 - mm) + carried[y0:y1, x0:x1] * mm
        out.append(_composite(frame, noise, y0, y1, x0, x1, head[y0:y1, x0:x1], m))
    return out


_POISSON_UNKNOWNS = 40_000  # above this many mask pixels the membrane is solved coarser


def _membrane(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The harmonic correction h of a gradient-domain (Poisson) blend: src + h keeps src's
    gradients inside ``mask`` and meets dst on its edge (h = dst - src there, Laplace(h) = 0
    inside). ``mask`` must not touch the border. A direct sparse solve: deterministic, unlike
    ``cv2.seamlessClone`` (OpenCV 5.0 gave different results from one call to the next)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    h_out = np.zeros(src.shape, np.float32)
    n = int(mask.sum())
    if n == 0:
        return h_out
    if n > _POISSON_UNKNOWNS:  # a large face: the membrane is smooth, solve it coarser
        k = math.ceil(math.sqrt(n / _POISSON_UNKNOWNS))
        H, W = mask.shape
        size = (max(3, W // k), max(3, H // k))
        small = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        small[0], small[-1], small[:, 0], small[:, -1] = False, False, False, False
        coarse = _membrane(
            cv2.resize(src, size, interpolation=cv2.INTER_AREA),
            cv2.resize(dst, size, interpolation=cv2.INTER_AREA),
            small,
        )
        return cv2.resize(coarse, (W, H), interpolation=cv2.INTER_LINEAR) * mask[..., None]
    index = -np.ones(mask.shape, np.int64)
    ys, xs = np.nonzero(mask)
    index[ys, xs] = np.arange(n)
    edge = dst.astype(np.float64) - src
    rows, cols = [np.arange(n)], [np.arange(n)]
    vals = [np.full(n, 4.0)]
    rhs = np.zeros((n, src.shape[2]), np.float64)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        j = index[ny, nx]
        inside = j >= 0
        rows.append(np.nonzero(inside)[0])
        cols.append(j[inside])
        vals.append(np.full(int(inside.sum()), -1.0))
        rhs[~inside] += edge[ny[~inside], nx[~inside]]
    a = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    ).tocsc()
    sol = spsolve(a, rhs).reshape(n, -1)
    h_out[ys, xs] = sol.astype(np.float32)
    return h_out


def poisson_blend(rng, p, orig, target: Appearance, donor: Appearance) -> list[np.ndarray]:
    """FSGAN-like: reenacted donor face blended in the gradient domain."""
    d = float(p["difficulty"])
    H, W = orig.clean[0].shape[:2]
    down = 1.0 + 0.6 * d * rng.uniform(0.7, 1.3)  # the reenactment generator's resolution
    blur = 0.2 + 0.4 * d
    size = 1.0 + rng.choice([-1.0, 1.0]) * (0.03 + 0.07 * d)  # face-shape mismatch
    jitter = 0.2 + 0.6 * d
    out = []
    for frame, noise, pose in zip(orig.clean, orig.noise, orig.poses, strict=True):
        jx, jy = rng.normal(0, jitter, 2)
        centre = (pose.cx + jx, pose.cy + jy)
        fh = pose.fh * size
        layer = _layer(frame, donor, centre, fh, pose.angle, pose.light, pose.mouth)
        hard = face_region_mask((H, W), donor, centre, fh, pose.angle, 0.0) > 0.5
        box = _bbox(hard.astype(np.float32), 6)
        if box is None or hard.sum() < 9:
            out.append(finish(frame, noise))
            continue
        y0, y1, x0, x1 = box
        crop = layer[y0:y1, x0:x1].astype(np.float32)
        ch, cw = crop.shape[:2]
        if down > 1.01:
            small = cv2.resize(
                crop, (max(2, int(cw / down)), max(2, int(ch / down))), interpolation=cv2.INTER_AREA
            )
            crop = cv2.resize(small, (cw, ch), interpolation=cv2.INTER_LINEAR)
        crop = cv2.GaussianBlur(crop, (0, 0), blur)
        dst = frame[y0:y1, x0:x1].astype(np.float32)
        inner = hard[y0:y1, x0:x1].copy()
        inner[:2], inner[-2:], inner[:, :2], inner[:, -2:] = False, False, False, False
        blended = np.where(inner[..., None], crop + _membrane(crop, dst, inner), dst)
        out.append(_composite(frame, noise, y0, y1, x0, x1, blended, inner.astype(np.float32)))
    return out


def _mixed_identity(rng, target: Appearance, donor: Appearance) -> Appearance:
    """A generated identity: each trait from the donor or the target (style mixing)."""
    fields = {}
    for f in dataclasses.fields(Appearance):
        fields[f.name] = getattr(donor if rng.uniform() < 0.6 else target, f.name)
    return Appearance(**fields)


def gan_face(rng, p, orig, target: Appearance, donor: Appearance) -> list[np.ndarray]:
    """StyleGAN-like: a generated face upsampled with a transposed convolution's checkerboard."""
    d = float(p["difficulty"])
    H, W = orig.clean[0].shape[:2]
    ap = _mixed_identity(rng, target, donor)
    amp = (0.012 + 0.045 * d) * rng.uniform(0.8, 1.2)  # relative checkerboard amplitude
    wx, wy, wxy = rng.dirichlet([2.0, 2.0, 4.0])  # its (pi, 0), (0, pi) and (pi, pi) parts
    colour_match = 1.0 - 0.15 * d
    feather = max(0.004, float(p["feather"]) * (0.8 - 0.5 * d))
    noise_keep = 0.3 - 0.2 * d  # a generated face has no camera noise
    flicker = 0.4 + 2.0 * d
    jitter = 0.2 + 0.8 * d
    out = []
    for frame, noise, pose in zip(orig.clean, orig.noise, orig.poses, strict=True):
        jx, jy = rng.normal(0, jitter, 2)
        centre = (pose.cx + jx * 0.5, pose.cy + jy * 0.5)
        layer = _layer(frame, ap, centre, pose.fh, pose.angle, pose.light, pose.mouth)
        mask = _floor(
            face_region_mask(
                (H, W), target, (pose.cx + jx, pose.cy + jy), pose.fh, pose.angle, feather
            )
        )
        box = _bbox(mask, 4)
        if box is None:
            out.append(finish(frame, noise))
            continue
        y0, y1, x0, x1 = box
        y0, x0 = y0 - y0 % 2, x0 - x0 % 2  # the generator's 2x2 grid, fixed to the image
        crop = layer[y0:y1, x0:x1].astype(np.float32)
        base = frame[y0:y1, x0:x1].astype(np.float32)
        m = mask[y0:y1, x0:x1]
        ch, cw = crop.shape[:2]
        small = cv2.resize(crop, ((cw + 1) // 2, (ch + 1) // 2), interpolation=cv2.INTER_AREA)
        up = cv2.resize(
            small, (2 * small.shape[1], 2 * small.shape[0]), interpolation=cv2.INTER_LINEAR
        )[:ch, :cw]
        yy, xx = np.mgrid[0:ch, 0:cw]
        sx, sy = 1.0 - 2.0 * (xx % 2), 1.0 - 2.0 * (yy % 2)
        pattern = (wx * sx + wy * sy + wxy * sx * sy).astype(np.float32)
        crop = up * (1.0 + amp * pattern[..., None])
        inner = m > 0.5
        if inner.any():
            crop += (base[inner].mean(0) - crop[inner].mean(0)) * colour_match
        crop += rng.normal(0, flicker, 3)
        out.append(_composite(frame, noise, y0, y1, x0, x1, crop, m, noise_keep))
    return out


_RENDERERS: dict[str, Callable[..., list[np.ndarray]]] = {
    "face_swap": face_swap,
    "autoencoder_256": autoencoder_256,
    "morphable_mask": morphable_mask,
    "talking_head": talking_head,
    "poisson_blend": poisson_blend,
    "gan_face": gan_face,
}
assert tuple(_RENDERERS) == FAMILIES


def render_family(
    family: str, rng, p, orig, target: Appearance, donor: Appearance
) -> list[np.ndarray]:
    """The fake of ``orig`` made by ``family`` (uint8 frames before encoding)."""
    return _RENDERERS[family](rng, p, orig, target, donor)


# ---------------------------------------------------------------------------- distractors

_WORDS = ("LIVE", "NEWS", "TODAY", "HD", "CAM", "REC", "BREAKING", "VLOG", "MORNING", "SHOW")


def draw_distractors(rng: np.random.Generator, n: int, q: Mapping[str, Any]) -> list[dict | None]:
    """Per test video (in writing order): None, or the distractor given to it.

    ``q``: the ``test_distractors`` block. Exactly round(share * n) videos get one.
    """
    out: list[dict | None] = [None] * int(n)
    k = int(round(float(q["share"]) * n))
    if k == 0:
        return out
    names, w = _weights(q["kinds"], DISTRACTORS)
    for i in sorted(int(j) for j in rng.choice(n, size=k, replace=False)):
        kind = names[int(rng.choice(len(names), p=w))]
        spec: dict[str, Any] = {"kind": kind}
        colour = [int(c) for c in rng.integers(0, 256, 3)]
        if kind == "reencode":
            lo, hi = (int(x) for x in q["reencode_crf"])
            spec["crf"] = int(rng.integers(lo, hi + 1))
        elif kind == "resize":
            lo, hi = (float(x) for x in q["resize_scale"])
            spec["scale"] = round(float(rng.uniform(lo, hi)), 3)
        elif kind == "frame_rate":
            factors = [float(f) for f in q["frame_rate_factors"]]
            spec["factor"] = factors[int(rng.integers(len(factors)))]
        elif kind == "text":
            words = rng.choice(len(_WORDS), size=int(rng.integers(1, 3)), replace=False)
            spec["text"] = " ".join(_WORDS[int(j)] for j in words)
            spec["position"] = ["top", "bottom"][int(rng.integers(2))]
            spec["colour"] = colour
        elif kind == "logo":
            spec["corner"] = ["top_left", "top_right", "bottom_left", "bottom_right"][
                int(rng.integers(4))
            ]
            spec["size"] = round(float(rng.uniform(0.1, 0.18)), 3)
            spec["letter"] = chr(ord("A") + int(rng.integers(26)))
            spec["colour"] = colour
        else:  # flower_crown
            spec["flowers"] = int(rng.integers(5, 9))
            spec["colour"] = colour
        out[i] = spec
    return out


def _overlay_text(frame: np.ndarray, spec: dict) -> None:
    H, W = frame.shape[:2]
    scale = max(0.25, W / 640.0)
    thick = max(1, int(round(W / 320.0)))
    (tw, th), base = cv2.getTextSize(spec["text"], cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    y = th + max(2, H // 40) if spec["position"] == "top" else H - base - max(2, H // 40)
    x = max(1, (W - tw) // 2)
    cv2.rectangle(frame, (x - 3, y - th - 3), (x + tw + 3, y + base + 1), (20, 20, 20), -1)
    cv2.putText(
        frame,
        spec["text"],
        (x, y),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        tuple(spec["colour"]),
        thick,
        cv2.LINE_AA,
    )


def _overlay_logo(frame: np.ndarray, spec: dict) -> None:
    H, W = frame.shape[:2]
    s = max(8, int(spec["size"] * W))
    m = max(2, W // 50)
    x = m if spec["corner"].endswith("left") else W - m - s
    y = m if spec["corner"].startswith("top") else H - m - s
    cv2.rectangle(frame, (x, y), (x + s, y + s), tuple(spec["colour"]), -1, cv2.LINE_AA)
    cv2.rectangle(frame, (x, y), (x + s, y + s), (255, 255, 255), max(1, s // 12), cv2.LINE_AA)
    scale = s / 40.0
    (tw, th), _ = cv2.getTextSize(spec["letter"], cv2.FONT_HERSHEY_DUPLEX, scale, 1)
    cv2.putText(
        frame,
        spec["letter"],
        (x + (s - tw) // 2, y + (s + th) // 2),
        cv2.FONT_HERSHEY_DUPLEX,
        scale,
        (255, 255, 255),
        max(1, s // 16),
        cv2.LINE_AA,
    )


def _overlay_crown(frame: np.ndarray, box: Sequence[float], spec: dict) -> None:
    """A ring of flowers across the top of the head, following the face box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    k = int(spec["flowers"])
    r = max(1.5, 0.06 * w)
    petal = tuple(spec["colour"])
    for j in range(k):
        t = (j + 0.5) / k
        cx = x1 + 0.05 * w + 0.9 * w * t
        cy = y1 + 0.02 * h - 0.12 * h * math.sin(math.pi * t)  # an arc over the forehead
        for q in range(5):
            ang = 2 * math.pi * q / 5 + j
            px, py = cx + r * 0.8 * math.cos(ang), cy + r * 0.8 * math.sin(ang)
            cv2.circle(
                frame, (int(px * 16), int(py * 16)), int(r * 0.7 * 16), petal, -1, cv2.LINE_AA, 4
            )
        cv2.circle(
            frame,
            (int(cx * 16), int(cy * 16)),
            int(r * 0.45 * 16),
            (250, 215, 60),
            -1,
            cv2.LINE_AA,
            4,
        )


def apply_distractor(
    frames: list[np.ndarray], fps: int, boxes: Sequence[Sequence[float]], spec: dict | None
) -> tuple[list[np.ndarray], int, list[int], int | None]:
    """``(frames, fps, source frame index per frame, crf or None)`` after ``spec``.

    ``boxes``: the face box per frame (the flower crown follows it). A new crf (reencode)
    is returned for the encoder; the other kinds change the frames.
    """
    index = list(range(len(frames)))
    if spec is None:
        return frames, fps, index, None
    kind = spec["kind"]
    if kind == "reencode":
        return frames, fps, index, int(spec["crf"])
    if kind == "frame_rate":
        new_fps = max(1, int(round(fps * float(spec["factor"]))))
        n_out = max(1, int(round(len(frames) * new_fps / fps)))
        index = [min(len(frames) - 1, int(k * fps / new_fps)) for k in range(n_out)]
        return [frames[i] for i in index], new_fps, index, None
    out = []
    for k, frame in enumerate(frames):
        f = frame.copy()
        if kind == "resize":
            H, W = f.shape[:2]
            s = float(spec["scale"])
            small = cv2.resize(
                f, (max(2, round(W * s)), max(2, round(H * s))), interpolation=cv2.INTER_AREA
            )
            f = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
        elif kind == "text":
            _overlay_text(f, spec)
        elif kind == "logo":
            _overlay_logo(f, spec)
        elif kind == "flower_crown":
            _overlay_crown(f, boxes[k], spec)
        else:  # pragma: no cover - the model refuses unknown kinds
            raise ValueError(f"unknown distractor {kind!r}")
        out.append(f)
    return out, fps, index, None
