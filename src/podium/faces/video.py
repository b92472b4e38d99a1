"""Faces from video: sample frames evenly, detect faces in batches, crop them with a margin.

The unit of output is one **record** per video, a plain ``dict`` (picklable, stored as one
compressed joblib file per video; a notebook needs no podium class to read it back):

==================  ==============================  ===============================================
key                 type                            meaning
==================  ==============================  ===============================================
``video``           str                             file name (``abcdefghij.mp4``)
``folder``          str | None                      DFDC part folder (filled in by the pipeline)
``label``           str | None                      "REAL" / "FAKE" (filled in by the pipeline)
``original``        str | None                      a FAKE's original (filled in by the pipeline)
``frames_total``    int                             frames in the video (header, else packets)
``fps``             float                           frame rate
``height, width``   int                             frame size in pixels
``sampled_indices`` int64 (k,)                      the frames that were decoded and searched
``faces_per_frame`` int64 (k,)                      faces >= ``min_confidence`` in each of them
``frame_indices``   int64 (n,)                      frame of each crop (repeats with ``keep: all``)
``crops``           uint8 (n, H, W, 3)              RGB face crops, ``H, W = crop_size``
``boxes``           float32 (n, 4)                  detected face box x1, y1, x2, y2 in full-frame
                                                    pixels, clipped to the frame, before the margin
``confidences``     float32 (n,)                    MTCNN probability of each face
``masks``           uint8 (n, H, W) | None          FAKE only: 1 where the fake crop differs from
                                                    the original's crop at the same box and frame
``mask_error``      str | None                      why a FAKE has no masks (original unreadable)
``settings``        dict                            the extraction settings used
==================  ==============================  ===============================================

Rows (``n``) run in frame order; with ``keep: largest`` there is at most one face per
sampled frame, with ``keep: all`` every face above ``min_confidence`` (largest first within a
frame). Sampled frames without a face have no row but show as 0 in ``faces_per_frame``. A
video with no face in any sampled frame raises :class:`NoFaceError`; an unreadable one
:class:`~podium.layouts.deepfake.VideoReadError`: callers turn both into bad-video report rows.

Settings are validated by :class:`ExtractionSettings` (through
:func:`check_extraction_settings`); errors name ``deepfake.extraction.<key>`` and the allowed
values. ``crop_mode`` picks the crop
(:func:`podium.faces.detect.crop_face`): ``aspect`` (podium's, the default) or
``isotropic_pad`` (the DFDC 1st place's: the box grown by ``margin``, resized on its long
side, zero-padded to the square ``crop_size``); ``thresholds`` are MTCNN's three stage
thresholds. No kedro or mlflow imports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import cv2
import numpy as np
from pydantic import BeforeValidator, Field, Strict, field_validator, model_validator

from podium.core.config import ParameterError, describe_choices
from podium.core.params import Fraction, Params, PositiveInt
from podium.faces.detect import (
    CROP_MODES,
    DEFAULT_THRESHOLDS,
    Detection,
    crop_face,
    detect_faces,
)
from podium.layouts.deepfake import probe_video, read_frames

__all__ = [
    "CROP_MODES",
    "DEFAULT_SETTINGS",
    "ExtractionSettings",
    "KEEP_CHOICES",
    "OMITTED_AT_DEFAULT",
    "NoFaceError",
    "check_extraction_settings",
    "crop_at_boxes",
    "extract_faces_from_frames",
    "extract_video",
    "manipulation_masks",
    "read_sampled_frames",
    "resolve_device",
    "sample_frame_indices",
    "setting",
    "video_record",
]

#: Parameter path of the settings in conf/base/parameters_deepfake.yml.
PARAMETER = "deepfake.extraction"
KEEP_CHOICES = ("largest", "all")

#: A crop side: an integer of at least 8 pixels.
_Side = Annotated[int, Strict(), Field(ge=8)]
#: The crops' size: one integer (square) or [height, width].
CropSize = _Side | tuple[_Side, _Side]


def _a_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return value


#: A number kept as written (an integer stays one, so the settings log and digest as they
#: read in the YAML); never ``true``/``false`` or a string.
Number = Annotated[int | float, BeforeValidator(_a_number)]


class ExtractionSettings(Params):
    """The extraction settings (``deepfake.extraction``) with podium's library defaults; the
    deepfake pipeline's block takes conf/base's (``ExtractionParams``). Errors name
    ``deepfake.extraction.<key>``."""

    block: ClassVar[str] = PARAMETER

    n_frames: PositiveInt = 16
    """Frames sampled evenly per video."""
    keep: Literal["largest", "all"] = "largest"
    """largest: one face per frame; all: every face >= min_confidence."""
    min_confidence: Fraction = 0.9
    """MTCNN probability a face must reach."""
    margin: Annotated[float, Strict(), Field(ge=0, le=5)] = 0.5
    """The crop grows the box by this fraction of its size on every side."""
    crop_mode: Literal["aspect", "isotropic_pad"] = "aspect"
    """aspect | isotropic_pad (the DFDC 1st place's; a square crop_size)."""
    crop_size: CropSize = 160
    """One integer (square) or [height, width] of the stored crops."""
    thresholds: Annotated[list[Fraction], Field(min_length=3, max_length=3)] = list(
        DEFAULT_THRESHOLDS
    )
    """MTCNN P-, R-, O-net thresholds."""
    downscale: Annotated[float, Strict(), Field(gt=0, le=1)] = 1.0
    """Detect on a copy scaled by this factor (boxes mapped back); 1 = full size."""
    batch_size: PositiveInt = 16
    """Frames per MTCNN batch."""
    device: str = "auto"
    """auto (cuda when present), cpu, cuda, cuda:<k>."""
    seek_gap: PositiveInt = 60
    """Seek (instead of decoding forward) when the next frame is this far."""
    window: PositiveInt = 16
    """Videos in flight at once; finished records are saved before more are held."""
    mask_threshold: Annotated[Number, Field(ge=0, le=255)] = 8
    """Grey levels |fake - original| (after the blur) counted as manipulated."""
    mask_blur: Annotated[float, Strict(), Field(ge=0, le=50)] = 1.0
    """Gaussian sigma (crop pixels) applied before differencing; 0 = off."""

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not (device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device)):
            choices = describe_choices(device, ["auto", "cpu", "cuda", "cuda:<k>"], "values")
            raise ValueError(f"{device!r} is not allowed; {choices}")
        return device

    @model_validator(mode="after")
    def _square_when_padded(self) -> ExtractionSettings:
        if self.crop_mode == "isotropic_pad" and not isinstance(self.crop_size, int):
            h, w = self.crop_size
            if h != w:
                raise ParameterError(
                    f"{type(self).block}.crop_size",
                    f"crop_mode isotropic_pad pads to a square: crop_size must be one integer, "
                    f"got {[h, w]}",
                )
        return self

    def crop_hw(self) -> tuple[int, int]:
        """``crop_size`` as (height, width)."""
        size = self.crop_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


