"""The deepfake pipeline's inputs: the DFDC videos' faces, extracted over Dask distributed and
streamed to disk, and the face index.

:func:`plan_extraction` checks the ``videos`` table of
:func:`podium.layouts.deepfake.index_deepfake` and the settings, and plans the work;
:func:`stream_extraction` runs it and yields the finished records in chunks of about
``window`` records, so a caller that saves each chunk before asking for the next (a Kedro
generator node into a PartitionedDataset) holds one window of records, never the
collection: DFDC's 119k videos stream through the memory of a few. One record per video
(schema: :mod:`podium.faces.video`), keyed by its partition name ``<folder>/<video
stem>``. :func:`extract_videos` collects everything at once, for a notebook or a test.

Beside each record, :func:`face_rows` gives its rows of the **face index** (one row per
crop: box, confidence, frame, rank, position in the record, has-mask; see
:data:`INDEX_COLUMNS`): every node that needs no pixels (folds, stacking features, recall,
diagnostics) reads that small table, and only training, prediction and the face grid open
records, through the lazy loaders of :func:`record_loaders`.

Work is planned in **groups**: a REAL original together with its FAKEs. The original's
sampled frames are decoded once and serve its own record and every fake's manipulation
mask (fakes share their original's frame count, so the sampled indices coincide; any
frame that does not is decoded from the original as well). A FAKE whose original is not in
the table is grouped with the original's file in the same folder (used for its mask only,
not extracted). Each group is one Dask task (:func:`extract_group`, a top-level function,
so process workers import it by name). Videos already extracted are not planned at all.

Bad input never stops the run: a truncated/corrupt video (``VideoReadError``), one with no
face in any sampled frame (``NoFaceError``) or a lost worker becomes one row of the
bad-videos report (``video, folder, path, reason``). A FAKE whose original cannot be read
is still extracted, with ``masks = None`` and the reason in ``mask_error`` (counted in the
stats as ``fakes_without_mask``).

:func:`load_truth_boxes` and :func:`detection_recall` are diagnostics for the generated
sample: they read its ``_truth.json`` sidecars, which hold the answer. **No training or
inference node may call** :func:`load_truth_boxes`; only a diagnostics/reporting node may.

**The cache is keyed on content as well as settings.** Each record and its index rows
carry the :func:`content_key` of the video file they came from (size, mtime_ns and a
digest of its first and last MiB); :func:`check_cache` counts a cached video as done only
when its rows load and still match the file (:func:`content_changed`), so a video whose
bytes changed under the same name, or whose rows or record were cut short by an older
crash, is extracted again; so is a FAKE whose masks were made from its original's earlier
bytes (its rows keep the original's digest, ``original_content``); :func:`current_rows`
(the face index) leaves out rows that no longer match their file, so nothing downstream
reads a stale record.

No kedro or mlflow imports.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from podium.core.distributed import ItemError, dask_client, iter_items
from podium.faces.video import (
    check_extraction_settings,
    crop_at_boxes,
    extract_faces_from_frames,
    extract_video,
    manipulation_masks,
    read_sampled_frames,
    setting,
    video_record,
)
from podium.fingerprint import EDGE_BYTES, file_digest
from podium.layouts.deepfake import read_frames

__all__ = [
    "BAD_VIDEO_COLUMNS",
    "CONTENT_COLUMNS",
    "INDEX_COLUMNS",
    "CacheCheck",
    "ExtractionChunk",
    "ExtractionPlan",
    "ExtractionStats",
    "detection_recall",
    "extract_group",
    "extract_videos",
    "check_cache",
    "content_changed",
    "content_key",
    "current_rows",
    "stored_content_changed",
    "extraction_client",
    "face_index",
    "face_rows",
    "load_truth_actors",
    "load_truth_families",
    "load_truth_boxes",
    "partition_name",
    "plan_extraction",
    "record_loaders",
    "record_problem",
    "settings_key",
    "stream_extraction",
]

#: Columns of the bad-videos report.
BAD_VIDEO_COLUMNS = ["video", "folder", "path", "reason"]
#: Columns ``extract_videos`` needs in its ``videos`` table (index_deepfake's have them all).
REQUIRED_COLUMNS = ("video", "folder", "path", "label", "original")
#: Name of the sample's ground-truth sidecar (see podium.sample_data.deepfake).
TRUTH_FILE = "_truth.json"
_PARTITION_SUFFIXES = (".joblib", ".pkl", ".pickle")


def partition_name(folder: str, video: str) -> str:
    """``<folder>/<video stem>``: the record's key in the PartitionedDataset."""
    return f"{folder}/{Path(str(video)).stem}"


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _text(value: Any) -> str | None:
    """A non-empty string or None (pandas may hold a missing value as None, NaN or NA)."""
    return value if isinstance(value, str) and value else None


