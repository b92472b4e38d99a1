"""Scoring new videos with a trained deepfake ensemble: frames -> faces -> frame
probabilities -> video scores -> calibration, one video at a time, fanned out over Dask.

The **scorer** (:func:`build_scorer`) is everything a trained run knows beyond the fold
models' weights: the extraction and model settings, the video rule and the training prior,
the fitted calibration and, with ``stacking.replace_mean``, the LightGBM stacker. With the
weights it scores a video exactly as the training run scored its test videos: the same
extraction code, the same per-video batches (:func:`~podium.pipelines.deepfake.train.
video_batches`) and the same rule, ensemble and calibration functions, so one video's
probability does not depend on where, when or with what else it is scored.

:func:`stream_scores` scores a table of videos on a Dask client (or here): each task takes
``videos_per_task`` videos, decodes and detects the next ones in a thread while the models
score the current one (a bounded prefetching queue), and loads the fold models once per
worker (they reach every worker once, scattered, and stay built there). Results are small
dicts (:data:`RESULT_KEYS`), yielded as tasks finish so a caller can save them at once and a
re-run scores only what is missing (:func:`pending_videos`). A video that cannot be read or
holds no face gets the fallback with its reason, never a NaN; a task lost with its worker is
retried by Dask on another one, and if it still fails its videos come back ``failed``.

:func:`timing_summary`, :func:`budget_verdict` and :func:`cost_table` turn the per-video
timings into seconds per video (decode, detect, model, total), the projected hours for N
videos and what they cost on a list of instance types.

No kedro or mlflow imports.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from podium.core.config import check_range
from podium.core.device import resolve_runtime
from podium.core.distributed import ItemError, dask_client, iter_items
from podium.core.params import TypedBlock
from podium.faces.video import (
    NoFaceError,
    check_extraction_settings,
    extract_faces_from_frames,
    read_sampled_frames,
    video_record,
)
from podium.layouts.deepfake import VideoReadError
from podium.pipelines.deepfake import scoring, stacking
from podium.pipelines.deepfake.data import content_key, face_rows, stored_content_changed
from podium.pipelines.deepfake.params import (
    InferenceParams,
    TrainingParams,
    VideoScoreParams,
    typed,
)
from podium.pipelines.deepfake.train import check_state_dicts, fold_network, predict_videos

__all__ = [
    "RESULT_KEYS",
    "STATUSES",
    "budget_verdict",
    "build_scorer",
    "check_scorer",
    "cost_table",
    "failed_results",
    "fallback_probability",
    "pending_videos",
    "result_partition",
    "score_task",
    "scoring_workers",
    "scorer_digest",
    "scoring_scorer",
    "stream_scores",
    "timing_summary",
    "video_table",
    "weights_digest",
]

log = logging.getLogger(__name__)

#: Parameter path of the settings block (conf/base/parameters_deepfake_inference.yml).
PARAMETER = "deepfake_inference"
SCORER_FORMAT = 1
#: ``scored``: a probability from the models; the others get the fallback.
STATUSES = ("scored", "no_face", "unreadable", "failed")
BUDGET_ACTIONS = ("warn", "fail")
STAGES = ("decode", "detect", "model", "total")
#: Keys of one video's result.
RESULT_KEYS = (
    "video",
    "path",
    "status",
    "reason",
    "prob",
    "n_faces",
    "decode_s",
    "detect_s",
    "model_s",
    "total_s",
    "scorer",
    "content",
    "content_size",
    "content_mtime_ns",
)


def _param(key: str) -> str:
    return f"{PARAMETER}.{key}"


def _configured(block: Mapping[str, Any]) -> dict[str, Any]:
    """A block as the configuration wrote it, in JSON types (what a scorer keeps: its
    digest names the stored results, so it stays what the YAML says)."""
    if isinstance(block, TypedBlock):
        return block.as_configured()
    return json.loads(json.dumps(dict(block), default=list))


# ---------------------------------------------------------------------------- the scorer


def weights_digest(state_dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in key order."""
    digest = hashlib.sha256()
    for model in sorted(state_dicts):
        for name in sorted(state_dicts[model]):
            tensor = state_dicts[model][name].detach().cpu().contiguous()
            digest.update(f"{model}/{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def build_scorer(
    *,
    training: Mapping[str, Any],
    extraction: Mapping[str, Any],
    video_score: Mapping[str, Any],
    prior: float,
    calibration: Mapping[str, float],
    stacker: str | None,
    replace_mean: bool,
    weights: str,
    runtime: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-ready scorer of a trained run (see the module docstring); ``weights``: the
    :func:`weights_digest` of the fold models it goes with; ``runtime``: the run's block,
    whose ``precision`` and ``channels_last`` its test predictions were made with (on a GPU
    they change the last bits)."""
    runtime = runtime or {}
    scorer = {
        "format": SCORER_FORMAT,
        "training": _configured(training),
        "extraction": _configured(extraction),
        "video_score": _configured(video_score),
        "prior": float(prior),
        "calibration": {
            **{k: float(calibration[k]) for k in ("factor", "shift", "low", "high")},
            "target_shift": float(calibration.get("target_shift", 0.0)),
        },
        "stacker": stacker if replace_mean else None,
        "weights": weights,
        "runtime": {
            "precision": str(runtime.get("precision", "auto")),
            "channels_last": bool(runtime.get("channels_last", False)),
        },
    }
    return check_scorer(scorer)


def check_scorer(scorer: Mapping[str, Any]) -> dict[str, Any]:
    """The scorer, checked: its format, settings and numbers (a clear error, not a KeyError)."""
    required = ("format", "training", "extraction", "video_score", "prior", "calibration")
    missing = [k for k in (*required, "stacker", "weights") if k not in scorer]
    if missing or scorer.get("format") != SCORER_FORMAT:
        raise ValueError(
            f"not a deepfake scorer of format {SCORER_FORMAT} (missing {missing}, format "
            f"{scorer.get('format')!r}); fix: run the deepfake training pipeline again, which "
            "saves deepfake_scorer beside the frame models"
        )
    TrainingParams.model_validate(scorer["training"])
    check_extraction_settings(scorer["extraction"])
    VideoScoreParams.model_validate(scorer["video_score"])
    check_range("deepfake_scorer.prior", scorer["prior"], low=0.0, high=1.0)
    return dict(scorer)


def scoring_scorer(scorer: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The scorer as this run scores with it: ``thresholds`` (when set) replace the
    training crops' MTCNN thresholds, so the results are kept under another digest."""
    scorer = check_scorer(scorer)
    if settings.get("thresholds") is None:
        return scorer
    extraction = {**scorer["extraction"], "thresholds": list(settings["thresholds"])}
    check_extraction_settings(extraction)  # errors name deepfake.extraction.thresholds
    return {**scorer, "extraction": extraction}


def scorer_digest(scorer: Mapping[str, Any]) -> str:
    """Short digest of the whole scorer (weights included): results are kept per digest."""
    text = json.dumps(dict(scorer), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _booster(text: str | None):
    if text is None:
        return None
    import lightgbm as lgb

    return lgb.Booster(model_str=text)


class LoadedEnsemble:
    """The fold networks of a scorer, built once (per process, on its device)."""

    def __init__(self, state_dicts: Mapping[str, Any], scorer: Mapping[str, Any], device: str):
        self.config = TrainingParams.model_validate(scorer["training"])
        self.extraction = check_extraction_settings({**scorer["extraction"], "device": device})
        self.runtime = resolve_runtime(
            {**scorer.get("runtime", {}), "device": device, "num_workers": 0}
        )
        keys = check_state_dicts(state_dicts, self.config)
        self.networks = {
            spec.name: [
                fold_network(spec, self.config, state_dicts[key]).to(self.runtime.device)
                for key in keys[spec.name]
            ]
            for spec in self.config.models
        }
        self.scorer = scorer
        self.booster = _booster(scorer["stacker"])

    def frame_probs(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """model -> per-crop FAKE probabilities of one record."""
        rows = face_rows("video", record)
        folds = {name: (lambda nets=nets: nets) for name, nets in self.networks.items()}
        probs = predict_videos({"video": lambda: record}, rows, folds, self.config, self.runtime)
        return {name: per_video["video"] for name, per_video in probs.items()}


_LOADED: dict[str, LoadedEnsemble] = {}


def _loaded(shared: Mapping[str, Any]) -> LoadedEnsemble:
    """This process's ensemble for ``shared["digest"]``, built on first use (one at a time)."""
    key = f"{shared['digest']}@{shared['device']}"
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = LoadedEnsemble(shared["state_dicts"], shared["scorer"], shared["device"])
    return _LOADED[key]


# ---------------------------------------------------------------------------- one video


def ensemble_probability(
    scorer: Mapping[str, Any],
    frame_probs: Mapping[str, np.ndarray] | None,
    face_features: Mapping[str, Any] | None = None,
    booster: Any = None,
) -> float:
    """One video's calibrated probability as the training run computes it: each model's
    video score (its rule; no frames -> the prior), the stacker's score instead with
    ``replace_mean``, the logit mean of the scores, the fitted calibration.
    ``frame_probs`` None: the video has no usable face."""
    rule = scorer["video_score"]
    options = {k: v for k, v in rule.items() if k != "rule"}
    names = [spec["name"] for spec in scorer["training"]["models"]]
    probs = frame_probs or {}
    if scorer["stacker"] is not None:
        booster = booster or _booster(scorer["stacker"])
        per_model = [probs[n] for n in names if n in probs]
        frame_scores = scoring.average_logits(per_model) if per_model else np.empty(0)
        features = face_features or {"confidences": np.empty(0), "n_faces": 0, "sampled": 1}
        row = stacking.video_features(
            frame_scores, features["confidences"], features["n_faces"], features["sampled"]
        )
        scores = [stacking.predict_stacker(booster, stacking.feature_table({"video": row}))]
    else:
        scores = [
            np.array(
                [scoring.video_score(probs.get(n, ()), rule["rule"], scorer["prior"], **options)]
            )
            for n in names
        ]
    raw = scoring.average_logits(scores)
    c = scorer["calibration"]
    shift = c["shift"] + c.get("target_shift", 0.0)  # the deployment prior, as the test set's
    return float(scoring.calibrate(raw, c["factor"], c["low"], c["high"], shift=shift)[0])


def fallback_probability(
    scorer: Mapping[str, Any], fallback: float | str, booster: Any = None
) -> float:
    """The probability of a video without a usable result: ``prior`` scores it as the
    training run scores a faceless video; a number is taken as it is."""
    if fallback == "prior":
        return ensemble_probability(scorer, None, booster=booster)
    return float(fallback)


def _extracted(video: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Decode and detect one video: its record (or status and reason) and the timings."""
    out: dict[str, Any] = {"record": None, "status": "scored", "reason": None}
    start = time.perf_counter()
    try:
        out.update(content_key(video["path"]))
        frames, indices, info = read_sampled_frames(
            video["path"], settings["n_frames"], settings["seek_gap"]
        )
        decoded = time.perf_counter()
        out["decode_s"] = decoded - start
        faces = extract_faces_from_frames(frames, indices, settings, checked=True)
        out["record"] = video_record(video["path"], info, faces, settings)
    except NoFaceError as error:
        out.update(status="no_face", reason=f"{type(error).__name__}: {error}")
    except (VideoReadError, OSError) as error:
        out.update(status="unreadable", reason=f"{type(error).__name__}: {error}")
    except Exception as error:  # one bad video is data, not a crash of its task
        out.update(status="failed", reason=f"{type(error).__name__}: {error}")
    out.setdefault("decode_s", time.perf_counter() - start)
    out["detect_s"] = time.perf_counter() - start - out["decode_s"]
    out["started"] = start
    return out


def _prefetched(
    items: Sequence[Mapping[str, Any]], work: Callable[[Mapping[str, Any]], Any], depth: int
) -> Iterator[tuple[Mapping[str, Any], Any]]:
    """``(item, work(item))`` in order, ``work`` running ``depth`` items ahead in a thread
    (decode and detection overlap the model; at most ``depth`` results wait)."""
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        for item in items:
            result = work(item)
            while not stop.is_set():
                try:
                    waiting.put((item, result), timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        waiting.put(done)

    thread = threading.Thread(target=produce, name="podium-prefetch", daemon=True)
    thread.start()
    try:
        while (entry := waiting.get()) is not done:
            yield entry
    finally:
        stop.set()


def score_task(job: Mapping[str, Any], shared: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Score ``job["videos"]`` (dicts with ``video`` and ``path``) with the shared ensemble:
    one result dict (:data:`RESULT_KEYS`) per video, in order. Top level, for Dask."""
    device = shared["device"]
    if device == "cuda":  # one GPU per Dask worker, by the worker's name (0..n-1)
        device = f"cuda:{_worker_index() % max(torch.cuda.device_count(), 1)}"
    shared = {**shared, "device": device}
    ensemble = _loaded(shared)
    scorer, digest, fallback = shared["scorer"], shared["digest"], shared["fallback"]
    results = []
    for video, found in _prefetched(
        job["videos"], lambda v: _extracted(v, ensemble.extraction), shared["prefetch"]
    ):
        model_start = time.perf_counter()
        record = found["record"]
        if record is not None:
            features = {
                "confidences": record["confidences"],
                "n_faces": len(record["crops"]),
                "sampled": len(record["sampled_indices"]),
            }
            prob = ensemble_probability(
                scorer, ensemble.frame_probs(record), features, ensemble.booster
            )
        else:
            prob = fallback_probability(scorer, fallback, ensemble.booster)
        end = time.perf_counter()
        results.append(
            {
                "video": video["video"],
                "path": str(video["path"]),
                "status": found["status"],
                "reason": found["reason"],
                "prob": prob,
                "n_faces": 0 if record is None else len(record["crops"]),
                "decode_s": found["decode_s"],
                "detect_s": found["detect_s"],
                "model_s": end - model_start if record is not None else 0.0,
                "total_s": end - found["started"],
                "scorer": digest,
                **{k: found.get(k) for k in ("content", "content_size", "content_mtime_ns")},
            }
        )
    return results


def _worker_index() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().name)
    except (ImportError, ValueError, TypeError):
        return 0


# ---------------------------------------------------------------------------- many videos


def video_table(paths: Sequence[str | os.PathLike[str]] | pd.DataFrame | str) -> pd.DataFrame:
    """``video`` (file name) and ``path`` of the videos to score, from a folder (every
    ``*.mp4``), a list of paths or a table with a ``path`` column; each must exist and the
    file names must be unique (the submission is keyed by file name)."""
    if isinstance(paths, str | os.PathLike) and Path(paths).is_dir():
        listed = sorted(str(p) for p in Path(paths).glob("*.mp4"))
        if not listed:
            raise ValueError(f"no *.mp4 in {paths}; fix: {_param('videos_folder')}")
    elif isinstance(paths, pd.DataFrame):
        if "path" not in paths.columns:
            raise ValueError(f"the videos table needs a `path` column, got {list(paths.columns)}")
        listed = [str(p) for p in paths["path"]]
    elif isinstance(paths, str | os.PathLike):
        raise ValueError(f"{paths} is not a folder; fix: {_param('videos_folder')}")
    else:
        listed = [str(p) for p in paths]
    missing = [p for p in listed if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} video(s) to score do not exist, e.g. {missing[:3]}; fix: list "
            "existing mp4 files"
        )
    table = pd.DataFrame({"video": [Path(p).name for p in listed], "path": listed})
    twice = table.loc[table["video"].duplicated(keep=False), "path"].tolist()
    if twice:
        raise ValueError(
            f"video file names must be unique (the submission is keyed by name), got "
            f"{twice[:4]}; fix: score the folders separately"
        )
    return table


def result_partition(digest: str, video: str) -> str:
    """``<scorer digest>/<video stem>``: one stored result per video and scorer."""
    return f"{digest}/{Path(video).stem}"


def pending_videos(
    videos: pd.DataFrame, stored: Mapping[str, Callable[[], Any]], digest: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The videos without a current stored result for ``digest`` (never scored, scored
    from other bytes, or a result file that does not load), and why each stored one was
    not taken (``{video: reason}``, for a warning)."""
    todo, stale = [], {}
    for row in videos.itertuples(index=False):
        partition = result_partition(digest, row.video)
        if partition not in stored:
            todo.append(True)
            continue
        try:
            result = stored[partition]()
        except Exception as error:  # a result cut short by a killed run: score it again
            stale[row.video] = f"its stored result does not load ({type(error).__name__})"
            todo.append(True)
            continue
        current = stored_content_changed(row.path, result, "it was scored") is None
        if not current:
            stale[row.video] = "the file changed since it was scored"
        todo.append(not current)
    return videos[np.array(todo, dtype=bool)], stale


def failed_results(videos: Sequence[Mapping[str, Any]], reason: str, digest: str) -> list[dict]:
    """A ``failed`` result (:data:`RESULT_KEYS`) with ``reason`` for each video."""
    return [
        {
            **dict.fromkeys(RESULT_KEYS),
            "video": v["video"],
            "path": str(v["path"]),
            "status": "failed",
            "reason": reason,
            "scorer": digest,
        }
        for v in videos
    ]


def scoring_workers(
    device: str, dask: Mapping[str, Any]
) -> tuple[str, int, dict[str, float] | None]:
    """``(device, workers, resources)``: ``cuda`` (or ``auto`` where torch sees a GPU) is
    one Dask worker per GPU, each task needing the worker resource ``GPU``; ``cpu`` is
    ``dask.n_workers`` workers. ``n_workers: 0`` scores here, without Dask (on the first
    GPU with ``cuda``)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    workers = int(dask.get("n_workers", 0))
    if device == "cuda" and workers > 0:
        return device, max(torch.cuda.device_count(), 1), {"GPU": 1}
    return device, workers, None


def stream_scores(
    videos: pd.DataFrame,
    state_dicts: Mapping[str, Any],
    scorer: Mapping[str, Any],
    settings: Mapping[str, Any],
    dask: Mapping[str, Any],
    *,
    progress: bool = True,
) -> Iterator[list[dict[str, Any]]]:
    """Score ``videos`` (:func:`video_table`) and yield each task's results as it finishes.

    On ``dask.scheduler_address``, else a LocalCluster of ``dask.n_workers`` process
    workers (``n_workers: 0``: here, no Dask); with ``device: cuda`` (or ``auto`` on a GPU
    box) one worker per GPU, each task asking for the worker resource ``GPU``. A task that
    fails even after Dask's retries gives its videos ``status: failed`` (not stored by the
    pipeline, so a re-run scores them). ``failed`` results carry ``prob`` None:
    :func:`~podium.pipelines.deepfake.submission.submission_table` gives them the fallback.
    """
    s = typed(InferenceParams, settings)
    scorer = check_scorer(scorer)
    digest = scorer_digest(scorer)
    device, workers, resources = scoring_workers(s["device"], dask)
    shared = {
        "state_dicts": state_dicts,
        "scorer": scorer,
        "digest": digest,
        "device": device,
        "fallback": s["fallback"],
        "prefetch": s["prefetch"],
    }
    rows = videos[["video", "path"]].to_dict("records")
    size = s["videos_per_task"]
    jobs = [{"videos": rows[i : i + size]} for i in range(0, len(rows), size)]
    if not jobs:
        return
    address = dask.get("scheduler_address")
    if not address and workers == 0:
        for job, result in iter_items(
            None, score_task, jobs, 1, progress, "scoring", shared=shared
        ):
            yield _results_of(job, result, digest)
        return
    cluster = {"resources": resources} if resources and not address else {}
    with dask_client(
        address,
        n_workers=workers,
        threads_per_worker=int(dask.get("threads_per_worker", 1)),
        daemon=False,  # a task's DataLoader may start processes
        **cluster,
    ) as client:
        for job, result in iter_items(
            client,
            score_task,
            jobs,
            s["window"],
            progress,
            "scoring",
            shared=shared,
            resources=resources,
        ):
            yield _results_of(job, result, digest)


def _results_of(job: Mapping[str, Any], result: Any, digest: str) -> list[dict[str, Any]]:
    if isinstance(result, ItemError):
        log.warning(
            "a scoring task failed (%s); its %d video(s) are not scored",
            result.error,
            len(job["videos"]),
        )
        return failed_results(job["videos"], f"task failed: {result.error}", digest)
    return result


# ---------------------------------------------------------------------------- the outputs


def timing_summary(
    report: pd.DataFrame,
    wall_seconds: float | None,
    scored_now: int,
    workers: int,
    projected_videos: int,
) -> dict[str, float]:
    """Seconds per video by stage (means over the videos with faces, ``total`` over all),
    this run's wall seconds per video (the throughput: what a budget is about) and the hours
    N videos would take at it."""
    scored = report[report["status"] == "scored"]
    values: dict[str, float] = {
        "videos": float(len(report)),
        "scored": float(len(scored)),
        "fallback": float(len(report) - len(scored)),
        "scored_this_run": float(scored_now),
        "workers": float(workers),
    }
    for stage in STAGES:
        column = report[f"{stage}_s"].dropna() if stage != "model" else scored["model_s"].dropna()
        values[f"{stage}_seconds_per_video"] = float(column.mean()) if len(column) else 0.0
    if wall_seconds and scored_now:
        per_video = wall_seconds / scored_now
    else:  # nothing scored this run: the stored per-video totals over the workers
        per_video = values["total_seconds_per_video"] / max(workers, 1)
    values["wall_seconds_per_video"] = float(per_video)
    values["videos_per_hour"] = 3600.0 / per_video if per_video > 0 else 0.0
    values["projected_videos"] = float(projected_videos)
    values["projected_hours"] = projected_videos * per_video / 3600.0
    return values


def budget_verdict(seconds_per_video: float, budget: float) -> str | None:
    """None within the budget, else the message (seconds per video over the budget)."""
    if budget <= 0 or seconds_per_video <= budget:
        return None
    return (
        f"scoring took {seconds_per_video:.2f} s a video, over the budget of {budget:.2f} s "
        f"({_param('budget_seconds_per_video')}); DFDC allowed 9 hours for 4,000 videos"
    )


def cost_table(
    instances: Mapping[str, Mapping[str, Any]],
    measured_videos_per_hour: float,
    videos: int,
    here: str,
) -> pd.DataFrame:
    """Hours and cost of ``videos`` videos per instance type (``videos_per_hour`` null: this
    run's measured rate), after this machine's measured row (no price: left empty)."""
    rows = [(here, "measured", measured_videos_per_hour, None)]
    for name, spec in instances.items():
        rate = spec.get("videos_per_hour")
        source = "given" if rate is not None else "measured"
        rate = float(rate) if rate is not None else measured_videos_per_hour
        rows.append((name, source, rate, float(spec["price_per_hour"])))
    table = []
    for name, source, rate, price in rows:
        hours = videos / rate if rate > 0 else None
        cost = hours * price if hours is not None and price is not None else None
        table.append(
            {
                "instance": name,
                "source": source,
                "videos_per_hour": rate,
                "price_per_hour": price,
                "videos": videos,
                "hours": hours,
                "cost": cost,
            }
        )
    return pd.DataFrame(table)