#: Every extraction setting with its default (read from :class:`ExtractionSettings`).
DEFAULT_SETTINGS: dict[str, Any] = ExtractionSettings().as_dict()
#: Settings checked and returned as floats (an integer in the YAML is welcome).
_FLOATS = ("min_confidence", "margin", "downscale", "mask_threshold", "mask_blur")


#: Settings added after records were first cached: check_extraction_settings leaves them
#: out while they hold their default, so the settings digest of every configuration that
#: does not use them (and its cached records) stays what it was.
OMITTED_AT_DEFAULT = ("crop_mode", "thresholds")


class NoFaceError(ValueError):
    """No face was found in any sampled frame of a video."""


# ---------------------------------------------------------------------------- settings


def setting(settings: Mapping[str, Any], key: str) -> Any:
    """``settings[key]``, or its default for a key of :data:`OMITTED_AT_DEFAULT` that
    :func:`check_extraction_settings` left out."""
    return settings[key] if key in settings else DEFAULT_SETTINGS[key]


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; anything else unchanged."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_extraction_settings(
    settings: Mapping[str, Any] | ExtractionSettings | None = None,
) -> dict[str, Any]:
    """The settings as the extraction uses them: checked by :class:`ExtractionSettings`
    (defaults filled in for a dict; a model is taken as it is), ``crop_size`` as (height,
    width), the numbers as floats.

    The keys of :data:`OMITTED_AT_DEFAULT` (``crop_mode``, ``thresholds``) are left out
    while they hold their default, so older configurations keep their settings digest; read
    them with :func:`setting`. Raises :class:`~podium.core.params.ParametersInvalid` naming
    ``deepfake.extraction.<key>``.
    """
    if not isinstance(settings, ExtractionSettings):
        settings = ExtractionSettings.model_validate(dict(settings or {}))
    s = dict(settings)
    s["crop_size"] = settings.crop_hw()
    s["thresholds"] = [float(t) for t in settings.thresholds]
    for key in _FLOATS:
        s[key] = float(s[key])
    for key in OMITTED_AT_DEFAULT:
        if s[key] == DEFAULT_SETTINGS[key]:
            del s[key]
    return s


