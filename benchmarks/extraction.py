"""Face extraction: decode + detect + crop + save against decode alone and stock MTCNN.

Issue 18, part 2. On the REAL videos of the embedded DFDC sample (``data/01_raw/deepfake``,
written if absent; ``--frame-size=1920x1080`` writes a few REAL videos of that size into
the scratch folder instead), with the configured ``deepfake.extraction`` settings
(``--env`` chooses the configuration, ``--params`` overrides leaves, ``--frames`` the
frames sampled per video; the detector runs on ``--device``). Inside one process, one
case after the other, every case over the same videos:

- **decode**: podium's frame sampling and decoding as extraction does it
  (``read_sampled_frames``: probe the header, ``n_frames`` evenly spread, seek or decode
  forward by ``seek_gap``): the ceiling, nothing can extract faster than it decodes;
- **stock**: facenet-pytorch's own ``MTCNN(keep_all=True)`` (its shipped weights,
  default thresholds and pyramid factor) ``.detect`` on the same decoded frames, a list of
  frames a call (``batch_size`` at most), downscaled first with ``cv2.resize`` as the
  README's FastMTCNN does, boxes mapped back; at every ``--scales`` factor;
- **podium**: podium's detection path (``podium.faces.detect.detect_faces``, the
  configured ``batch_size`` and ``min_confidence``) on the same frames at the same scales;
- **end to end**: podium's per-video extraction as the pipeline's Dask task does it
  (``extract_group`` on a job of one REAL video: decode, detect at the configured
  ``downscale``, keep, crop) and the save of its record and face-index rows as the
  catalog writes them (``AtomicPickleDataset``, joblib, record compressed at 3) into a
  temporary folder.

The frames come from the videos once, before anything is timed, and every case runs once
on the first video untimed (the detectors' first call, the allocator). Then ``--repeats``
rounds: in each, every video goes through every case in turn (the order reversed from
one video to the next), each case's seconds summed over the videos; the medians over the
rounds are kept, and each ratio is taken inside one round and then its median.

Every detecting case carries its **recall at IoU 0.5** (``deepfake.diagnostics.iou``)
against the sample's truth boxes, as ``detection_recall`` defines it: the share of the
sampled frames in which a found face (stock: any box MTCNN returns; podium: those at
``min_confidence`` or above; end to end: the kept faces of the records) overlaps the
truth box; a video without any face counts all its frames as misses. Speed bought with
lost faces shows as a recall below the full-size one.

Columns: ``frames/s`` (sampled frames a second), ``recall`` (and its loss against the same
detector at full size), ``x full`` (frames/s against the same detector at full size),
``ratio`` = podium / stock at the same scale, and end to end / decode; the end-to-end row
also splits its time into decode (the decode row), detection at the configured scale
(podium's row), the save (timed inside) and the rest (keeping, cropping, the record).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from podium.core.config import soft_merged

#: Downscale factors of the detection cases by default (full size always runs).
SCALES = (1.0, 0.5, 0.25)
#: Frames of each video written for ``--frame-size`` (the sample's own: 15 fps x 2 s).
GENERATED_FPS, GENERATED_SECONDS = 15, 2.0


# ---------------------------------------------------------------------------- arguments


def _scales(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected factors like 1,0.5,0.25, got {text!r}"
        ) from None
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected factors in (0, 1] like 1,0.5, got {text!r}")
    return values


def _size(text: str) -> tuple[int, int] | None:
    if text == "native":
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected native or WxH like 1920x1080, got {text!r}"
        ) from None
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"WxH must be even and at least 64x64, got {text!r}")
    return width, height


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("extraction suite")
    group.add_argument(
        "--videos",
        type=int,
        default=10,
        help="REAL videos of the DFDC sample to extract (default 10: all of its training reals)",
    )
    group.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames sampled per video (default: deepfake.extraction.n_frames)",
    )
    group.add_argument(
        "--scales",
        type=_scales,
        default=list(SCALES),
        help="detection downscale factors (default 1,0.5,0.25; 1 and the configured one "
        "always run)",
    )
    group.add_argument(
        "--frame-size",
        type=_size,
        default=None,
        metavar="native|WxH",
        help="native: the sample in data/01_raw/deepfake; WxH (e.g. 1920x1080): --videos REAL "
        "videos of that size written into the scratch folder first (about 5 s a video at "
        "1080p on one core)",
    )


# ---------------------------------------------------------------------------- inputs


@dataclass
class Video:
    """One REAL video, its sampled frames decoded once, and its truth boxes."""

    partition: str
    path: str
    folder: str
    name: str
    truth: np.ndarray  # (frames_total, 4) x1, y1, x2, y2
    frames: np.ndarray  # (k, H, W, 3) uint8 RGB, the sampled frames
    indices: np.ndarray  # (k,) their frame numbers


def _generated_root(context: Any, size: tuple[int, int], videos: int, frames: int) -> Path:
    """``videos`` REAL videos of ``size`` (the sample's generator, no fakes, no test set)."""
    from podium.sample_data.deepfake import generate_deepfake_sample

    width, height = size
    root = context.scratch / f"dfdc-{width}x{height}"
    seconds = max(GENERATED_SECONDS, frames / GENERATED_FPS)
    print(f"==> extraction: writing {videos} REAL {width}x{height} videos into {root}", flush=True)
    params = {
        "n_parts": 1,
        "reals_per_part": videos,
        "fakes_per_real": 0,
        "actors_per_part": min(videos, 3),
        "n_test_videos": 0,
        "width": width,
        "height": height,
        "fps": GENERATED_FPS,
        "seconds": seconds,
    }
    seed = int((context.parameters.get("sample_data") or {}).get("seed", 0))
    for relative, data in generate_deepfake_sample(params, seed).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def load_videos(root: Path, count: int, settings: Mapping[str, Any]) -> list[Video]:
    """The first ``count`` REAL videos under ``root`` with truth boxes, frames decoded."""
    from podium.faces.video import read_sampled_frames
    from podium.layouts.deepfake import index_deepfake
    from podium.pipelines.deepfake.data import load_truth_boxes, partition_name

    truth = load_truth_boxes(root)
    table = index_deepfake(root).videos
    chosen = []
    for row in table.sort_values(["folder", "video"]).to_dict("records"):
        partition = partition_name(row["folder"], row["video"])
        if row["label"] == "REAL" and partition in truth:
            chosen.append((partition, row))
    if not chosen:
        raise SystemExit(f"no REAL video with truth boxes under {root}: is it the sample?")
    out = []
    for partition, row in chosen[:count]:
        frames, indices, _ = read_sampled_frames(
            row["path"], settings["n_frames"], settings["seek_gap"]
        )
        out.append(
            Video(
                partition,
                str(row["path"]),
                str(row["folder"]),
                str(row["video"]),
                truth[partition],
                frames,
                indices,
            )
        )
    return out


# ---------------------------------------------------------------------------- cases

#: Boxes (n, 4) found in each sampled frame of a video: what the recall is computed from.
Found = list[np.ndarray]


def _boxes(detections: Any, scale: float) -> np.ndarray:
    if detections is None:
        return np.zeros((0, 4), np.float32)
    # facenet-pytorch builds an object array under numpy 2
    return np.asarray(detections, dtype=np.float32).reshape(-1, 4) / scale


def stock_detect(mtcnn: Any, scale: float, batch_size: int) -> Callable[[Video], Found]:
    """facenet-pytorch as its README's FastMTCNN calls it: frames resized with cv2, a list
    of frames a ``detect`` call, boxes divided by the factor."""
    import cv2

    def detect(video: Video) -> Found:
        frames = list(video.frames)
        if scale != 1:
            frames = [
                cv2.resize(f, (int(f.shape[1] * scale), int(f.shape[0] * scale))) for f in frames
            ]
        found: Found = []
        for start in range(0, len(frames), batch_size):
            boxes, _ = mtcnn.detect(frames[start : start + batch_size])
            found.extend(_boxes(b, scale) for b in boxes)
        return found

    return detect


def podium_detect(settings: Mapping[str, Any], scale: float) -> Callable[[Video], Found]:
    """podium's detector wrapper with the configured batch, thresholds and confidence, at
    ``scale``."""
    from podium.faces.detect import detect_faces
    from podium.faces.video import setting

    def detect(video: Video) -> Found:
        found = detect_faces(
            list(video.frames),
            device=settings["device"],
            batch_size=settings["batch_size"],
            downscale=scale,
            min_confidence=settings["min_confidence"],
            thresholds=setting(settings, "thresholds"),
        )
        return [np.array([d.box for d in faces], np.float32).reshape(-1, 4) for faces in found]

    return detect


def decode(settings: Mapping[str, Any]) -> Callable[[Video], None]:
    """Extraction's frame sampling and decoding: the header probed, the frames decoded."""
    from podium.faces.video import read_sampled_frames

    def run(video: Video) -> None:
        read_sampled_frames(video.path, settings["n_frames"], settings["seek_gap"])

    return run


class EndToEnd:
    """The pipeline's task on one REAL video (``extract_group``), its record and face rows
    saved as the catalog does (conf/base/catalog_deepfake.yml: deepfake_faces,
    deepfake_face_rows): joblib through AtomicPickleDataset, the record compressed at 3.
    ``save_seconds`` adds up the time spent saving."""

    def __init__(self, settings: Mapping[str, Any], folder: Path) -> None:
        from podium.pipelines.deepfake.data import settings_key

        self.settings, self.folder = settings, folder / settings_key(settings)
        self.save_seconds = 0.0

    def _save(self, kind: str, partition: str, data: Any, save_args: dict) -> None:
        from podium.datasets import AtomicPickleDataset

        path = self.folder / kind / f"{partition}.joblib"
        path.parent.mkdir(parents=True, exist_ok=True)
        AtomicPickleDataset(filepath=str(path), backend="joblib", save_args=save_args).save(data)

    def __call__(self, video: Video) -> Found:
        from podium.pipelines.deepfake.data import extract_group, face_rows

        member = {
            "video": video.name,
            "folder": video.folder,
            "path": video.path,
            "label": "REAL",
            "original": None,
            "partition": video.partition,
        }
        job = {
            "original": member,
            "extract_original": True,
            "fakes": [],
            "settings": self.settings,
        }
        result = extract_group(job)
        record = result["records"].get(video.partition)
        if record is None:  # no face in any sampled frame (or unreadable): all misses
            return [np.zeros((0, 4), np.float32) for _ in video.indices]
        begin = time.perf_counter()
        self._save("faces", video.partition, record, {"compress": 3})
        self._save("face_rows", video.partition, face_rows(video.partition, record), {})
        self.save_seconds += time.perf_counter() - begin
        where = {int(i): k for k, i in enumerate(record["sampled_indices"])}
        found: list[list] = [[] for _ in record["sampled_indices"]]
        for frame, box in zip(record["frame_indices"], record["boxes"], strict=True):
            found[where[int(frame)]].append(box)
        return [np.array(b, np.float32).reshape(-1, 4) for b in found]


@dataclass(frozen=True)
class Case:
    key: str  # decode | stock | podium | end_to_end
    scale: float | None  # detection downscale (None: decode)
    run: Callable[[Video], Found | None] = field(compare=False)

    @property
    def name(self) -> str:
        return self.key if self.scale is None else f"{self.key}@{self.scale:g}"


# ---------------------------------------------------------------------------- measuring


def recall(videos: Sequence[Video], found: Sequence[Found], iou: float) -> tuple[float, float]:
    """(share of the sampled frames with a found box at IoU >= ``iou`` with the truth box,
    boxes per frame)."""
    from podium.pipelines.deepfake.data import box_iou

    hits = frames = boxes = 0
    for video, per_frame in zip(videos, found, strict=True):
        for index, got in zip(video.indices, per_frame, strict=True):
            frames += 1
            boxes += len(got)
            if len(got) and index < len(video.truth):
                hits += bool(box_iou(got, video.truth[index]).max() >= iou)
    return hits / frames, boxes / frames


@dataclass
class Timing:
    """One case over every video once."""

    seconds: float
    frames: int
    recall: float = math.nan
    boxes_per_frame: float = math.nan
    save_seconds: float = math.nan  # end to end: of which saving the records

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else math.nan


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def _timed_call(case: Case, video: Video, device: str) -> tuple[float, Found | None]:
    _sync(device)
    begin = time.perf_counter()
    found = case.run(video)
    _sync(device)
    return time.perf_counter() - begin, found


def measure(
    cases: Sequence[Case], videos: Sequence[Video], repeats: int, device: str, iou: float
) -> dict[str, list[Timing]]:
    """Every case once on the first video untimed, then ``repeats`` rounds; in each round
    every video goes through every case in turn (the order reversed from one video to the
    next), so that the cases share the machine's moods, and each case's seconds add up
    over the videos."""
    for case in cases:
        case.run(videos[0])
    frames = sum(len(v.indices) for v in videos)
    out: dict[str, list[Timing]] = {c.name: [] for c in cases}
    for repeat in range(repeats):
        seconds = dict.fromkeys(out, 0.0)
        found: dict[str, list[Found]] = {name: [] for name in out}
        saving = [c.run for c in cases if isinstance(c.run, EndToEnd)]
        for run in saving:
            run.save_seconds = 0.0
        for j, video in enumerate(videos):
            for case in cases if (repeat + j) % 2 == 0 else list(reversed(cases)):
                spent, got = _timed_call(case, video, device)
                seconds[case.name] += spent
                found[case.name].append(got)
        for case in cases:
            timing = Timing(seconds[case.name], frames)
            if case.scale is not None:
                timing.recall, timing.boxes_per_frame = recall(videos, found[case.name], iou)
            if isinstance(case.run, EndToEnd):
                timing.save_seconds = case.run.save_seconds
            out[case.name].append(timing)
            line = f"    extraction repeat {repeat + 1}/{repeats} {case.name:<18}"
            line += f"{timing.frames_per_second:8.1f} frames/s"
            if math.isfinite(timing.recall):
                line += f", recall {timing.recall:.3f}"
            print(line, flush=True)
    return out


# ---------------------------------------------------------------------------- rows


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(statistics.median(finite)) if finite else math.nan


def _per_repeat(a: Sequence[Timing], b: Sequence[Timing]) -> list[float]:
    """``a``'s frames/s over ``b``'s, repeat by repeat."""
    return [x.frames_per_second / y.frames_per_second for x, y in zip(a, b, strict=True)]


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    try:
        if threads:  # as the project's hook does before every run
            torch.set_num_threads(int(threads))
        yield
    finally:
        torch.set_num_threads(before)


def _settings(parameters: Mapping[str, Any], device: str, frames: int | None) -> dict[str, Any]:
    from podium.faces.video import check_extraction_settings

    extraction = dict(parameters["deepfake"]["extraction"])
    extraction["device"] = device
    if frames is not None:
        extraction["n_frames"] = frames
    return check_extraction_settings(extraction)


def run(args: argparse.Namespace, context: Any) -> list[dict]:
    """Every case on the chosen videos, measured in this process: the table rows."""
    if args.videos < 1 or (args.frames is not None and args.frames < 1):
        raise SystemExit("--videos and --frames must be at least 1")
    parameters = soft_merged(context.parameters, getattr(args, "params", None) or {})
    settings = _settings(parameters, context.device, args.frames)
    iou = float(((parameters["deepfake"].get("diagnostics") or {}).get("iou")) or 0.5)
    configured = settings["downscale"]
    scales = sorted({1.0, configured, *args.scales}, reverse=True)
    threads = (parameters.get("runtime") or {}).get("torch_threads")
    begun = time.perf_counter()
    with _torch_threads(threads):
        if args.frame_size is None:
            root = context.raw("deepfake")
        else:
            root = _generated_root(context, args.frame_size, args.videos, settings["n_frames"])
        videos = load_videos(root, args.videos, settings)
        height, width = videos[0].frames.shape[1:3]
        print(
            f"==> extraction: {len(videos)} REAL videos x {settings['n_frames']} frames "
            f"({width}x{height}) on {context.device}, scales {scales}",
            flush=True,
        )
        from facenet_pytorch import MTCNN

        mtcnn = MTCNN(keep_all=True, device=torch.device(context.device))
        cases = [Case("decode", None, decode(settings))]
        for scale in scales:
            cases.append(Case("stock", scale, stock_detect(mtcnn, scale, settings["batch_size"])))
            cases.append(Case("podium", scale, podium_detect(settings, scale)))
        cases.append(
            Case("end_to_end", configured, EndToEnd(settings, context.scratch / "extraction"))
        )
        timings = measure(cases, videos, args.repeats, context.device, iou)
        used_threads = torch.get_num_threads()
    common = {
        "videos": len(videos),
        "n_frames": settings["n_frames"],
        "frames_per_video": sum(len(v.indices) for v in videos) / len(videos),
        "frame_size": f"{width}x{height}",
        "batch_size": settings["batch_size"],
        "min_confidence": settings["min_confidence"],
        "keep": settings["keep"],
        "crop_size": "x".join(str(v) for v in settings["crop_size"]),
        "configured_downscale": configured,
        "iou": iou,
        "torch_threads": used_threads,
        "repeats": args.repeats,
        "case_seconds": round(time.perf_counter() - begun, 1),
    }
    return rows(cases, timings, common)


def _row(case: Case, samples: Sequence[Timing], common: dict, width: int, height: int) -> dict:
    scale = case.scale
    return {
        "case": case.key,
        **common,
        "scale": scale,
        "detect_size": "" if scale is None else f"{round(width * scale)}x{round(height * scale)}",
        "frames_per_second": _median([s.frames_per_second for s in samples]),
        "frames_per_second_min": min(s.frames_per_second for s in samples),
        "frames_per_second_max": max(s.frames_per_second for s in samples),
        "seconds_per_video": _median([s.seconds for s in samples]) / common["videos"],
        "recall_iou50": _median([s.recall for s in samples]),
        "boxes_per_frame": _median([s.boxes_per_frame for s in samples]),
        "samples": [
            {
                "seconds": s.seconds,
                "frames": s.frames,
                "recall": s.recall,
                **({"save_seconds": s.save_seconds} if math.isfinite(s.save_seconds) else {}),
            }
            for s in samples
        ],
    }


def rows(cases: Sequence[Case], timings: Mapping[str, list[Timing]], common: dict) -> list[dict]:
    """One table row per case: medians, the ratios taken repeat by repeat."""
    width, height = (int(v) for v in common["frame_size"].split("x"))
    out = []
    for case in cases:
        samples = timings[case.name]
        row = _row(case, samples, common, width, height)
        ratios: list[float] = []
        row["ratio_to"] = ""
        if case.key in ("stock", "podium"):
            full = timings[f"{case.key}@1"]
            row["speedup_vs_full"] = _median(_per_repeat(samples, full))
            row["recall_loss_vs_full"] = _median([s.recall for s in full]) - row["recall_iou50"]
        if case.key == "podium":
            ratios, row["ratio_to"] = (
                _per_repeat(samples, timings[f"stock@{case.scale:g}"]),
                "stock",
            )
        if case.key == "end_to_end":
            ratios, row["ratio_to"] = _per_repeat(samples, timings["decode"]), "decode"
            detect = timings[f"podium@{case.scale:g}"]
            decoded = timings["decode"]
            row["decode_share"] = _median(
                [d.seconds / s.seconds for d, s in zip(decoded, samples, strict=True)]
            )
            row["detect_share"] = _median(
                [d.seconds / s.seconds for d, s in zip(detect, samples, strict=True)]
            )
            row["save_share"] = _median([s.save_seconds / s.seconds for s in samples])
            row["rest_share"] = 1 - row["decode_share"] - row["detect_share"] - row["save_share"]
            podium_full = timings["podium@1"]
            row["recall_loss_vs_full"] = (
                _median([s.recall for s in podium_full]) - row["recall_iou50"]
            )
        if ratios:
            row["ratio"] = _median(ratios)
            row["ratio_min"], row["ratio_max"] = min(ratios), max(ratios)
        out.append(row)
    return out


# ---------------------------------------------------------------------------- reporting

LABELS = {
    "decode": "decode (podium read_sampled_frames)",
    "stock": "stock facenet-pytorch MTCNN.detect",
    "podium": "podium detect_faces",
    "end_to_end": "end to end (extract_group + save)",
}


def _f(value: Any, digits: int = 1) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return ""
    return f"{value:,.{digits}f}"


def markdown(rows: Sequence[dict]) -> str:
    first = rows[0]
    lines = [
        "### Face extraction: podium's detection and extraction against decode alone and "
        "stock MTCNN",
        "",
        f"{first['videos']} REAL videos of the DFDC sample x {first['frames_per_video']:g} sampled "
        f"frames (n_frames {first.get('n_frames', '?')}), {first['frame_size']}; batch "
        f"{first['batch_size']}, min_confidence {first['min_confidence']:g}, keep "
        f"{first['keep']}, crops {first['crop_size']}, "
        f"configured downscale {first['configured_downscale']:g}, {first['torch_threads']} "
        f"torch thread(s). frames/s: sampled frames a second (median over the repeats, their "
        "range in brackets); recall: share of the sampled frames where a found face (stock: "
        "any box; podium: min_confidence and above; end to end: the kept faces) overlaps the "
        f"truth box at IoU >= {first['iou']:g}, and its loss against the same detector at "
        "full size (end to end: against podium's at full size); x full: frames/s against the "
        "same detector at full size; ratio: podium / stock at the same scale, end to end / "
        "decode; split: end to end's time in decode (the decode row), detection (podium's "
        "row at that scale), the save of the record and its rows, and the rest (keep, crop, "
        "the record).",
        "",
        "| case | scale | detect size | frames/s | s/video | recall | recall loss | boxes/frame "
        "| x full | ratio | split |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fps = _f(r["frames_per_second"])
        if r["repeats"] > 1:
            fps += f" ({_f(r['frames_per_second_min'])}-{_f(r['frames_per_second_max'])})"
        ratio = ""
        if "ratio" in r:
            ratio = f"{_f(r['ratio'], 2)} of {r['ratio_to']}"
            if r["repeats"] > 1:
                ratio += f" ({_f(r['ratio_min'], 2)}-{_f(r['ratio_max'], 2)})"
        split = ""
        if "decode_share" in r:
            parts = ("decode", "detect", "save", "rest")
            split = ", ".join(
                f"{part} {_f(100 * r[f'{part}_share'], 0)}%"
                for part in parts
                if f"{part}_share" in r
            )
        scale = "" if r["scale"] is None else f"{r['scale']:g}"
        lines.append(
            f"| {LABELS.get(r['case'], r['case'])} | {scale} | {r['detect_size']} | {fps} "
            f"| {_f(r['seconds_per_video'], 3)} | {_f(r['recall_iou50'], 3)} "
            f"| {_f(r.get('recall_loss_vs_full'), 3)} | {_f(r['boxes_per_frame'], 2)} "
            f"| {_f(r.get('speedup_vs_full'), 2)} | {ratio} | {split} |"
        )
    return "\n".join(lines)


METRICS = (
    "frames_per_second",
    "seconds_per_video",
    "recall_iou50",
    "recall_loss_vs_full",
    "boxes_per_frame",
    "speedup_vs_full",
    "ratio",
    "decode_share",
    "detect_share",
    "save_share",
    "rest_share",
)


def _scale_key(scale: float) -> str:
    return "scale_" + f"{scale:g}".replace(".", "_")


def metrics(rows: Sequence[dict]) -> dict[str, float]:
    """``bench/extract/decode/<metric>``, ``bench/extract/<stock|podium>/scale_<s>/<metric>``
    (scale_0_5 for 0.5) and ``bench/extract/end_to_end/<metric>``; ``ratio`` is podium /
    stock for podium's rows and end to end / decode for end to end's."""
    out: dict[str, float] = {}
    for r in rows:
        prefix = f"bench/extract/{r['case']}"
        if r["case"] in ("stock", "podium"):
            prefix += f"/{_scale_key(r['scale'])}"
        for key in METRICS:
            value = r.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                out[f"{prefix}/{key}"] = float(value)
    return out