# ---------------------------------------------------------------------------- content keys

#: What a record and its index rows say about the video file they came from.
CONTENT_COLUMNS = ["content", "content_size", "content_mtime_ns"]


def _edge_digest(path: Path | str) -> str:
    # sha256 over the size and the first and last MiB (the whole file when <= 2 MiB), as
    # podium.fingerprint does for the run's tags. Not the whole file: DFDC is 470 GB in
    # 119k videos (~4 MB each), so a full hash would re-read the data set on every re-run,
    # while an mp4's edges hold its `ftyp`/`moov` boxes (the sample tables, which change
    # with any re-encode or truncation) and the first and last frames' bytes.
    return file_digest(Path(path), full_hash_limit=2 * EDGE_BYTES, edge_bytes=EDGE_BYTES)[:24]


def content_key(path: Path | str) -> dict[str, Any]:
    """``{"content", "content_size", "content_mtime_ns"}`` of a video file: the digest of
    its edges (see :func:`_edge_digest`), and its size and mtime, which let
    :func:`content_changed` skip the hash while the file is untouched."""
    stat = os.stat(path)
    return {
        "content": _edge_digest(path),
        "content_size": int(stat.st_size),
        "content_mtime_ns": int(stat.st_mtime_ns),
    }


def content_changed(path: Path | str, rows: pd.DataFrame) -> str | None:
    """None while ``path`` still holds the content its index ``rows`` were extracted from,
    else why not (:func:`stored_content_changed` on the rows' first row)."""
    if (
        not len(rows)
        or any(c not in rows.columns for c in CONTENT_COLUMNS)
        or pd.isna(rows["content"].iloc[0])
    ):
        return "its rows carry no content key (extracted before content keys)"
    return stored_content_changed(path, rows.iloc[0], "its faces were extracted")


def stored_content_changed(
    path: Path | str, stored: Mapping[str, Any], since: str = "it was read"
) -> str | None:
    """None while ``path`` still holds the content ``stored`` describes (a mapping with
    :data:`CONTENT_COLUMNS`, as :func:`content_key` gave them), else why not.

    Same size and mtime_ns: unchanged, without reading a byte (as make, rsync and git do;
    the steady state of a 119k-video re-run costs one ``stat`` each). Otherwise the edge
    digest decides, so a copied or touched data set is not read again but a rewritten or
    truncated video is."""
    if stored.get("content") is None or pd.isna(stored["content"]):
        return "it carries no content key (from before content keys)"
    try:
        stat = os.stat(path)
        if int(stat.st_size) == int(stored["content_size"]) and int(stat.st_mtime_ns) == int(
            stored["content_mtime_ns"]
        ):
            return None
        if _edge_digest(path) == stored["content"]:
            return None
    except OSError as error:
        return f"{path} cannot be read ({_reason(error)})"
    return (
        f"{path} changed since {since} ({int(stored['content_size'])} -> "
        f"{int(stat.st_size)} bytes, other content)"
    )


# ---------------------------------------------------------------------------- one group


def _labelled(record: dict, member: Mapping, content: Mapping[str, Any]) -> dict:
    record.update(content)
    record["video"] = member["video"]
    record["folder"] = member["folder"]
    record["label"] = member.get("label")
    record["original"] = member.get("original")
    return record


