"""A small, seeded, realistic sample of the Deepfake Detection Challenge (DFDC) data.

Nobody can download DFDC (470 GB) on a fresh machine, so podium draws a sample in DFDC's
own on-disk layout and the same loaders (:mod:`podium.layouts.deepfake`) read either:

```
dfdc_train_part_<k>/metadata.json   {"<name>.mp4": {"label": "REAL"|"FAKE", "split": "train",
                                                    "original": "<name>.mp4" | null}}
dfdc_train_part_<k>/<name>.mp4      H.264 (libx264, yuv420p) videos, names: 10 lowercase letters
dfdc_train_part_<k>/_truth.json     ground truth sidecar (see below)
test_videos/<name>.mp4              held-out videos (other actors)
test_videos/_truth.json             ground truth sidecar of the test videos
test_labels.csv                     filename,label with 1 = FAKE, 0 = REAL (public test labels)
```

Content: each video shows one actor (a procedurally drawn person, see
:mod:`podium.sample_data.faces`) over a textured background that varies per video, moving
over time (translation, scale, small in-plane rotation, talking mouth) under drifting
light. Actors recur across videos, mostly within one part folder; a share of them
(``cross_folder_actor_share``) also appears in the next part folder, as in DFDC, so that a
split by folder and a split by person differ. Each REAL original has ``fakes_per_real``
FAKEs, each made by one manipulation family drawn per fake (``families``: {family: share},
see :mod:`podium.sample_data.manipulations`), as DFDC's fakes came from several methods:
``face_swap`` (a low-resolution autoencoder swap: the inner face replaced by another
actor's, rendered at the same pose, resampled, blended with a feathered mask, colour
mismatch, seams, flicker), ``autoencoder_256`` (a sharper swap with the decoder's smoothed
texture and faint grid), ``morphable_mask`` (a fitted, hard-edged paste that wobbles),
``talking_head`` (the target's whole head re-rendered from one source frame, its texture
static), ``poisson_blend`` (a gradient-domain blend, no colour seam) and ``gan_face`` (a
generated face with an upsampling checkerboard). Their artifacts' strength follows
``difficulty``. Outside its region (the face; the head for ``talking_head``) a fake is
pixel-identical to its original before encoding (same camera noise), and fakes use the same
codec settings as reals, so compression is no shortcut. ``families: {face_swap: 1.0}`` gives
the files of the single-method generator, byte for byte: the family and distractor draws
have random streams of their own.

Test videos (REAL and FAKE alike, never training videos) may carry a DFDC-style distractor
(``test_distractors``: a share of them re-encoded at another crf, resized down and up,
played at another frame rate over the same duration, or overlaid with a caption, a logo or
a flower crown that follows the head).

``_truth.json`` (per part folder and for ``test_videos``) holds, per video, the actor id,
for fakes the swapped-in actor id (null for ``talking_head``: the target's own identity)
and the manipulation ``family`` (null for reals), for test videos the ``distractor`` (null
or ``{"kind": ..., its settings}``; a frame-rate change rewrites ``frames``, ``fps`` and
the boxes), and the per-frame face boxes (x1, y1, x2, y2: forehead to chin, ear to ear, in
pixels), plus each actor's appearance. It exists for diagnostics, plots and tests only: no
training or inference node may read it (the real DFDC has no such file, and reading it
would leak the answer). ``metadata.json`` stays DFDC's: it never names the family.

No kedro or mlflow imports.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any, ClassVar, Literal

import av
import cv2
import numpy as np
from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from podium.core.config import ParameterError, describe_choices
from podium.core.params import (
    Fraction,
    Int,
    NonNegativeFloat,
    NonNegativeInt,
    Params,
    PositiveFloat,
    PositiveInt,
)
from podium.sample_data.faces import (
    Appearance,
    random_appearance,
    render_face,
    render_shoulders,
)
from podium.sample_data.manipulations import (
    DISTRACTORS,
    FAMILIES,
    OWN_IDENTITY,
    apply_distractor,
    draw_distractors,
    draw_families,
    render_family,
)
from podium.sample_data.manipulations import finish as _finish
from podium.sample_data.params import span

__all__ = [
    "TRUTH_FILE",
    "DeepfakeSampleParams",
    "DistractorParams",
    "VideoFormat",
    "contact_sheet",
    "encode_mp4",
    "generate_deepfake_sample",
]

#: Name of the ground-truth sidecar in each folder (never read by training nodes).
TRUTH_FILE = "_truth.json"
TEST_LABELS_FILE = "test_labels.csv"
TEST_FOLDER = "test_videos"

_BACKGROUNDS = ("gradient", "room", "blobs", "stripes")
_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


# ---------------------------------------------------------------------------- parameters


def _even(pixels: int) -> int:
    if pixels % 2:
        raise ValueError(f"must be even (H.264 yuv420p halves the chroma), got {pixels}")
    return pixels


#: libx264's presets, fastest first.
X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                     "slower", "veryslow", "placebo"]  # fmt: skip

#: A frame side in pixels: even and at least 64.
Side = Annotated[int, Field(strict=True, ge=64), AfterValidator(_even)]


def _at_least_one_frame(seconds: float, info: ValidationInfo) -> float:
    fps = info.data.get("fps")  # absent when fps itself was refused
    if fps is not None and round(fps * seconds) < 1:
        raise ValueError(f"fps * seconds must give at least one frame, got {fps} x {seconds}")
    return seconds


class VideoFormat(Params):
    """``full_size``: the format of the extra part folder of full-size videos."""

    width: Side = 1920
    height: Side = 1080
    fps: PositiveInt = 30
    seconds: PositiveFloat = 10.0

    _frames = field_validator("seconds")(_at_least_one_frame)


#: DFDC-like mix of manipulation families (see conf/base/parameters_sample_data.yml).
DEFAULT_FAMILIES = {
    "face_swap": 0.3,
    "autoencoder_256": 0.2,
    "morphable_mask": 0.15,
    "talking_head": 0.15,
    "poisson_blend": 0.1,
    "gan_face": 0.1,
}
#: Relative weights of the test-video distractor kinds.
DEFAULT_DISTRACTOR_KINDS = {
    "reencode": 0.2,
    "resize": 0.2,
    "frame_rate": 0.15,
    "text": 0.15,
    "logo": 0.15,
    "flower_crown": 0.15,
}


def _check_shares(shares: dict[str, float], allowed: tuple[str, ...], path: str, noun: str):
    """Known names only, shares summing to 1 (errors name ``<path>.<name>``)."""
    for name in shares:
        if name not in allowed:
            raise ParameterError(
                f"{path}.{name}",
                f"unknown {noun}; {describe_choices(name, list(allowed), noun + ' names')}",
            )
    total = float(sum(shares.values()))
    if abs(total - 1.0) > 1e-6:
        listed = ", ".join(f"{k}: {v:g}" for k, v in shares.items()) or "nothing"
        raise ParameterError(
            path,
            f"the shares must sum to 1, got {total:.6g} ({listed}); scale them so they add up "
            f"to 1. An override (conf/local, --params) merges into conf/base's mapping: give "
            f"share 0 to each {noun} you do not want rather than leaving it out",
        )
    return shares


class DistractorParams(Params):
    """``test_distractors``: DFDC-style augmentations of some test videos (never training
    videos), each recorded in test_videos/_truth.json."""

    share: Fraction = 0.3
    """Share of test videos (REAL and FAKE alike) given one distractor (exactly
    round(share * n_test_videos) of them)."""
    kinds: dict[str, NonNegativeFloat] = Field(
        default_factory=lambda: dict(DEFAULT_DISTRACTOR_KINDS)
    )
    """{kind: share} among those videos, summing to 1: reencode (another crf), resize (down
    then up to the same size), frame_rate (another fps, same duration: frames dropped or
    duplicated), text (a caption), logo (a box in a corner), flower_crown (flowers over the
    head); a kind left out has share 0."""
    reencode_crf: span(0, 51, int) = (32, 40)
    """reencode: libx264 crf range [low, high] of the re-encoded video."""
    resize_scale: span(0.1, 1.0) = (0.3, 0.6)
    """resize: range [low, high] of the intermediate size (fraction of the frame)."""
    frame_rate_factors: Annotated[list[PositiveFloat], Field(min_length=1)] = [0.5, 2.0]
    """frame_rate: new fps = fps x one of these (rounded, at least 1)."""

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: dict[str, float]) -> dict[str, float]:
        return _check_shares(
            kinds, DISTRACTORS, "sample_data.deepfake.test_distractors.kinds", "kind"
        )


class DeepfakeSampleParams(Params):
    """``sample_data.deepfake``: every parameter of :func:`generate_deepfake_sample`; a key left
    out takes conf/base's value. A new generator setting is one more field here, with its
    default, its range and a line saying what it does."""

    block: ClassVar[str] = "sample_data.deepfake"

    # --- layout and size
    n_parts: PositiveInt = 2
    """Number of dfdc_train_part_<k> folders."""
    first_part: NonNegativeInt = 0
    """k of the first folder (DFDC numbers its parts 0..49)."""
    reals_per_part: PositiveInt = 5
    """REAL originals per part folder."""
    fakes_per_real: NonNegativeInt = 4
    """FAKEs made from each original (DFDC: about 4-5 per real)."""
    actors_per_part: PositiveInt = 3
    """Actors whose home is a given part folder."""
    cross_folder_actor_share: Fraction = 0.34
    """Share of a part's actors that also act in the next part."""
    n_test_videos: NonNegativeInt = 10
    """Videos in test_videos/ (actors never seen in training)."""
    test_fake_share: Fraction = 0.5
    """Share of FAKE among the test videos."""
    test_actors: NonNegativeInt = 3
    """Actors of the test set (at least one when there are test videos)."""
    # --- video format
    width: Side = 320
    """Frame width in pixels (even, >= 64)."""
    height: Side = 240
    """Frame height in pixels (even, >= 64)."""
    fps: PositiveInt = 15
    """Frames per second."""
    seconds: PositiveFloat = 2.0
    """Duration; frames = round(fps * seconds), at least one."""
    crf: Annotated[Int, Field(ge=0, le=51)] = 23
    """libx264 constant rate factor (same for REAL and FAKE)."""
    preset: X264Preset = "veryfast"
    """libx264 preset."""
    encoder_threads: NonNegativeInt = 1
    """Fixed thread count: same seed -> identical bytes (0: x264 chooses, not repeatable)."""
    # --- scene and motion
    face_height: span(0.05, 0.8) = (0.36, 0.5)
    """Face box height as a fraction of the frame height: [low, high] range."""
    max_shift: NonNegativeFloat = 0.07
    """Translation amplitude as a fraction of the frame size."""
    scale_jitter: NonNegativeFloat = 0.08
    """Relative face-size oscillation."""
    max_roll_deg: NonNegativeFloat = 8.0
    """In-plane head rotation amplitude (degrees)."""
    light_drift: NonNegativeFloat = 0.15
    """Relative lighting change over a video."""
    noise_sigma: NonNegativeFloat = 2.0
    """Camera noise (grey levels, std)."""
    # --- DFDC's own format, for stress runs (decode, seek and detect at real size)
    full_size_reals: NonNegativeInt = 0
    """REAL originals (each with fakes_per_real FAKEs) in one more part folder."""
    full_size: VideoFormat = VideoFormat()
    """Their format."""
    # --- fakes
    difficulty: Fraction = 0.5
    """0 = subtle, hard to see ... 1 = obvious, easy artifacts."""
    feather: NonNegativeFloat = 0.05
    """Blend-mask feather (Gaussian sigma / face height) at difficulty 0."""
    families: dict[str, NonNegativeFloat] = Field(default_factory=lambda: dict(DEFAULT_FAMILIES))
    """{family: share} of the manipulation methods of the fakes, summing to 1 (a family left
    out has share 0, but conf/local and --params merge into conf/base's mapping, so an
    override gives unwanted families 0): face_swap (low-resolution autoencoder swap), autoencoder_256 (sharp
    swap, decoder texture), morphable_mask (MM/NN: hard-edged fitted paste, wobble),
    talking_head (NTH: the whole head re-rendered from one frame), poisson_blend (FSGAN-like
    gradient-domain blend), gan_face (generated face, upsampling checkerboard). Drawn per
    fake from the seed; recorded in _truth.json, never in metadata.json."""
    test_distractors: DistractorParams = DistractorParams()
    """Augmentations of test videos, as DFDC's test set had."""

    _frames = field_validator("seconds")(_at_least_one_frame)

    @field_validator("families")
    @classmethod
    def _known_families(cls, families: dict[str, float]) -> dict[str, float]:
        return _check_shares(families, FAMILIES, f"{cls.block}.families", "family")

    @field_validator("test_actors")
    @classmethod
    def _cast_for_the_test_videos(cls, test_actors: int, info: ValidationInfo) -> int:
        if test_actors < 1 and info.data.get("n_test_videos", 0) > 0:
            raise ValueError(f"must be >= 1 when n_test_videos > 0, got {test_actors}")
        return test_actors


