"""Readers of the Deepfake Detection Challenge (DFDC) on-disk layout.

The same functions read the real DFDC download and podium's generated sample
(:mod:`podium.sample_data.deepfake`)::

    <root>/dfdc_train_part_<k>/metadata.json   {"<name>.mp4": {"label": "REAL"|"FAKE",
                                                  "split": "train", "original": "<name>.mp4"|null}}
    <root>/dfdc_train_part_<k>/<name>.mp4
    <root>/test_videos/<name>.mp4               (optional)
    <root>/test_labels.csv                      (optional) filename,label with 1 = FAKE, 0 = REAL

:func:`index_deepfake` returns a :class:`DeepfakeIndex` with two tables:

* ``videos``: one row per listed video; columns ``video`` (file name, unique across the
  dataset), ``folder`` (part folder name), ``path`` (absolute path, str), ``label``
  ("REAL"/"FAKE"), ``original`` (the original's file name for FAKE, None for REAL) and
  ``target`` (1 FAKE, 0 REAL). Rows are sorted by part number, then video name.
* ``problems``: items that are not fatal, one row each with ``folder``, ``video``, ``path``
  and ``problem``; today an mp4 present on disk with no ``metadata.json`` entry
  (problem ``"unlisted"``). The pipeline logs them to a report instead of dropping them
  silently.

``DeepfakeIndex`` unpacks like a pair: ``videos, problems = index_deepfake(root)``.

Broken metadata stops the run with a :class:`DeepfakeLayoutError` (a ``ValueError``) naming the
file, the entry and the fix: malformed JSON, a missing ``label``, an unknown label, a FAKE
without an ``original`` or whose original is not in the index, a listed file that does not
exist, a video name listed in two folders. All such problems are collected and reported
together.

Video decoding uses PyAV: :func:`probe_video` reads the header, :func:`read_frames` decodes
selected frames, seeking to the nearest keyframe when the next wanted frame is far ahead.
A missing, truncated or corrupt mp4 raises :class:`VideoReadError` naming the file.

Sidecar files whose name starts with ``_`` (the sample's ``_truth.json``) are never read here.
No kedro or mlflow imports.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd

__all__ = [
    "DeepfakeIndex",
    "DeepfakeLayoutError",
    "LABELS",
    "VideoReadError",
    "index_deepfake",
    "index_test_videos",
    "probe_video",
    "read_frames",
]

#: Label strings of DFDC's metadata.json and their integer targets.
LABELS = {"REAL": 0, "FAKE": 1}
PART_GLOB = "dfdc_train_part_*"
METADATA = "metadata.json"
VIDEO_COLUMNS = ["video", "folder", "path", "label", "original", "target"]
PROBLEM_COLUMNS = ["folder", "video", "path", "problem"]
_MAX_LISTED = 25


class DeepfakeLayoutError(ValueError):
    """The DFDC folder layout or its metadata is malformed (message: file, entry, fix)."""


class VideoReadError(OSError):
    """A video cannot be opened or decoded (message names the file)."""


@dataclass(frozen=True)
class DeepfakeIndex:
    """Result of :func:`index_deepfake`: ``videos`` and ``problems`` tables (see module doc)."""

    videos: pd.DataFrame
    problems: pd.DataFrame

    def __iter__(self) -> Iterator[pd.DataFrame]:
        yield self.videos
        yield self.problems


def _part_key(path: Path) -> tuple:
    m = re.search(r"(\d+)$", path.name)
    return (int(m.group(1)) if m else -1, path.name)


def _raise_all(errors: list[str], root: Path) -> None:
    if not errors:
        return
    shown = errors[:_MAX_LISTED]
    more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
    raise DeepfakeLayoutError(
        f"DFDC layout under {root} has {len(errors)} problem(s):\n  " + "\n  ".join(shown) + more
    )


def _load_metadata(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeepfakeLayoutError(f"{path}: cannot be read ({exc}); fix: restore the file") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeepfakeLayoutError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); "
            "fix: restore the file from the DFDC archive or repair the JSON"
        ) from exc
    if not isinstance(doc, dict):
        raise DeepfakeLayoutError(
            f"{path}: expected a JSON object mapping video names to entries, got "
            f"{type(doc).__name__}; fix: restore the file from the DFDC archive"
        )
    return doc


#: Where the raw DFDC data lived before its folder took the pipeline's name.
FORMER_FOLDER = "dfdc"


def index_deepfake(root: Path | str) -> DeepfakeIndex:
    """Index every ``dfdc_train_part_*/metadata.json`` under ``root`` (see module doc)."""
    root = Path(root)
    former = root.with_name(FORMER_FOLDER)
    if not root.is_dir() and root.name != FORMER_FOLDER and any(former.glob(PART_GLOB)):
        raise DeepfakeLayoutError(
            f"DFDC root {root} does not exist, but {former} holds DFDC parts: podium's raw "
            f"folder for the deepfake pipeline is now {root.name}/ (the catalog's "
            f"deepfake_raw); fix: mv {former} {root}"
        )
    if not root.is_dir():
        raise DeepfakeLayoutError(
            f"DFDC root {root} does not exist; fix: unpack the DFDC parts there or generate "
            "the sample (podium's sample_data pipeline)"
        )
    parts = sorted((p for p in root.glob(PART_GLOB) if p.is_dir()), key=_part_key)
    if not parts:
        raise DeepfakeLayoutError(
            f"no {PART_GLOB} folder under {root}; fix: unpack the DFDC parts there or generate "
            "the sample (podium's sample_data pipeline)"
        )
    rows: list[dict] = []
    problems: list[dict] = []
    errors: list[str] = []
    seen: dict[str, str] = {}
    for part in parts:
        meta_path = part / METADATA
        if not meta_path.is_file():
            errors.append(
                f"{part.name}: no {METADATA}; fix: restore it from the DFDC archive or remove "
                "the folder"
            )
            continue
        doc = _load_metadata(meta_path)
        where = f"{part.name}/{METADATA}"
        for name, entry in doc.items():
            if not isinstance(entry, dict):
                errors.append(
                    f"{where}: entry {name!r} is {type(entry).__name__}, not an object; fix: "
                    'write {"label": "REAL"|"FAKE", "original": ...}'
                )
                continue
            if "label" not in entry:
                errors.append(
                    f"{where}: entry {name!r} has no 'label' field; fix: add "
                    '"label": "REAL" or "FAKE"'
                )
                continue
            label = entry["label"]
            if label not in LABELS:
                errors.append(
                    f"{where}: entry {name!r} has unknown label {label!r}; fix: use one of "
                    f"{sorted(LABELS)}"
                )
                continue
            original = entry.get("original")
            if label == "FAKE" and not original:
                errors.append(
                    f"{where}: FAKE entry {name!r} has no 'original'; fix: set \"original\" to "
                    "the REAL video it was made from"
                )
                continue
            if label == "REAL":
                original = None
            video_path = part / name
            if not video_path.is_file():
                errors.append(
                    f"{where}: entry {name!r} lists a file that does not exist ({video_path}); "
                    f"fix: restore the file or remove the entry from {METADATA}"
                )
                continue
            if name in seen:
                errors.append(
                    f"{where}: entry {name!r} is also listed in {seen[name]}/{METADATA}; fix: "
                    "keep one copy (video names are unique in DFDC)"
                )
                continue
            seen[name] = part.name
            rows.append(
                {
                    "video": name,
                    "folder": part.name,
                    "path": str(video_path.resolve()),
                    "label": label,
                    "original": original,
                    "target": LABELS[label],
                }
            )
        for mp4 in sorted(part.glob("*.mp4")):
            if mp4.name not in doc:
                problems.append(
                    {
                        "folder": part.name,
                        "video": mp4.name,
                        "path": str(mp4.resolve()),
                        "problem": "unlisted",
                    }
                )
    known = {r["video"]: r for r in rows}
    for r in rows:
        if r["label"] != "FAKE":
            continue
        orig = known.get(r["original"])
        if orig is None:
            errors.append(
                f"{r['folder']}/{METADATA}: FAKE entry {r['video']!r} names original "
                f"{r['original']!r}, which is not in the index; fix: restore the original "
                "(file and metadata entry) or remove the fake's entry"
            )
        elif orig["label"] != "REAL":
            errors.append(
                f"{r['folder']}/{METADATA}: FAKE entry {r['video']!r} names original "
                f"{r['original']!r}, which is itself FAKE; fix: point it at the REAL video"
            )
    _raise_all(errors, root)
    videos = pd.DataFrame(rows, columns=VIDEO_COLUMNS)
    videos["target"] = videos["target"].astype("int64")
    return DeepfakeIndex(
        videos=videos.reset_index(drop=True),
        problems=pd.DataFrame(problems, columns=PROBLEM_COLUMNS),
    )


def _exact_label(raw: str) -> int | None:
    """1 or 0 from a label that is exactly 1 or 0 ("1", "0", "1.0", "0.0"), else None:
    never rounded, so 0.7 (a submission's probability) is an error, not a REAL."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return int(value) if value in (0.0, 1.0) else None


def _is_fraction(raw: str) -> bool:
    try:
        return 0.0 < float(raw) < 1.0
    except ValueError:
        return False


def index_test_videos(
    root: Path | str, folder: str = "test_videos", labels_file: str = "test_labels.csv"
) -> pd.DataFrame:
    """Index ``<root>/<folder>/*.mp4`` with labels from ``<root>/<labels_file>`` when present.

    Columns: ``video``, ``folder``, ``path``, ``label`` ("REAL"/"FAKE", None without a labels
    file), ``target`` (nullable Int64: 1 FAKE, 0 REAL, <NA> without labels). With a labels
    file, every video needs a row and every row a video, labels must be 0 or 1.
    """
    root = Path(root)
    test_dir = root / folder
    if not test_dir.is_dir():
        raise DeepfakeLayoutError(
            f"{test_dir} does not exist; fix: unpack DFDC's test videos there or generate the "
            "sample (podium's sample_data pipeline)"
        )
    videos = sorted(p for p in test_dir.glob("*.mp4") if p.is_file())
    labels_path = root / labels_file
    labels: dict[str, int] | None = None
    errors: list[str] = []
    if labels_path.is_file():
        labels = {}
        try:
            text = labels_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DeepfakeLayoutError(
                f"{labels_path}: cannot be read ({exc}); fix: restore it"
            ) from exc
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
            raise DeepfakeLayoutError(
                f"{labels_path}: expected columns 'filename,label', got {reader.fieldnames}; "
                "fix: write a header line 'filename,label' and one row per test video"
            )
        for line, row in enumerate(reader, start=2):
            name, raw = (row.get("filename") or "").strip(), (row.get("label") or "").strip()
            value = _exact_label(raw)
            if not name or value is None:
                errors.append(
                    f"{labels_path} line {line}: {row}: "
                    + (f"label {raw!r} is not exactly 0 or 1" if name else "no filename")
                    + (
                        " (a probability: is this a submission, not the labels?)"
                        if name and value is None and _is_fraction(raw)
                        else ""
                    )
                    + "; fix: 'filename,label' with label 1 (FAKE) or 0 (REAL), nothing else"
                )
                continue
            if name in labels:
                errors.append(
                    f"{labels_file} line {line}: {name!r} is labelled twice; fix: keep one row"
                )
                continue
            labels[name] = value
        present = {p.name for p in videos}
        for name in sorted(set(labels) - present):
            errors.append(
                f"{labels_file}: {name!r} is labelled but {folder}/{name} does not exist; fix: "
                "restore the video or remove its row"
            )
        for name in sorted(present - set(labels)):
            errors.append(
                f"{folder}/{name} has no row in {labels_file}; fix: add '{name},<0|1>' or "
                "remove the video"
            )
    _raise_all(errors, root)
    inv = {v: k for k, v in LABELS.items()}
    rows = [
        {
            "video": p.name,
            "folder": folder,
            "path": str(p.resolve()),
            "label": None if labels is None else inv[labels[p.name]],
            "target": pd.NA if labels is None else labels[p.name],
        }
        for p in videos
    ]
    out = pd.DataFrame(rows, columns=["video", "folder", "path", "label", "target"])
    out["target"] = out["target"].astype("Int64")
    return out


# ---------------------------------------------------------------------------- video


def _open(source, name: str):
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise VideoReadError(f"{name}: no such video file")
    try:
        container = av.open(str(source) if isinstance(source, Path) else source)
    except (av.error.FFmpegError, OSError, EOFError) as exc:
        raise VideoReadError(
            f"{name}: cannot open video ({exc}); truncated or corrupt mp4?"
        ) from exc
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{name}: no video stream")
    return container


def probe_video(path: Path | str) -> dict:
    """Header facts of a video: ``{"frames", "fps", "width", "height"}`` (frames counted
    from packets when the container does not store the count)."""
    name = str(path)
    container = _open(path, name)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        frames = int(stream.frames or 0)
        if frames <= 0:
            frames = sum(1 for pkt in container.demux(stream) if pkt.size)
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    except (av.error.FFmpegError, OSError, EOFError) as exc:
        raise VideoReadError(f"{name}: cannot read the video header ({exc}); corrupt mp4?") from exc
    finally:
        container.close()
    if width <= 0 or height <= 0:
        raise VideoReadError(f"{name}: video stream has no frame size; corrupt mp4?")
    return {"frames": frames, "fps": float(rate) if rate else 0.0, "width": width, "height": height}


def read_frames(path: Path | str, indices: Sequence[int], seek_gap: int = 60) -> np.ndarray:
    """Decode the frames at ``indices`` (0-based, any order, repeats allowed) as (n, H, W, 3)
    uint8 RGB. Seeks to the keyframe before a wanted frame when it lies more than
    ``seek_gap`` frames past the last decoded one; otherwise decodes forward.
    """
    return _decode_frames(path, indices, str(path), seek_gap)


def _decode_frames(source, indices: Sequence[int], name: str, seek_gap: int = 60) -> np.ndarray:
    idx = [int(i) for i in indices]
    if any(i < 0 for i in idx):
        raise ValueError(
            f"{name}: frame indices must be >= 0, got {sorted(i for i in idx if i < 0)}"
        )
    container = _open(source, name)
    try:
        stream = container.streams.video[0]
        h, w = int(stream.codec_context.height), int(stream.codec_context.width)
        if not idx:
            return np.zeros((0, h, w, 3), np.uint8)
        wanted = sorted(set(idx))
        got = _decode_wanted(container, stream, wanted, name, seek_gap)
    except (av.error.FFmpegError, OSError, EOFError) as exc:
        if isinstance(exc, VideoReadError):
            raise
        raise VideoReadError(f"{name}: decoding failed ({exc}); truncated or corrupt mp4?") from exc
    finally:
        container.close()
    return np.stack([got[i] for i in idx])


def _decode_wanted(container, stream, wanted: list[int], name: str, seek_gap: int) -> dict:
    tb = stream.time_base
    rate = stream.average_rate or stream.guessed_rate
    start = stream.start_time or 0
    step = Fraction(1) / (Fraction(rate) * Fraction(tb)) if rate and tb else None
    got: dict[int, np.ndarray] = {}
    pos = -1
    frames = None
    use_pts = step is not None

    def index_of(frame, counter: int) -> int:
        if use_pts and frame.pts is not None:
            return int(round((frame.pts - start) / step))
        return counter

    counter = -1
    for target in wanted:
        if frames is None or (use_pts and target - pos > seek_gap):
            if frames is not None or target > 0:
                if use_pts:
                    container.seek(int(start + target * step), stream=stream, backward=True)
            frames = container.decode(stream)
            counter = -1
        for frame in frames:
            counter += 1
            pos = index_of(frame, counter)
            if pos == target:
                got[target] = frame.to_ndarray(format="rgb24")
                break
            if pos > target:  # seeking overshot (rare): decode again from the start
                container.seek(int(start), stream=stream, backward=True)
                frames = container.decode(stream)
                counter = -1
                for f2 in frames:
                    counter += 1
                    pos = index_of(f2, counter)
                    if pos == target:
                        got[target] = f2.to_ndarray(format="rgb24")
                        break
                break
        if target not in got:
            raise VideoReadError(
                f"{name}: frame {target} requested but the video ends after frame {pos}; "
                "truncated or corrupt mp4? (probe_video reports the stored frame count)"
            )
    return got