# ---------------------------------------------------------------------------- frames


def sample_frame_indices(n_total: int, n_frames: int) -> np.ndarray:
    """``n_frames`` frame indices spread evenly over ``0 .. n_total - 1`` (first and last
    included), int64, strictly increasing; every frame when the video is shorter."""
    n_total, n_frames = int(n_total), int(n_frames)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if n_total <= 0:
        return np.zeros(0, np.int64)
    if n_frames >= n_total:
        return np.arange(n_total, dtype=np.int64)
    if n_frames == 1:
        return np.array([(n_total - 1) // 2], np.int64)
    return np.round(np.linspace(0, n_total - 1, n_frames)).astype(np.int64)


def read_sampled_frames(
    path: Path | str, n_frames: int, seek_gap: int = 60
) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(frames (k, H, W, 3) uint8 RGB, indices (k,), probe info)`` of a video.

    Raises :class:`~podium.layouts.deepfake.VideoReadError` for a missing, truncated or corrupt
    file, including one whose header promises more frames than it holds.
    """
    from podium.layouts.deepfake import VideoReadError

    info = probe_video(path)
    indices = sample_frame_indices(info["frames"], n_frames)
    if len(indices) == 0:
        raise VideoReadError(f"{path}: the video has no frames")
    return read_frames(path, indices, seek_gap=seek_gap), indices, info


# ---------------------------------------------------------------------------- faces


def _clip_box(box: Sequence[float], width: int, height: int) -> tuple[float, ...] | None:
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return (x1, y1, x2, y2)


def _area(box: Sequence[float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def crop_at_boxes(
    frames: np.ndarray | Sequence[np.ndarray],
    boxes: np.ndarray,
    margin: float,
    crop_size: tuple[int, int],
    mode: str = "aspect",
) -> np.ndarray:
    """Crop ``frames[i]`` at ``boxes[i]`` (same margin, size and ``mode`` as the extraction):
    (n, H, W, 3).

    Used for a FAKE's original: its crops at the fake's boxes line up pixel for pixel.
    """
    h, w = crop_size
    out = np.zeros((len(boxes), h, w, 3), np.uint8)
    for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        out[i] = crop_face(frame, box, margin, size=(h, w), mode=mode)
    return out


def extract_faces_from_frames(
    frames: np.ndarray | Sequence[np.ndarray],
    indices: Sequence[int],
    settings: Mapping[str, Any] | None = None,
    *,
    checked: bool = False,
) -> dict[str, Any]:
    """Detect, choose and crop the faces of already decoded frames (see the module's schema).

    Returns the face part of a record: ``sampled_indices``, ``faces_per_frame``,
    ``frame_indices``, ``crops``, ``boxes``, ``confidences``, ``height``, ``width``. Raises
    :class:`NoFaceError` when no frame holds a face. ``checked=True`` skips re-validating
    settings that :func:`check_extraction_settings` already returned.
    """
    s = dict(settings) if checked else check_extraction_settings(settings)
    indices = np.asarray(indices, np.int64).reshape(-1)
    if len(frames) != len(indices):
        raise ValueError(f"{len(frames)} frames but {len(indices)} indices")
    if len(frames) == 0:
        raise NoFaceError("no frames to search for faces")
    height, width = frames[0].shape[:2]
    found = detect_faces(
        list(frames),
        device=resolve_device(s["device"]),
        batch_size=s["batch_size"],
        downscale=s["downscale"],
        min_confidence=s["min_confidence"],
        thresholds=setting(s, "thresholds"),
    )
    rows: list[tuple[int, int, Detection, tuple[float, ...]]] = []
    faces_per_frame = np.zeros(len(indices), np.int64)
    for k, detections in enumerate(found):
        clipped = [(d, _clip_box(d.box, width, height)) for d in detections]
        clipped = sorted(
            ((d, b) for d, b in clipped if b is not None), key=lambda db: -_area(db[1])
        )
        faces_per_frame[k] = len(clipped)
        if s["keep"] == "largest":
            clipped = clipped[:1]
        rows.extend((k, int(indices[k]), d, b) for d, b in clipped)
    if not rows:
        raise NoFaceError(
            f"no face with confidence >= {s['min_confidence']} in any of the {len(indices)} "
            "sampled frames"
        )
    boxes = np.array([b for *_, b in rows], np.float32).reshape(-1, 4)
    crops = crop_at_boxes(
        [frames[k] for k, *_ in rows],
        boxes,
        s["margin"],
        s["crop_size"],
        mode=setting(s, "crop_mode"),
    )
    return {
        "height": int(height),
        "width": int(width),
        "sampled_indices": indices,
        "faces_per_frame": faces_per_frame,
        "frame_indices": np.array([i for _, i, *_ in rows], np.int64),
        "crops": crops,
        "boxes": boxes,
        "confidences": np.array([d.confidence for _, _, d, _ in rows], np.float32),
    }


def video_record(
    path: Path | str, info: dict, faces: dict, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """A record (module schema) from ``probe_video`` info and ``extract_faces_from_frames``."""
    return {
        "video": Path(path).name,
        "folder": None,
        "label": None,
        "original": None,
        "frames_total": int(info["frames"]),
        "fps": float(info["fps"]),
        **faces,
        "masks": None,
        "mask_error": None,
        "settings": {**settings, "crop_size": list(settings["crop_size"])},
    }


def extract_video(
    path: Path | str,
    settings: Mapping[str, Any] | None = None,
    *,
    checked: bool = False,
    return_frames: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], np.ndarray]:
    """The record of one video (see the module's schema; no masks, no label).

    With ``return_frames`` also the decoded sampled frames (for cropping an original at a
    fake's boxes without decoding twice). Raises ``VideoReadError`` or :class:`NoFaceError`.
    """
    s = dict(settings) if checked else check_extraction_settings(settings)
    frames, indices, info = read_sampled_frames(path, s["n_frames"], s["seek_gap"])
    record = video_record(
        path, info, extract_faces_from_frames(frames, indices, s, checked=True), s
    )
    return (record, frames) if return_frames else record


# ---------------------------------------------------------------------------- masks


def manipulation_masks(
    fake_crops: np.ndarray,
    original_crops: np.ndarray,
    threshold: float = DEFAULT_SETTINGS["mask_threshold"],
    blur: float = DEFAULT_SETTINGS["mask_blur"],
) -> np.ndarray:
    """1 where a fake crop differs from its original's crop, else 0: uint8 (n, H, W).

    The difference is the largest absolute difference over the RGB channels, after an
    optional Gaussian blur of sigma ``blur`` pixels that evens out compression noise (the
    fake and its original are encoded separately). Pixels above ``threshold`` grey levels
    count as manipulated.
    """
    fake = np.asarray(fake_crops)
    orig = np.asarray(original_crops)
    if fake.shape != orig.shape or fake.ndim != 4:
        raise ValueError(
            f"fake and original crops must both be (n, H, W, 3), got {fake.shape} and {orig.shape}"
        )
    masks = np.zeros(fake.shape[:3], np.uint8)
    for i in range(len(fake)):
        a, b = fake[i].astype(np.float32), orig[i].astype(np.float32)
        if blur > 0:
            a = cv2.GaussianBlur(a, (0, 0), blur)
            b = cv2.GaussianBlur(b, (0, 0), blur)
        masks[i] = (np.abs(a - b).max(axis=-1) > threshold).astype(np.uint8)
    return masks