# ---------------------------------------------------------------------------- encoding


def encode_mp4(
    frames, fps: int, crf: int = 23, preset: str = "veryfast", threads: int = 1
) -> bytes:
    """Encode RGB uint8 frames to H.264/yuv420p mp4 bytes with PyAV.

    Same frames -> same bytes (mbtree off, threads pinned; checked over repeated encodes).
    ``threads`` 0 lets x264 choose, which is faster but not checked for reproducibility.
    """
    frames = list(frames)
    h, w = frames[0].shape[:2]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        # Reproducibility: with x264's macroblock-tree rate control on, identical frames
        # gave different bytes from one encode to the next in the same process (PyAV 18 /
        # x264 core 165, for any thread setting); mbtree=0 made every encode repeatable.
        stream.options = {
            "crf": str(int(crf)),
            "preset": str(preset),
            "x264-params": f"threads={int(threads)}:lookahead-threads=1:mbtree=0",
        }
        stream.codec_context.thread_count = int(threads)
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


# ---------------------------------------------------------------------------- scene


def _background(rng: np.random.Generator, w: int, h: int, kind: str) -> np.ndarray:
    c1 = rng.uniform(40, 220, 3)
    c2 = rng.uniform(40, 220, 3)
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = ((xx / w - 0.5) * math.cos(ang) + (yy / h - 0.5) * math.sin(ang) + 0.5).clip(0, 1)
    img = c1[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]
    low = cv2.resize(
        rng.normal(0, 1, (4, 5)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    img += low[..., None] * rng.uniform(6, 18)
    if kind == "room":
        for _ in range(int(rng.integers(2, 5))):  # doors, windows, frames, shelves
            x0, y0 = int(rng.uniform(-0.1, 0.9) * w), int(rng.uniform(-0.1, 0.7) * h)
            bw, bh = int(rng.uniform(0.1, 0.4) * w), int(rng.uniform(0.1, 0.6) * h)
            col = rng.uniform(30, 230, 3)
            cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), col.tolist(), -1, cv2.LINE_AA)
            cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), (col * 0.6).tolist(), 2, cv2.LINE_AA)
        floor = int(rng.uniform(0.7, 0.9) * h)
        img[floor:] = img[floor:] * 0.7
    elif kind == "blobs":
        tex = cv2.resize(
            rng.normal(0, 1, (12, 16)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
        )
        img += tex[..., None] * rng.uniform(10, 30) * rng.uniform(0.5, 1.0, 3)
        for _ in range(int(rng.integers(3, 8))):
            c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            r = int(rng.uniform(0.03, 0.15) * w)
            cv2.circle(img, c, r, rng.uniform(30, 230, 3).tolist(), -1, cv2.LINE_AA)
    elif kind == "stripes":
        period = rng.uniform(8, 30)
        s = np.sin(2 * np.pi * (xx * math.cos(ang * 0.2) + yy * math.sin(ang * 0.2)) / period)
        img += (s[..., None] * rng.uniform(8, 22)) * rng.uniform(0.5, 1.0, 3)
    fine = rng.normal(0, rng.uniform(1.5, 5.0), (h, w)).astype(np.float32)
    img += cv2.GaussianBlur(fine, (0, 0), 0.8)[..., None]
    return np.clip(img, 0, 255).astype(np.float32)


@dataclass
class _Pose:
    cx: float
    cy: float
    fh: float
    angle: float
    light: float
    mouth: float


def _trajectory(rng: np.random.Generator, p: Mapping, n: int) -> list[_Pose]:
    W, H = int(p["width"]), int(p["height"])
    lo, hi = (float(x) for x in p["face_height"])
    fh0 = rng.uniform(lo, hi) * H
    sj = float(p["scale_jitter"])
    fh_max = fh0 * (1 + sj)
    half_w = fh_max * 0.55
    cx0 = rng.uniform(0.38, 0.62) * W
    cy0 = rng.uniform(0.42, 0.52) * H
    t = np.arange(n) / float(p["fps"])

    def wave(amp: float) -> np.ndarray:
        f1, f2 = rng.uniform(0.15, 0.5), rng.uniform(0.5, 1.2)
        ph1, ph2 = rng.uniform(0, 2 * np.pi, 2)
        w1 = rng.uniform(0.5, 1.0)
        return amp * (
            w1 * np.sin(2 * np.pi * f1 * t + ph1) + (1 - w1) * np.sin(2 * np.pi * f2 * t + ph2)
        )

    cx = cx0 + wave(float(p["max_shift"]) * W)
    cy = cy0 + wave(float(p["max_shift"]) * H * 0.6)
    # keep the whole face box (and a margin) inside the frame
    cx = np.clip(cx, half_w + 2, W - half_w - 2)
    cy = np.clip(cy, fh_max * 0.62 + 2, H - fh_max * 0.55 - 2)
    fh = fh0 * (1 + wave(sj))
    ang = wave(float(p["max_roll_deg"]))
    light = 1.0 + wave(float(p["light_drift"])) + rng.uniform(-0.1, 0.1)
    # talking: a bursty, smoothed random signal
    talk = np.clip(rng.normal(0.35, 0.45, n), 0, 1)
    talk = np.convolve(talk, np.ones(3) / 3.0, mode="same") * (rng.uniform() < 0.85)
    return [
        _Pose(*(float(v) for v in row)) for row in zip(cx, cy, fh, ang, light, talk, strict=True)
    ]


@dataclass
class _Original:
    name: str
    actor: str
    clean: list[np.ndarray]  # float32 frames before camera noise
    noise: list[np.ndarray]
    poses: list[_Pose]
    boxes: list[list[float]]
    background: str


def _render_real(rng, p, actor_id, appearance: Appearance, name: str, n: int) -> _Original:
    W, H = int(p["width"]), int(p["height"])
    kind = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))]
    bg = _background(rng, W, H, kind)
    poses = _trajectory(rng, p, n)
    clothing = tuple(int(x) for x in rng.uniform(20, 230, 3))
    sigma = float(p["noise_sigma"])
    clean, noise, boxes = [], [], []
    for pose in poses:
        frame = np.clip(bg * (0.75 + 0.25 * pose.light), 0, 255).astype(np.uint8)
        render_shoulders(frame, (pose.cx, pose.cy), pose.fh, clothing, pose.angle, pose.light)
        box = render_face(
            frame,
            appearance,
            (pose.cx, pose.cy),
            pose.fh,
            pose.angle,
            pose.light,
            mouth_open=pose.mouth,
        )
        clean.append(frame)
        noise.append(rng.normal(0, sigma, frame.shape).astype(np.float32) if sigma > 0 else None)
        boxes.append([round(float(x), 2) for x in box])
    return _Original(name, actor_id, clean, noise, poses, boxes, kind)