def extract_group(job: Mapping[str, Any]) -> dict[str, dict]:
    """Extract one original and/or its fakes; never raises for a bad video.

    ``job``: ``original`` (a member or None), ``extract_original`` (bool), ``fakes`` (members
    to extract), ``settings`` (checked settings). A member is a mapping with ``video``,
    ``folder``, ``path``, ``label``, ``original`` and ``partition``. Returns
    ``{"records": {partition: record}, "errors": {partition: reason}}``.
    """
    s = job["settings"]
    records: dict[str, dict] = {}
    errors: dict[str, str] = {}
    original = job.get("original")
    frames_of_original: dict[int, np.ndarray] = {}
    original_error: str | None = None if original else "the FAKE names no original"
    original_content: str | None = None  # the original's edge digest, for its fakes' masks

    if original is not None and job.get("extract_original"):
        try:
            content = content_key(original["path"])  # before decoding: a later change shows
            original_content = content["content"]
            frames, indices, info = read_sampled_frames(
                original["path"], s["n_frames"], s["seek_gap"]
            )
        except Exception as error:  # one bad video is data, not a crash
            errors[original["partition"]] = original_error = _reason(error)
        else:
            frames_of_original = dict(zip(indices.tolist(), frames, strict=True))
            try:
                faces = extract_faces_from_frames(frames, indices, s, checked=True)
            except Exception as error:  # no face: bad for itself, frames still serve masks
                errors[original["partition"]] = _reason(error)
            else:
                record = video_record(original["path"], info, faces, s)
                records[original["partition"]] = _labelled(record, original, content)

    for fake in job.get("fakes", ()):
        try:
            content = content_key(fake["path"])
            record = _labelled(extract_video(fake["path"], s, checked=True), fake, content)
        except Exception as error:
            errors[fake["partition"]] = _reason(error)
            continue
        if original_error is None:
            wanted = sorted(set(record["frame_indices"].tolist()) - set(frames_of_original))
            if wanted:
                try:
                    decoded = read_frames(original["path"], wanted, seek_gap=s["seek_gap"])
                    frames_of_original.update(zip(wanted, decoded, strict=True))
                except Exception as error:
                    original_error = f"original {original['video']}: {_reason(error)}"
        if original_error is not None:
            record["mask_error"] = original_error
        else:
            source = [frames_of_original[i] for i in record["frame_indices"].tolist()]
            size = (record["height"], record["width"])
            if source[0].shape[:2] != size:
                record["mask_error"] = (
                    f"original {original['video']} frames are {source[0].shape[1]}x"
                    f"{source[0].shape[0]}, the fake's {size[1]}x{size[0]}"
                )
            else:
                original_crops = crop_at_boxes(
                    source,
                    record["boxes"],
                    s["margin"],
                    s["crop_size"],
                    mode=setting(s, "crop_mode"),
                )
                record["masks"] = manipulation_masks(
                    record["crops"], original_crops, s["mask_threshold"], s["mask_blur"]
                )
                if original_content is None:
                    original_content = _edge_digest(original["path"])
                record["original_content"] = original_content
        records[fake["partition"]] = record
    return {"records": records, "errors": errors}


# ---------------------------------------------------------------------------- planning


def _member(row: Mapping) -> dict[str, Any]:
    return {
        "video": str(row["video"]),
        "folder": str(row["folder"]),
        "path": str(row["path"]),
        "label": _text(row.get("label")),
        "original": _text(row.get("original")),
        "partition": partition_name(row["folder"], row["video"]),
    }


def _normalised(names: Iterable[str]) -> set[str]:
    out = set()
    for name in names:
        name = str(name)
        for suffix in _PARTITION_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        out.add(name)
    return out


def _plan(members: list[dict], done: set[str], settings: dict) -> list[dict]:
    """One job per original (with its fakes to extract) and per FAKE-less video to extract."""
    by_name = {m["video"]: m for m in members}
    fakes_of: dict[tuple[str, str], list[dict]] = {}
    for m in members:
        if m["label"] == "FAKE" and m["partition"] not in done:
            if m["original"] in by_name and by_name[m["original"]]["label"] != "FAKE":
                key = ("table", m["original"])
            else:
                key = ("file", str(Path(m["path"]).parent / (m["original"] or "")))
            fakes_of.setdefault(key, []).append(m)
    jobs = []
    for m in members:
        if m["label"] == "FAKE":
            continue
        fakes = fakes_of.pop(("table", m["video"]), [])
        if m["partition"] in done and not fakes:
            continue
        jobs.append(
            {
                "original": m,
                "extract_original": m["partition"] not in done,
                "fakes": fakes,
                "settings": settings,
            }
        )
    for (_, path), fakes in fakes_of.items():  # originals outside the table: masks only
        name = fakes[0]["original"]
        source = (
            {
                "video": name,
                "folder": fakes[0]["folder"],
                "path": path,
                "label": "REAL",
                "original": None,
                "partition": partition_name(fakes[0]["folder"], name),
            }
            if name
            else None
        )
        jobs.append(
            {"original": source, "extract_original": False, "fakes": fakes, "settings": settings}
        )
    return jobs