# ---------------------------------------------------------------------------- cast


def _names(rng: np.random.Generator, k: int, taken: set[str]) -> list[str]:
    out = []
    while len(out) < k:
        name = "".join(rng.choice(_LETTERS, 10)) + ".mp4"
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def _similarity(a: Appearance, b: Appearance) -> float:
    """DFDC paired actors of similar look: a weight that favours close skin tone, gender, age."""
    tone = float(np.abs(np.subtract(a.skin_rgb, b.skin_rgb)).mean()) / 30.0
    return math.exp(-(tone + 0.8 * (a.gender != b.gender) + abs(a.age - b.age) / 40.0))


def _pick_donors(rng, cast: dict, target: str, donors: list[str], count: int) -> list[str]:
    weights = np.array([_similarity(cast[target], cast[d]) for d in donors]) + 1e-3
    out: list[str] = []
    while len(out) < count:  # without replacement in rounds
        k = min(len(donors), count - len(out))
        idx = rng.choice(len(donors), size=k, replace=False, p=weights / weights.sum())
        out.extend(donors[i] for i in idx)
    return out


def _rosters(p: Mapping) -> tuple[list[str], list[list[str]]]:
    """Actor ids and, per part, the roster of actors filming there (home + guests)."""
    n_parts, k = int(p["n_parts"]), int(p["actors_per_part"])
    homes = [[f"actor_{i * k + j:03d}" for j in range(k)] for i in range(n_parts)]
    n_guest = int(round(float(p["cross_folder_actor_share"]) * k)) if n_parts > 1 else 0
    rosters = []
    for i in range(n_parts):
        prev = homes[(i - 1) % n_parts]
        rosters.append(homes[i] + prev[k - n_guest :] if n_guest else list(homes[i]))
    return [a for h in homes for a in h], rosters


def generate_deepfake_sample(params: DeepfakeSampleParams, seed: int) -> dict[str, bytes]:
    """Generate the DFDC sample: relative path -> file contents (write under data/01_raw/deepfake/).

    ``params``: a :class:`DeepfakeSampleParams` or a plain dict of some of its keys (the rest
    take their defaults; an unknown key or a value out of range raises
    :class:`~podium.core.params.ParametersInvalid` naming ``sample_data.deepfake.<key>``). The
    same ``seed`` gives byte-identical files; another seed gives another sample.
    """
    p = DeepfakeSampleParams.of(params)
    n = int(round(float(p["fps"]) * float(p["seconds"])))
    root = np.random.SeedSequence(int(seed))
    cast_ss, name_ss, video_ss = root.spawn(3)
    cast_rng, name_rng = np.random.default_rng(cast_ss), np.random.default_rng(name_ss)
    # families and distractors draw from streams of their own, spawned after the three
    # above: with a single family and no distractors the files are what they always were
    family_ss, distractor_ss = root.spawn(2)
    family_rng = np.random.default_rng(family_ss)
    distractor_rng = np.random.default_rng(distractor_ss)
    families = dict(p["families"])

    def video_rng() -> np.random.Generator:  # one independent stream per original video
        return np.random.default_rng(video_ss.spawn(1)[0])

    enc = {
        "fps": int(p["fps"]),
        "crf": int(p["crf"]),
        "preset": str(p["preset"]),
        "threads": int(p["encoder_threads"]),
    }

    actor_ids, rosters = _rosters(p)
    n_test_actors = int(p["test_actors"]) if int(p["n_test_videos"]) > 0 else 0
    test_ids = [f"actor_{len(actor_ids) + j:03d}" for j in range(n_test_actors)]
    cast = {a: random_appearance(cast_rng) for a in actor_ids + test_ids}
    taken: set[str] = set()
    files: dict[str, bytes] = {}

    def make_fakes(
        rng, orig: _Original, pool: list[str], count: int, q: Mapping = p
    ) -> list[tuple[str, str | None, str, list]]:
        donors = [a for a in pool if a != orig.actor] or [a for a in cast if a != orig.actor]
        chosen = _pick_donors(rng, cast, orig.actor, donors, count)
        names = _names(name_rng, count, taken)
        kinds = draw_families(family_rng, families, count)
        return [
            (
                nm,
                None if family in OWN_IDENTITY else donor,
                family,
                render_family(family, rng, q, orig, cast[orig.actor], cast[donor]),
            )
            for nm, donor, family in zip(names, chosen, kinds, strict=True)
        ]

    def truth_entry(
        label, orig: _Original, donor=None, original=None, q: Mapping = p, **extra: Any
    ) -> dict:
        return {
            "label": label,
            "actor": orig.actor,
            "swap_actor": donor,
            "original": original,
            "frames": len(orig.boxes),
            "fps": int(q["fps"]),
            "width": int(q["width"]),
            "height": int(q["height"]),
            "background": orig.background,
            "difficulty": float(p["difficulty"]) if label == "FAKE" else None,
            "boxes": orig.boxes,
            **extra,
        }

    def truth_doc(entries: dict, actors: list[str]) -> bytes:
        doc = {
            "_note": (
                "Ground truth of the generated DFDC sample for diagnostics, plots and tests only. "
                "No training or inference node may read this file (real DFDC has none)."
            ),
            "actors": {a: asdict(cast[a]) for a in sorted(set(actors))},
            "videos": entries,
        }
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()

    def write_part(folder: str, roster: list[str], order: list[str], q: Mapping) -> None:
        """One dfdc_train_part folder: ``order`` gives each original's actor."""
        frames_per_video = int(round(float(q["fps"]) * float(q["seconds"])))
        q_enc = {**enc, "fps": int(q["fps"])}
        metadata, truth = {}, {}
        for actor in order:
            rng = video_rng()
            (name,) = _names(name_rng, 1, taken)
            orig = _render_real(rng, q, actor, cast[actor], name, frames_per_video)
            files[f"{folder}/{name}"] = encode_mp4(
                [_finish(f, z) for f, z in zip(orig.clean, orig.noise, strict=True)], **q_enc
            )
            metadata[name] = {"label": "REAL", "split": "train", "original": None}
            truth[name] = truth_entry("REAL", orig, q=q, family=None)
            count = int(q["fakes_per_real"])
            for fname, donor, family, frames in make_fakes(rng, orig, roster, count, q):
                files[f"{folder}/{fname}"] = encode_mp4(frames, **q_enc)
                metadata[fname] = {"label": "FAKE", "split": "train", "original": name}
                truth[fname] = truth_entry("FAKE", orig, donor, name, q=q, family=family)
        files[f"{folder}/metadata.json"] = (
            json.dumps(metadata, indent=1, sort_keys=True) + "\n"
        ).encode()
        files[f"{folder}/{TRUTH_FILE}"] = truth_doc(truth, roster)

    for i in range(int(p["n_parts"])):
        folder = f"dfdc_train_part_{int(p['first_part']) + i}"
        roster = rosters[i]
        # guests (actors shared with another part) film first, so that they do appear
        k_home = int(p["actors_per_part"])
        cycle = roster[k_home:] + [str(a) for a in cast_rng.permutation(roster[:k_home])]
        order = [cycle[j % len(cycle)] for j in range(int(p["reals_per_part"]))]
        order = [str(a) for a in cast_rng.permutation(order)]
        write_part(folder, roster, order, p)

    if int(p["full_size_reals"]) > 0:  # the first part's actors again, at DFDC's own size
        folder = f"dfdc_train_part_{int(p['first_part']) + int(p['n_parts'])}"
        order = [rosters[0][j % len(rosters[0])] for j in range(int(p["full_size_reals"]))]
        write_part(folder, rosters[0], order, p.model_copy(update=dict(p.full_size)))

    n_test = int(p["n_test_videos"])
    if n_test > 0:
        n_fake = int(round(n_test * float(p["test_fake_share"])))
        n_real = n_test - n_fake
        n_orig = max(n_real, 1 if n_fake else 0)
        truth, labels = {}, []
        origs = []
        # one distractor (or none) per written test video, reals first, in writing order
        distractors = iter(draw_distractors(distractor_rng, n_test, p["test_distractors"]))

        def write_test(name: str, frames: list, orig: _Original, entry: dict) -> None:
            spec = next(distractors)
            frames, fps, index, crf = apply_distractor(frames, enc["fps"], orig.boxes, spec)
            files[f"{TEST_FOLDER}/{name}"] = encode_mp4(
                frames, **{**enc, "fps": fps, "crf": enc["crf"] if crf is None else crf}
            )
            if spec is not None and spec["kind"] == "frame_rate":
                entry = {**entry, "fps": fps, "frames": len(index)}
                entry["boxes"] = [orig.boxes[i] for i in index]
            truth[name] = {**entry, "distractor": spec}

        for j in range(n_orig):
            rng = video_rng()
            actor = test_ids[j % len(test_ids)]
            (name,) = _names(name_rng, 1, taken)
            orig = _render_real(rng, p, actor, cast[actor], name, n)
            origs.append((rng, orig))
            if j < n_real:  # a hidden original (only when every test video is fake) is not written
                frames = [_finish(f, z) for f, z in zip(orig.clean, orig.noise, strict=True)]
                write_test(name, frames, orig, truth_entry("REAL", orig, family=None))
                labels.append((name, 0))
        per = (
            [n_fake // n_orig + (1 if j < n_fake % n_orig else 0) for j in range(n_orig)]
            if n_orig
            else []
        )
        for (rng, orig), count in zip(origs, per, strict=True):
            for fname, donor, family, frames in make_fakes(rng, orig, test_ids, count):
                original = orig.name if orig.name in truth else None
                entry = truth_entry("FAKE", orig, donor, original, family=family)
                write_test(fname, frames, orig, entry)
                labels.append((fname, 1))
        files[f"{TEST_FOLDER}/{TRUTH_FILE}"] = truth_doc(truth, test_ids)
        csv = "filename,label\n" + "".join(f"{nm},{lab}\n" for nm, lab in sorted(labels))
        files[TEST_LABELS_FILE] = csv.encode()
    return dict(sorted(files.items()))


# ---------------------------------------------------------------------------- preview


def _decode_one(data: bytes, index: int) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        for k, frame in enumerate(container.decode(video=0)):
            if k == index:
                return frame.to_ndarray(format="rgb24")
    raise ValueError(f"video has fewer than {index + 1} frames")


def contact_sheet(files: Mapping[str, bytes], n: int = 8):
    """A matplotlib Figure (Agg) of ``n`` frames from REAL and FAKE videos of a sample.

    Each tile shows the middle frame with its label, the fake's manipulation family, actor
    ids, a test video's distractor and the truth face box. Pairs an original with one of
    its fakes where possible, one family after another, so a sheet of 2 x (number of
    families) tiles shows every family present.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    picks: list[tuple[str, dict]] = []
    truths = {k: json.loads(v) for k, v in sorted(files.items()) if k.endswith(TRUTH_FILE)}
    reals, fakes = [], {}
    for tpath, doc in truths.items():
        folder = tpath.rsplit("/", 1)[0] if "/" in tpath else ""
        for name, entry in sorted(doc["videos"].items()):
            path = f"{folder}/{name}" if folder else name
            if path not in files:
                continue
            if entry["label"] == "REAL":
                reals.append((path, entry))
            else:
                fakes.setdefault(f"{folder}/{entry['original']}", []).append((path, entry))
    shown: set = set()

    def take(item: tuple[str, dict]) -> None:
        picks.append(item)
        shown.add(item[1].get("family"))

    real_at = dict(reals)
    for family in FAMILIES:  # first one original and fake per family
        for orig_path, own in fakes.items():
            hit = next((f for f in own if f[1].get("family") == family), None)
            if hit is None or len(picks) >= n:
                continue
            if orig_path in real_at and (orig_path, real_at[orig_path]) not in picks:
                if len(picks) < n - 1:
                    take((orig_path, real_at[orig_path]))
            take(hit)
            break
    for path, entry in reals:
        if len(picks) >= n:
            break
        if (path, entry) in picks:
            continue
        take((path, entry))
        own = fakes.get(path, [])
        own = [f for f in own if f not in picks]
        if own and len(picks) < n:
            take(next((f for f in own if f[1].get("family") not in shown), own[0]))
    rest = [item for lst in fakes.values() for item in lst]
    for unseen_first in (True, False):
        for item in rest:
            if len(picks) < n and item not in picks:
                if not unseen_first or item[1].get("family") not in shown:
                    take(item)
    cols = min(4, max(1, len(picks)))
    rows = max(1, math.ceil(len(picks) / cols))
    fig = Figure(figsize=(3.2 * cols, 2.7 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, (path, entry) in enumerate(picks):
        ax = fig.add_subplot(rows, cols, k + 1)
        idx = int(entry["frames"]) // 2
        ax.imshow(_decode_one(files[path], idx))
        x1, y1, x2, y2 = entry["boxes"][idx]
        colour = "lime" if entry["label"] == "REAL" else "red"
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.2)
        )
        if entry["label"] == "REAL":
            what = f"REAL  {entry['actor']}"
        else:
            donor = entry["swap_actor"] or "itself"
            what = f"FAKE {entry.get('family') or ''}  {entry['actor']} <- {donor}"
        extra = entry.get("distractor")
        if extra:
            what += f"  [{extra['kind']}]"
        ax.set_title(f"{what}\n{path}", fontsize=7)
        ax.axis("off")
    if not picks:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no videos with truth found", ha="center")
        ax.axis("off")
    fig.tight_layout()
    return fig


if __name__ == "__main__":  # pragma: no cover - manual timing
    t0 = time.perf_counter()
    out = generate_deepfake_sample({}, 0)
    print(
        f"{len(out)} files, {sum(map(len, out.values())) / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s"
    )