def _job_members(job: Mapping) -> list[dict]:
    first = [job["original"]] if job["original"] and job["extract_original"] else []
    return first + list(job["fakes"])


# ---------------------------------------------------------------------------- all videos


@dataclass
class ExtractionPlan:
    """What :func:`stream_extraction` will do: the jobs, and what the cache spared."""

    members: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    skipped: int
    settings: dict[str, Any]


@dataclass
class ExtractionChunk:
    """Records finished since the previous chunk (to be saved before the next one is
    made), the videos that failed among them, and how far the plan has come."""

    records: dict[str, dict]
    bad: list[dict[str, Any]]
    jobs_done: int
    jobs_total: int


@dataclass
class ExtractionStats:
    """Running totals over the chunks (never NaN: rates are 0.0 when nothing ran)."""

    videos: int
    skipped_existing: int
    reextracted_changed: int = 0  # cached, but the video's content changed since
    reextracted_broken: int = 0  # cached, but its rows or record do not load (a crash)
    extracted: int = 0
    bad: int = 0
    fakes_without_mask: int = 0
    frames: int = 0
    frames_with_face: int = 0
    faces: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, chunk: ExtractionChunk) -> None:
        self.bad += len(chunk.bad)
        for record in chunk.records.values():
            self.extracted += 1
            self.fakes_without_mask += record["label"] == "FAKE" and record["masks"] is None
            self.frames += len(record["sampled_indices"])
            self.frames_with_face += int((record["faces_per_frame"] > 0).sum())
            self.faces += len(record["frame_indices"])

    def as_dict(self) -> dict[str, float]:
        seconds = time.perf_counter() - self.started
        return {
            "videos": self.videos,
            "extracted": self.extracted,
            "skipped_existing": self.skipped_existing,
            "reextracted_changed": self.reextracted_changed,
            "reextracted_broken": self.reextracted_broken,
            "bad": self.bad,
            "fakes_without_mask": self.fakes_without_mask,
            "frames": self.frames,
            "frames_with_face": self.frames_with_face,
            "faces": self.faces,
            "face_frame_rate": self.frames_with_face / self.frames if self.frames else 0.0,
            "seconds": seconds,
            "frames_per_second": self.frames / seconds if self.frames and seconds > 0 else 0.0,
        }


def plan_extraction(
    videos: pd.DataFrame,
    settings: Mapping[str, Any] | None = None,
    already_extracted: Collection[str] = frozenset(),
) -> ExtractionPlan:
    """Check the table and settings and plan one job per original with its fakes, leaving
    out what ``already_extracted`` names (partition names; a ``.joblib`` suffix is ignored).

    Every check happens here, before any video is decoded.
    """
    s = check_extraction_settings(settings)
    missing = [c for c in REQUIRED_COLUMNS if c not in videos.columns]
    if missing:
        raise ValueError(
            f"the videos table lacks column(s) {missing}; fix: pass index_deepfake(root).videos "
            f"(columns {list(REQUIRED_COLUMNS)})"
        )
    members = [_member(row) for row in videos.to_dict("records")]
    seen: dict[str, str] = {}
    for m in members:
        if m["partition"] in seen:
            raise ValueError(
                f"two videos map to the partition {m['partition']!r} ({seen[m['partition']]} "
                f"and {m['path']}); fix: keep one of them in the videos table"
            )
        seen[m["partition"]] = m["path"]
    done = _normalised(already_extracted)
    skipped = sum(m["partition"] in done for m in members)
    return ExtractionPlan(members, _plan(members, done, s), skipped, s)


def _chunk_of(job: Mapping, result: Any) -> tuple[dict[str, dict], list[dict]]:
    """The records and bad-video rows of one finished job (or of a job that was lost)."""
    if isinstance(result, ItemError):  # a lost worker or an unexpected failure
        result = {"records": {}, "errors": {}, "failed": result.error}
    records: dict[str, dict] = {}
    bad: list[dict] = []
    for m in _job_members(job):
        if m["partition"] in result["records"]:
            records[m["partition"]] = result["records"][m["partition"]]
        else:
            reason = result["errors"].get(m["partition"]) or result.get("failed")
            bad.append({**{k: m[k] for k in BAD_VIDEO_COLUMNS[:3]}, "reason": reason})
    return records, bad


def stream_extraction(
    plan: ExtractionPlan, client: Any | None, *, progress: bool = True
) -> Iterator[ExtractionChunk]:
    """Run the plan's jobs (on ``client``, a ``distributed.Client``, or here when None) and
    yield their records as they finish, in chunks of about ``settings["window"]`` records.

    At most ``window`` jobs run at once and a chunk is yielded as soon as it holds
    ``window`` records, so the caller, saving each chunk before asking for the next, holds
    about one window of records whatever the number of videos. Always yields at least once
    (an empty chunk when there is nothing to do), so a Kedro generator node saves its
    outputs even on a fully cached run.
    """
    window = plan.settings["window"]
    total, done = len(plan.jobs), 0
    records: dict[str, dict] = {}
    bad: list[dict] = []
    finished = iter_items(
        client, extract_group, plan.jobs, window, progress, "face extraction", total=total
    )
    for job, result in finished:
        done += 1
        job_records, job_bad = _chunk_of(job, result)
        records.update(job_records)
        bad.extend(job_bad)
        if len(records) >= window:
            yield ExtractionChunk(records, bad, done, total)
            records, bad = {}, []
    if records or bad or done == 0:
        yield ExtractionChunk(records, bad, done, total)


def extract_videos(
    videos: pd.DataFrame,
    settings: Mapping[str, Any] | None = None,
    already_extracted: Collection[str] = frozenset(),
    scheduler_address: str | None = None,
    n_workers: int = 2,
    *,
    processes: bool = True,
    progress: bool = True,
) -> tuple[dict[str, dict], pd.DataFrame, dict[str, float]]:
    """Every record at once, for a notebook or a test on a few videos; a pipeline streams
    them with :func:`plan_extraction` and :func:`stream_extraction` instead.

    ``videos``: columns ``video, folder, path, label, original`` (``index_deepfake().videos``).
    ``settings``: ``deepfake.extraction`` (see :data:`podium.faces.video.DEFAULT_SETTINGS`).
    ``already_extracted``: partition names to skip. ``scheduler_address``: a Dask scheduler
    to use; else a LocalCluster of ``n_workers`` (process workers unless
    ``processes=False``); ``n_workers=0`` runs everything here, without Dask.

    Returns ``(records, bad_videos, stats)``: partition name -> record in table order; one
    bad-videos row (``video, folder, path, reason``) per video that could not be extracted;
    the :class:`ExtractionStats` totals.
    """
    plan = plan_extraction(videos, settings, already_extracted)
    stats = ExtractionStats(len(plan.members), plan.skipped)
    records: dict[str, dict] = {}
    bad: list[dict] = []
    with extraction_client(plan, scheduler_address, n_workers, processes) as client:
        for chunk in stream_extraction(plan, client, progress=progress):
            stats.add(chunk)
            records.update(chunk.records)
            bad.extend(chunk.bad)
    order = {m["partition"]: i for i, m in enumerate(plan.members)}
    records = dict(sorted(records.items(), key=lambda item: order[item[0]]))
    bad.sort(key=lambda row: order[partition_name(row["folder"], row["video"])])
    return records, pd.DataFrame(bad, columns=BAD_VIDEO_COLUMNS), stats.as_dict()


@contextmanager
def extraction_client(
    plan: ExtractionPlan,
    scheduler_address: str | None,
    n_workers: int,
    processes: bool = True,
    threads_per_worker: int = 1,
) -> Iterator[Any]:
    """A Dask client when there is work and a cluster to do it on, else None (run here)."""
    if plan.jobs and (scheduler_address or n_workers > 0):
        with dask_client(
            scheduler_address,
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
        ) as client:
            yield client
    else:
        yield None


# ---------------------------------------------------------------------------- the cache

#: Settings that change how fast extraction runs, not what it produces.
_SPEED_ONLY = ("device", "batch_size", "seek_gap", "window")


def settings_key(settings: Mapping[str, Any] | None) -> str:
    """Short digest of the extraction settings that shape the records: the cache keeps one
    set of records per key, so a margin or frame-count ablation never reuses stale crops."""
    checked = check_extraction_settings(settings)
    shaping = {k: v for k, v in sorted(checked.items()) if k not in _SPEED_ONLY}
    text = json.dumps(shaping, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def cached_names(partitions: Collection[str], key: str) -> set[str]:
    """Partition names (``<folder>/<stem>``) already extracted under ``key``."""
    prefix = f"{key}/"
    return {
        name.removeprefix(prefix) for name in _normalised(partitions) if name.startswith(prefix)
    }


def record_loaders(partitions: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The records extracted under ``key``, by partition name, **not loaded**: the values
    are the PartitionedDataset's load functions, called only where pixels are needed."""
    prefix = f"{key}/"
    return {
        name.removeprefix(prefix): value
        for name, value in sorted(partitions.items())
        if name.startswith(prefix)
    }


def _file_of(loader: Any, partition: str) -> str:
    return str(getattr(loader, "filepath", partition))


def record_problem(loader: Any) -> str | None:
    """Why a cached record's file is unusable, from a ``stat`` (no record is opened: the
    face cache of full DFDC is hundreds of GB). Saves are atomic (temporary name, then
    rename) and rows are written after their record, so a record cut short can only be
    an older, non-atomic save or a file system that lost the data of a rename (power
    loss): both leave a 0-byte or missing file, which this catches."""
    path = getattr(loader, "filepath", None)
    if path is None:
        return None
    try:
        size = os.path.getsize(path)
    except OSError as error:
        return f"{path} cannot be read ({_reason(error)})"
    return f"{path} is empty (0 bytes: cut short by an older crash)" if size == 0 else None


def current_rows(
    table: pd.DataFrame, row_loaders: Mapping[str, Any]
) -> Iterator[tuple[str, pd.DataFrame | None, str | None, bool]]:
    """For each video of ``table`` (columns ``folder, video, path``) with rows in
    ``row_loaders`` (by partition name, as :func:`record_loaders` gives them):
    ``(partition, rows, problem, broken)``. ``rows`` is None where they do not load;
    ``problem`` is None when the rows load and match the file's content now, else the
    reason (``broken``: the rows file itself does not load)."""
    for folder, video, path in zip(table["folder"], table["video"], table["path"], strict=True):
        partition = partition_name(folder, video)
        if partition not in row_loaders:
            continue
        loader = row_loaders[partition]
        try:
            rows = loader()
        except Exception as error:  # 0-byte or truncated rows from an older crash
            while error.__cause__ is not None:  # Kedro's DatasetError wraps the EOFError
                error = error.__cause__
            file = _file_of(loader, partition)
            reason = _reason(error) if str(error) else type(error).__name__
            yield partition, None, f"{file} does not load ({reason})", True
            continue
        yield partition, rows, content_changed(path, rows), False


@dataclass
class CacheCheck:
    """What the face cache holds for a table of videos: ``done`` (partition names whose
    rows load, match the video's content and whose record is whole), and those to extract
    again with their reason: ``changed`` (the video's content) and ``broken`` (rows or
    record that do not load)."""

    done: set[str]
    changed: dict[str, str]
    broken: dict[str, str]


def check_cache(
    table: pd.DataFrame,
    cached_rows: Mapping[str, Any],
    key: str,
    cached_records: Mapping[str, Any] | None = None,
) -> CacheCheck:
    """Check the cached rows (and, when given, records) of ``table``'s videos under the
    settings ``key``. Each video's rows are loaded (small: no pixels); records are only
    ``stat``-ed (see :func:`record_problem`)."""
    rows_of = record_loaders(cached_rows, key)
    records_of = None if cached_records is None else record_loaders(cached_records, key)
    check = CacheCheck(set(), {}, {})
    contents: dict[str, tuple[Any, Any]] = {}  # partition -> (content, original_content)
    for partition, rows, problem, broken in current_rows(table, rows_of):
        if rows is not None and len(rows):
            first = rows.iloc[0]
            contents[partition] = (first.get("content"), first.get("original_content"))
        if broken:
            check.broken[partition] = problem
            continue
        if records_of is not None:
            record = records_of.get(partition)
            unusable = (
                f"the record of {partition} is missing"
                if record is None
                else record_problem(record)
            )
            if unusable is not None:
                check.broken[partition] = unusable
                continue
        if problem is not None:
            check.changed[partition] = problem
        else:
            check.done.add(partition)
        del rows
    _check_originals(table, check, contents)
    return check


def _check_originals(
    table: pd.DataFrame, check: CacheCheck, contents: Mapping[str, tuple[Any, Any]]
) -> None:
    """Move to ``check.changed`` each cached FAKE whose masks were made from an original
    whose content has changed since (compared with the original's own current rows, else
    with its file). Rows from before original content keys carry none: left as they are."""
    if "original" not in table.columns:
        return
    names = table["folder"].map(str) + "/" + table["video"].map(str)
    paths = dict(zip(names, table["path"], strict=True))
    for folder, video, path, original in zip(
        table["folder"], table["video"], table["path"], table["original"], strict=True
    ):
        partition = partition_name(folder, video)
        stored = contents.get(partition, (None, None))[1]
        if partition not in check.done or not isinstance(stored, str) or not original:
            continue
        source = partition_name(folder, original)
        if source in check.changed:
            now: str | None = None
        elif source in check.done:
            now = contents[source][0]
        else:  # no usable rows (no face, cut short, outside the table): the file decides
            file = paths.get(f"{folder}/{original}", str(Path(path).parent / str(original)))
            try:
                now = _edge_digest(file)
            except OSError:
                now = None
        if now != stored:
            check.done.discard(partition)
            check.changed[partition] = (
                f"its original {original} changed since its masks were made from it"
            )


# ---------------------------------------------------------------------------- the index

#: Columns of the per-crop face index, one row per crop of every extracted video.
INDEX_COLUMNS = [
    "partition",  # <folder>/<video stem>, the record's key
    "video",
    "folder",
    "label",  # REAL / FAKE (None for test videos)
    "original",
    "crop",  # position of the crop in its record's `crops`
    "frame_index",
    "face_rank",  # 0 = the largest face of its frame
    "x1",
    "y1",
    "x2",
    "y2",
    "confidence",
    "has_mask",  # the record holds a manipulation mask for this crop
    "sampled_frames",  # frames decoded and searched in the video
    "frames_total",
    "fps",
    "height",
    "width",
    *CONTENT_COLUMNS,  # the video file the crops came from (see content_key)
    "original_content",  # a FAKE with masks: its original's edge digest when they were made
]


def face_rows(partition: str, record: Mapping[str, Any]) -> pd.DataFrame:
    """The index rows of one record: what every node that needs no pixels reads instead
    of the record (folds, stacking features, recall, diagnostics)."""
    frames = np.asarray(record["frame_indices"], np.int64)
    n = len(frames)
    boxes = np.asarray(record["boxes"], np.float32).reshape(-1, 4)
    rank = pd.Series(frames).groupby(frames).cumcount().to_numpy(np.int64)
    return pd.DataFrame(
        {
            "partition": [partition] * n,
            "video": [record["video"]] * n,
            "folder": [record.get("folder")] * n,
            "label": [record.get("label")] * n,
            "original": [record.get("original")] * n,
            "crop": np.arange(n, dtype=np.int64),
            "frame_index": frames,
            "face_rank": rank,
            "x1": boxes[:, 0],
            "y1": boxes[:, 1],
            "x2": boxes[:, 2],
            "y2": boxes[:, 3],
            "confidence": np.asarray(record["confidences"], np.float32),
            "has_mask": np.full(n, record.get("masks") is not None),
            "sampled_frames": np.full(n, len(record["sampled_indices"]), np.int64),
            "frames_total": np.full(n, int(record["frames_total"]), np.int64),
            "fps": np.full(n, float(record["fps"]), np.float32),
            "height": np.full(n, int(record["height"]), np.int64),
            "width": np.full(n, int(record["width"]), np.int64),
            "content": [record.get("content")] * n,
            "content_size": [record.get("content_size")] * n,
            "content_mtime_ns": [record.get("content_mtime_ns")] * n,
            "original_content": [record.get("original_content")] * n,
        },
        columns=INDEX_COLUMNS,
    )


def face_index(rows: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """One table from per-video index rows (an empty table with the columns if none)."""
    frames = [r for r in rows if len(r)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in INDEX_COLUMNS})
    return pd.concat(frames, ignore_index=True)[INDEX_COLUMNS]


# ---------------------------------------------------------------------------- diagnostics


def _truth_videos(root: Path | str) -> Iterator[tuple[str, str, dict]]:
    """``(part folder, video, entry)`` of every video in every ``<root>/*/_truth.json``
    (none for real DFDC, which has no sidecar)."""
    for path in sorted(Path(root).glob(f"*/{TRUTH_FILE}")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for video, entry in doc.get("videos", {}).items():
            yield path.parent.name, video, entry


def load_truth_boxes(root: Path | str) -> dict[str, np.ndarray]:
    """Per-frame truth face boxes of the generated sample: partition name -> float32
    (frames, 4) x1, y1, x2, y2, from every ``<root>/*/_truth.json``.

    Diagnostics and tests only: the sidecar holds the answer (and real DFDC has none), so
    **no training or inference node may call this**.
    """
    return {
        partition_name(part, video): np.asarray(entry["boxes"], np.float32).reshape(-1, 4)
        for part, video, entry in _truth_videos(root)
    }


def load_truth_actors(root: Path | str) -> dict[str, str]:
    """Actor id of every video of the generated sample (a FAKE: the original's actor, whose
    body and background it shows). Diagnostics only, like :func:`load_truth_boxes`."""
    return {video: str(entry["actor"]) for _, video, entry in _truth_videos(root)}


def load_truth_families(root: Path | str) -> dict[str, str | None]:
    """The manipulation family of every video of the generated sample (None for a REAL),
    by partition name; empty for real DFDC (no sidecar). Diagnostics only, like
    :func:`load_truth_boxes`: it decides which fakes a leave-one-family-out run holds out,
    and groups the report's figures."""
    return {
        partition_name(part, video): entry.get("family")
        for part, video, entry in _truth_videos(root)
    }


def box_iou(boxes: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of each (x1, y1, x2, y2) box of ``boxes`` with the one ``truth`` box."""
    x1 = np.maximum(boxes[:, 0], truth[0])
    y1 = np.maximum(boxes[:, 1], truth[1])
    x2 = np.minimum(boxes[:, 2], truth[2])
    y2 = np.minimum(boxes[:, 3], truth[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    truth_area = (truth[2] - truth[0]) * (truth[3] - truth[1])
    return inter / np.maximum(area + truth_area - inter, 1e-9)


def detection_recall(
    index: pd.DataFrame,
    truth_boxes: Mapping[str, np.ndarray],
    iou_threshold: float = 0.5,
) -> float:
    """Share of the sampled frames of REAL videos in which a kept face overlaps the truth
    box with IoU >= ``iou_threshold`` (a frame without a kept face counts as a miss).

    ``index``: the face index (:data:`INDEX_COLUMNS`); only rows labelled REAL whose
    partition has truth boxes count (a fake's swapped face has the original's box, but the
    detector's job is judged on reals). Raises ``ValueError`` when there is none, rather
    than returning NaN.
    """
    reals = index[(index["label"] == "REAL") & index["partition"].isin(list(truth_boxes))]
    if reals.empty:
        raise ValueError("no REAL record with truth boxes: detection recall is undefined")
    total = int(reals.groupby("partition")["sampled_frames"].first().sum())
    hits = 0
    for (partition, frame), faces in reals.groupby(["partition", "frame_index"]):
        truth = np.asarray(truth_boxes[partition], np.float32)
        if frame < len(truth):
            boxes = faces[["x1", "y1", "x2", "y2"]].to_numpy(np.float32)
            hits += bool(box_iou(boxes, truth[frame]).max() >= iou_threshold)
    return hits / total
