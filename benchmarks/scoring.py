"""Scoring: seconds per video end to end with a deepfake ensemble, split into its stages.

Issue 18, the scoring part. podium's inference (``podium.pipelines.deepfake.inference``)
scores a folder of new videos with a trained ensemble: per video it decodes the sampled
frames, detects and crops the faces, runs every fold model on the crops and turns their
probabilities into the video's calibrated score; ``stream_scores`` runs that a task of
``videos_per_task`` videos at a time, decode and detection ``prefetch`` videos ahead of the
models in a thread, here or on a Dask cluster. DFDC's budget was 9 GPU-hours for 4,000
videos: 8.1 s a video (``deepfake_inference.budget_seconds_per_video``).

The ensemble is the configured ``deepfake.training`` one (``--env`` chooses it: conf/base's
by default, ``--env=full`` conf/full's four EfficientNets x 5 folds, a GPU box's load;
``--params`` overrides leaves): every model x fold (``split.n_folds``, or
``folds_to_train``) built by the training code as a fresh clone would, **untrained**
(``_network(spec, config, pretrained=False)``, one seed per fold). Speed does not depend
on the weights' values: the same layers, shapes and operations run whatever numbers they
hold (the probabilities do, and nothing here looks at them). The scorer around it is the
one a training run saves (``build_scorer``: the configured extraction and video rule, prior
0.5, the identity calibration with the configured clips, no stacker: an untrained
LightGBM does not exist, and its share of a video's time is a few milliseconds).
``--trained`` takes the latest local trained ensemble instead (the versions of
``data/06_models/deepfake/scorer.json`` and ``frame_models.safetensors`` that
``kedro run --pipelines=deepfake`` saved, checked to belong together).

The videos: the DFDC sample's test videos (``data/01_raw/deepfake/test_videos``, written if
absent), ``--scoring-videos`` caps their count. On ``--device`` (cpu, or cuda on a GPU box:
the inference settings' device follows), inside one process, the cases:

- **decode**: ``read_sampled_frames`` with the extraction settings, video by video;
- **detect**: ``extract_faces_from_frames`` (MTCNN at the configured ``downscale``, keep,
  crop) and ``video_record`` on the frames decoded before timing, video by video;
- **model**: the loaded ensemble's ``frame_probs`` on the records detected before timing,
  and the video's probability from them (``ensemble_probability``), video by video: what
  ``score_task`` times as ``model_s`` (a video without faces costs nothing here);
- **sum**: decode + detect + model, what one video costs done strictly one stage after the
  other;
- **end to end**: ``stream_scores`` over all the videos without Dask (``n_workers: 0``),
  the prefetch thread on (the configured ``prefetch`` and ``videos_per_task``), wall
  seconds per video. On cuda, where ``stream_scores`` always starts a cluster (one worker
  per GPU), the loop it runs without one: ``score_task`` over the same tasks here;
- **dask**: ``stream_scores`` over all the videos on a Dask LocalCluster of
  ``--scoring-workers`` process workers (cuda: one per GPU, with the ``GPU`` resource),
  wall seconds per video. The cluster is started before anything is timed and every worker
  scores one video untimed (its ensemble built and kept, MTCNN loaded), so the figure holds
  what every ``kedro run`` pays on a warm cluster: the client's connection, the weights'
  scatter to every worker, the tasks. Its workers run one torch thread each (Dask sets
  ``OMP_NUM_THREADS=1``), the process here ``runtime.torch_threads``. The videos go out in
  tasks of ``videos_per_task``: with fewer tasks than workers some workers idle (the table
  gives the count; 9 sample videos are 3 tasks of up to 4).

Every case runs once on the first video untimed (the models' first call, the allocator).
Then ``--repeats`` rounds, in each the stage cases (video by video, the stage order
reversed from one video to the next), end to end and Dask one after the other, the order
of the three reversed every other round. Medians over the rounds; each ratio is taken
inside one round, then its median (range in brackets):

- end to end / sum: below 1, the prefetch overlap pays (decode and detection hidden
  behind the models); above 1, the streaming's overhead;
- dask's speed-up, end to end / dask: against the worker count as the ideal.

The end-to-end rows also give the split their own results report (each video's
``decode_s``, ``detect_s``, ``model_s`` as ``stream_scores`` measured them: with the
prefetch thread competing for the cores, so not the stage cases' figures), videos per
hour, the hours for ``projected_videos`` (4,000: DFDC's test set) and the seconds per
video against the budget.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from podium.core.config import soft_merged

#: Cases in table order; ``sum`` is computed from the three stages.
STAGES = ("decode", "detect", "model")
CASES = (*STAGES, "sum", "end_to_end", "dask")
MODELS = Path(__file__).resolve().parents[1] / "data" / "06_models" / "deepfake"


# ---------------------------------------------------------------------------- arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scoring suite")
    group.add_argument(
        "--scoring-videos",
        type=int,
        default=None,
        help="test videos of the DFDC sample to score (default: all of them)",
    )
    group.add_argument(
        "--scoring-workers",
        type=int,
        default=2,
        help="Dask LocalCluster workers of the dask case (default 2; cuda: one per GPU)",
    )
    group.add_argument(
        "--trained",
        action="store_true",
        help="the latest local trained ensemble (data/06_models/deepfake) instead of the "
        "configured one, untrained",
    )


# ---------------------------------------------------------------------------- the ensemble


@dataclass
class Ensemble:
    name: str  # base | full | <env> | trained
    state_dicts: dict
    scorer: dict
    description: str
    weights: str  # untrained | trained <version>


def describe(training: Mapping[str, Any], state_dicts: Mapping[str, Any]) -> str:
    """``unet_multitask resnet10t x 3 folds @112`` for every model of the ensemble."""
    from podium.pipelines.deepfake.params import TrainingParams
    from podium.pipelines.deepfake.train import check_state_dicts

    config = TrainingParams.of(training)
    keys = check_state_dicts(state_dicts, config)
    parts = [
        f"{spec['architecture']} {spec['backbone']} x {len(keys[spec['name']])} folds"
        for spec in config["models"]
    ]
    return ", ".join(parts) + f" @{_size(config['image_size'])}"


def _size(value: Any) -> str:
    """112 for 112 and (112, 112), 128x96 for (128, 96)."""
    if isinstance(value, int | float):
        return f"{value:g}"
    values = [f"{v:g}" for v in value]
    return values[0] if len(set(values)) == 1 else "x".join(values)


def untrained_ensemble(parameters: Mapping[str, Any], name: str) -> Ensemble:
    """Every model x fold of ``deepfake.training`` as the training code builds them, not
    trained (one seed per fold, torch's global generator left as it was), and the scorer
    a training run would save around them (prior 0.5, identity calibration, no stacker)."""
    from podium.pipelines.deepfake import inference
    from podium.pipelines.deepfake.params import TrainingParams
    from podium.pipelines.deepfake.train import _network

    deepfake = parameters["deepfake"]
    config = TrainingParams.of(deepfake["training"])
    folds = config["folds_to_train"]
    if folds is None:
        folds = range(int(deepfake["split"]["n_folds"]))
    state_dicts = {}
    with torch.random.fork_rng(devices=[]):
        for i, spec in enumerate(config["models"]):
            for fold in folds:
                torch.manual_seed(1000 * i + int(fold))
                net = _network(spec, config, pretrained=False)
                state_dicts[f"{spec['name']}/fold{int(fold)}"] = {
                    k: v.detach().clone() for k, v in net.state_dict().items()
                }
    calibration = deepfake.get("calibration") or {}
    scorer = inference.build_scorer(
        training=deepfake["training"],
        extraction=deepfake["extraction"],
        video_score=deepfake["video_score"],
        prior=0.5,
        calibration={
            "factor": 1.0,
            "shift": 0.0,
            "low": float(calibration.get("clip_low", 0.0)),
            "high": float(calibration.get("clip_high", 1.0)),
        },
        stacker=None,
        replace_mean=False,
        weights=inference.weights_digest(state_dicts),
    )
    return Ensemble(
        name, state_dicts, scorer, describe(deepfake["training"], state_dicts), "untrained"
    )


def _latest(folder: Path, filename: str) -> dict[str, Path]:
    """version -> file of a kedro-versioned dataset folder."""
    if not folder.is_dir():
        return {}
    return {v.name: v / filename for v in sorted(folder.iterdir()) if (v / filename).is_file()}


def trained_ensemble(models: Path = MODELS) -> Ensemble:
    """The latest ``scorer.json`` and the ``frame_models.safetensors`` it names (same
    version if there is one, else the latest whose weights digest matches)."""
    from podium.datasets import AtomicJSONDataset, SafetensorsModelsDataset
    from podium.pipelines.deepfake import inference

    scorers = _latest(models / "scorer.json", "scorer.json")
    weights = _latest(models / "frame_models.safetensors", "frame_models.safetensors")
    if not scorers or not weights:
        raise SystemExit(
            f"--trained: no trained ensemble under {models} (scorer.json: {len(scorers)} "
            f"version(s), frame_models.safetensors: {len(weights)}); run "
            "`kedro run --pipelines=deepfake` first, or drop --trained"
        )
    version = max(scorers)
    scorer = inference.check_scorer(AtomicJSONDataset(filepath=str(scorers[version])).load())
    candidates = [version] if version in weights else []
    candidates += [v for v in sorted(weights, reverse=True) if v != version]
    for candidate in candidates:
        state_dicts = SafetensorsModelsDataset(filepath=str(weights[candidate])).load()
        if inference.weights_digest(state_dicts) == scorer["weights"]:
            return Ensemble(
                "trained",
                state_dicts,
                scorer,
                describe(scorer["training"], state_dicts),
                f"trained {version}",
            )
    raise SystemExit(
        f"--trained: no frame_models.safetensors version under {models} has the weights the "
        f"scorer {version} names; run `kedro run --pipelines=deepfake` again"
    )


# ---------------------------------------------------------------------------- inputs


@dataclass
class Video:
    """A test video, its frames decoded and its record detected once, before timing."""

    name: str
    path: str
    frames: Any
    indices: Any
    info: dict
    record: dict | None  # None: no face in any sampled frame


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class Scoring:
    """What every case needs: the ensemble loaded here, the settings, the shared value
    ``stream_scores`` would send its tasks."""

    ensemble: Ensemble
    loaded: Any  # inference.LoadedEnsemble
    settings: dict  # checked deepfake_inference settings
    shared: dict
    table: Any  # video_table of the chosen videos
    device: str
    address: str | None = None
    workers: int = 0
    resources: dict | None = None

    @property
    def extraction(self) -> dict:
        return self.loaded.extraction

    # -------------------------------------------------- the stages, one video each

    def decode(self, video: Video) -> None:
        from podium.faces.video import read_sampled_frames

        s = self.extraction
        read_sampled_frames(video.path, s["n_frames"], s["seek_gap"])

    def detect(self, video: Video) -> dict | None:
        from podium.faces.video import NoFaceError, extract_faces_from_frames, video_record

        try:
            faces = extract_faces_from_frames(
                video.frames, video.indices, self.extraction, checked=True
            )
        except NoFaceError:
            return None
        return video_record(video.path, video.info, faces, self.extraction)

    def model(self, video: Video) -> float | None:
        from podium.pipelines.deepfake.inference import ensemble_probability

        record = video.record
        if record is None:
            return None
        features = {
            "confidences": record["confidences"],
            "n_faces": len(record["crops"]),
            "sampled": len(record["sampled_indices"]),
        }
        return ensemble_probability(
            self.loaded.scorer,
            self.loaded.frame_probs(record),
            features,
            self.loaded.booster,
        )

    # -------------------------------------------------- end to end, every video

    def _jobs(self, table: Any) -> list[dict]:
        rows = table[["video", "path"]].to_dict("records")
        size = self.settings["videos_per_task"]
        return [{"videos": rows[i : i + size]} for i in range(0, len(rows), size)]

    def here(self, table: Any = None) -> list[dict]:
        """``stream_scores`` without Dask (on cuda: the loop it runs without Dask)."""
        from podium.core.distributed import iter_items
        from podium.pipelines.deepfake import inference

        table = self.table if table is None else table
        e = self.ensemble
        if self.device == "cpu":
            chunks = inference.stream_scores(
                table, e.state_dicts, e.scorer, self.settings, {"n_workers": 0}, progress=False
            )
            return [r for chunk in chunks for r in chunk]
        out = []
        for _, result in iter_items(
            None, inference.score_task, self._jobs(table), 1, False, "scoring", shared=self.shared
        ):
            out.extend(result)  # an ItemError here is a bug of the bench: let it raise
        return out

    def on_dask(self, table: Any = None) -> list[dict]:
        """``stream_scores`` on the cluster started before timing."""
        from podium.pipelines.deepfake import inference

        table = self.table if table is None else table
        e = self.ensemble
        chunks = inference.stream_scores(
            table,
            e.state_dicts,
            e.scorer,
            self.settings,
            {"scheduler_address": self.address},
            progress=False,
        )
        return [r for chunk in chunks for r in chunk]


def _inference_settings(parameters: Mapping[str, Any], device: str) -> Any:
    from podium.pipelines.deepfake.params import InferenceParams

    return InferenceParams.model_validate(
        {**(parameters.get("deepfake_inference") or {}), "device": device}
    )


def _shared(ensemble: Ensemble, settings: Mapping[str, Any], device: str) -> dict:
    """The value ``stream_scores`` sends its tasks (the same digest: the same cached
    ensemble on every worker)."""
    from podium.pipelines.deepfake import inference

    scorer = inference.check_scorer(ensemble.scorer)
    return {
        "state_dicts": ensemble.state_dicts,
        "scorer": scorer,
        "digest": inference.scorer_digest(scorer),
        "device": device,
        "fallback": settings["fallback"],
        "prefetch": settings["prefetch"],
    }


def load_videos(scoring: Scoring) -> list[Video]:
    """Each chosen video decoded and detected once (the stage cases' inputs)."""
    from podium.faces.video import read_sampled_frames

    s = scoring.extraction
    out = []
    for row in scoring.table.itertuples(index=False):
        frames, indices, info = read_sampled_frames(row.path, s["n_frames"], s["seek_gap"])
        video = Video(str(row.video), str(row.path), frames, indices, info, None)
        video.record = scoring.detect(video)
        out.append(video)
    return out


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """``name``'s INFO lines (workers and nannies coming and going) off, as they were after."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _cluster(scoring: Scoring, workers: int) -> Iterator[None]:
    """A LocalCluster as ``stream_scores`` would start it, its address in ``scoring``, each
    worker warmed with one video (untimed)."""
    import dask
    import distributed  # noqa: F401 - its config defaults first, as stream_scores does

    from podium.core.distributed import dask_client
    from podium.pipelines.deepfake import inference

    _, n, resources = inference.scoring_workers(scoring.device, {"n_workers": workers})
    extra = {"resources": resources} if resources else {}
    with (
        _quiet("distributed"),
        dask.config.set({"distributed.worker.daemon": False}),
        dask_client(None, n_workers=n, threads_per_worker=1, **extra) as client,
    ):
        client.wait_for_workers(n)
        scoring.address, scoring.workers, scoring.resources = client.scheduler.address, n, resources
        first = scoring.table[["video", "path"]].iloc[:1].to_dict("records")
        options = {"resources": resources} if resources else {}
        # as iter_items sends it: scattered to every worker once, not in each task's graph
        (shared,) = client.scatter([scoring.shared], broadcast=True, hash=False)
        warm = [
            client.submit(
                inference.score_task,
                {"videos": first},
                shared,
                workers=[address],
                allow_other_workers=False,
                pure=False,
                **options,
            )
            for address in client.scheduler_info()["workers"]
        ]
        for future in warm:
            future.result()
        del warm, shared
        try:
            yield
        finally:
            scoring.address = None


# ---------------------------------------------------------------------------- measuring


@dataclass
class Round:
    """One round: each case's seconds over every video, end to end's results."""

    seconds: dict[str, float] = field(default_factory=dict)
    results: dict[str, list[dict]] = field(default_factory=dict)


def _timed(run: Callable[[], Any], device: str) -> tuple[float, Any]:
    _sync(device)
    begin = time.perf_counter()
    out = run()
    _sync(device)
    return time.perf_counter() - begin, out


def _stages(scoring: Scoring, videos: Sequence[Video], repeat: int) -> dict[str, float]:
    seconds = dict.fromkeys(STAGES, 0.0)
    for j, video in enumerate(videos):
        order = STAGES if (repeat + j) % 2 == 0 else tuple(reversed(STAGES))
        for stage in order:
            spent, _ = _timed(lambda s=stage, v=video: getattr(scoring, s)(v), scoring.device)
            seconds[stage] += spent
    return seconds


def measure(scoring: Scoring, videos: Sequence[Video], repeats: int) -> list[Round]:
    """Every case once untimed on the first video, then ``repeats`` rounds (stages, end to
    end, dask; the order reversed every other round)."""
    for stage in STAGES:
        getattr(scoring, stage)(videos[0])
    scoring.here(scoring.table.iloc[:1])  # builds this process's cached ensemble
    expected = set(scoring.table["video"])
    rounds = []
    for repeat in range(repeats):
        r = Round()
        order = ["stages", "end_to_end", "dask"]
        for part in order if repeat % 2 == 0 else list(reversed(order)):
            if part == "stages":
                r.seconds.update(_stages(scoring, videos, repeat))
                continue
            run = scoring.here if part == "end_to_end" else scoring.on_dask
            r.seconds[part], r.results[part] = _timed(run, scoring.device)
            got = [x["video"] for x in r.results[part]]
            if set(got) != expected or len(got) != len(expected):
                raise RuntimeError(f"scoring {part}: {len(set(got))} of {len(expected)} back")
        r.seconds["sum"] = sum(r.seconds[s] for s in STAGES)
        rounds.append(r)
        n = len(videos)
        line = f"    scoring repeat {repeat + 1}/{repeats}: " + ", ".join(
            f"{case} {r.seconds[case] / n:.3f}" for case in CASES
        )
        print(line + " s/video", flush=True)
    return rounds


# ---------------------------------------------------------------------------- rows


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(statistics.median(finite)) if finite else math.nan


def _mean(values: Sequence[float | None]) -> float:
    got = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(got) / len(got) if got else math.nan


def rows(rounds: Sequence[Round], common: dict, budget: float, projected: int) -> list[dict]:
    """One row per case: medians over the rounds, ratios taken round by round."""
    n = common["videos"]
    out = []
    for case in CASES:
        seconds = [r.seconds[case] for r in rounds]
        per_video = _median(seconds) / n
        row = {
            "case": case,
            **common,
            "seconds_per_video": per_video,
            "seconds_per_video_min": min(seconds) / n,
            "seconds_per_video_max": max(seconds) / n,
            "ratio_to": "",
            "samples": [{"seconds": s} for s in seconds],
        }
        ratios: list[float] = []
        if case == "end_to_end":
            ratios = [r.seconds["end_to_end"] / r.seconds["sum"] for r in rounds]
            row["ratio_to"] = "sum"
        if case == "dask":
            ratios = [r.seconds["end_to_end"] / r.seconds["dask"] for r in rounds]
            row["ratio_to"] = "end_to_end"  # the speed-up
            row["ideal"] = common["dask_workers"]
        if ratios:
            row["ratio"] = _median(ratios)
            row["ratio_min"], row["ratio_max"] = min(ratios), max(ratios)
        if case == "dask":
            row["efficiency"] = row["ratio"] / row["ideal"]
        if case in ("end_to_end", "dask"):
            for stage in (*STAGES, "total"):  # as stream_scores' own results report them
                key = f"{stage}_s"
                row[f"reported_{stage}_seconds_per_video"] = _median(
                    [
                        _mean(
                            [
                                x[key]
                                for x in r.results[case]
                                if stage != "model" or x["status"] == "scored"
                            ]
                        )
                        for r in rounds
                    ]
                )
            row["statuses"] = dict(Counter(x["status"] for x in rounds[-1].results[case]))
            row["videos_per_hour"] = 3600.0 / per_video if per_video > 0 else math.nan
            row["projected_videos"] = projected
            row["projected_hours"] = projected * per_video / 3600.0
            row["budget_seconds_per_video"] = budget
            row["budget_ratio"] = per_video / budget if budget > 0 else math.nan
            for r, sample in zip(rounds, row["samples"], strict=True):
                sample["statuses"] = dict(Counter(x["status"] for x in r.results[case]))
        out.append(row)
    return out


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    try:
        if threads:  # as the project's hook does before every run
            torch.set_num_threads(int(threads))
        yield
    finally:
        torch.set_num_threads(before)


def run(args: argparse.Namespace, context: Any) -> list[dict]:
    """Every case on the test videos, measured in this process: the table rows."""
    from podium.pipelines.deepfake import inference

    if args.scoring_videos is not None and args.scoring_videos < 1:
        raise SystemExit("--scoring-videos must be at least 1")
    if args.scoring_workers < 1:
        raise SystemExit("--scoring-workers must be at least 1")
    parameters = soft_merged(context.parameters, getattr(args, "params", None) or {})
    device = context.device
    threads = (parameters.get("runtime") or {}).get("torch_threads")
    begun = time.perf_counter()
    with _torch_threads(threads):
        if args.trained:
            ensemble = trained_ensemble()
        else:
            ensemble = untrained_ensemble(parameters, getattr(args, "env", None) or "base")
        settings = _inference_settings(parameters, device)
        table = inference.video_table(context.raw("deepfake") / "test_videos")
        table = table.iloc[: args.scoring_videos].reset_index(drop=True)
        print(
            f"==> scoring: {len(table)} test videos with the {ensemble.name} ensemble "
            f"({ensemble.description}, {ensemble.weights}) on {device}",
            flush=True,
        )
        scoring = Scoring(
            ensemble,
            inference.LoadedEnsemble(ensemble.state_dicts, ensemble.scorer, device),
            settings,
            _shared(ensemble, settings, device),
            table,
            device,
        )
        videos = load_videos(scoring)
        with _cluster(scoring, args.scoring_workers):
            rounds = measure(scoring, videos, args.repeats)
            workers = scoring.workers
        used_threads = torch.get_num_threads()
    s = scoring.extraction
    height, width = videos[0].frames.shape[1:3]
    common = {
        "ensemble": ensemble.name,
        "device": device,
        "models": ensemble.description,
        "weights": ensemble.weights,
        "folds": len(ensemble.state_dicts),
        "videos": len(videos),
        "with_faces": sum(v.record is not None for v in videos),
        "n_frames": s["n_frames"],
        "frame_size": f"{width}x{height}",
        "downscale": s["downscale"],
        "crop_size": "x".join(str(v) for v in s["crop_size"]),
        "image_size": ensemble.scorer["training"].get("image_size"),
        "videos_per_task": settings["videos_per_task"],
        "tasks": math.ceil(len(videos) / settings["videos_per_task"]),
        "prefetch": settings["prefetch"],
        "dask_workers": workers,
        "torch_threads": used_threads,
        "repeats": args.repeats,
        "case_seconds": round(time.perf_counter() - begun, 1),
    }
    return rows(rounds, common, settings["budget_seconds_per_video"], settings["projected_videos"])


# ---------------------------------------------------------------------------- reporting

LABELS = {
    "decode": "decode (read_sampled_frames)",
    "detect": "detect (extract_faces_from_frames)",
    "model": "model (frame_probs + video probability)",
    "sum": "decode + detect + model",
    "end_to_end": "end to end, no Dask (stream_scores)",
    "dask": "end to end on Dask (stream_scores)",
}


def _f(value: Any, digits: int = 1) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return ""
    return f"{value:,.{digits}f}"


def _note(r: dict) -> str:
    if r["case"] not in ("end_to_end", "dask"):
        return ""
    split = ", ".join(
        f"{stage} {_f(r[f'reported_{stage}_seconds_per_video'], 3)}" for stage in STAGES
    )
    statuses = ", ".join(f"{v} {k}" for k, v in sorted(r["statuses"].items()))
    note = f"its results: {split} s/video; {statuses}"
    if r["case"] == "dask":
        note = (
            f"{r['dask_workers']} {r['device']} worker(s), {r['tasks']} task(s) of up to "
            f"{r['videos_per_task']} videos: speed-up {_f(r['ratio'], 2)} of ideal "
            f"{r['ideal']} ({_f(100 * r['efficiency'], 0)}%); " + note
        )
    else:
        note = f"prefetch {r['prefetch']}, {r['videos_per_task']} videos a task; " + note
    return note


def _table(rows: Sequence[dict]) -> list[str]:
    first = rows[0]
    budget = next((r["budget_seconds_per_video"] for r in rows if "budget_ratio" in r), 8.1)
    projected = next((r["projected_videos"] for r in rows if "projected_videos" in r), 4000)
    lines = [
        f"#### {first['ensemble']} ensemble: {first['models']} ({first['weights']})",
        "",
        f"{first['videos']} test videos of the DFDC sample ({first['with_faces']} with faces) "
        f"x {first['n_frames']} sampled frames, {first['frame_size']}, detection downscale "
        f"{first['downscale']:g}, crops {first['crop_size']}, {first['folds']} fold models, "
        f"{first['torch_threads']} torch thread(s) here; {first['repeats']} repeat(s).",
        "",
        f"| case | s/video | ratio | videos/h | h for {projected:,} | x {budget:g} s budget "
        "| note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seconds = _f(r["seconds_per_video"], 3)
        if r["repeats"] > 1:
            seconds += f" ({_f(r['seconds_per_video_min'], 3)}-{_f(r['seconds_per_video_max'], 3)})"
        ratio = ""
        if "ratio" in r:
            what = "of sum" if r["ratio_to"] == "sum" else "x speed-up"
            ratio = f"{_f(r['ratio'], 2)} {what}"
            if r["repeats"] > 1:
                ratio += f" ({_f(r['ratio_min'], 2)}-{_f(r['ratio_max'], 2)})"
        lines.append(
            f"| {LABELS.get(r['case'], r['case'])} | {seconds} | {ratio} "
            f"| {_f(r.get('videos_per_hour'), 0)} | {_f(r.get('projected_hours'), 2)} "
            f"| {_f(r.get('budget_ratio'), 2)} | {_note(r)} |"
        )
    return lines


def markdown(rows: Sequence[dict]) -> str:
    lines = [
        "### Scoring: seconds per video end to end with the deepfake ensemble, split into "
        "decode, detect and model",
        "",
        "s/video: median over the repeats (range in brackets). decode, detect, model: each "
        "stage alone, video by video (model: a video without faces costs 0); sum: the three "
        "one after the other. end to end: stream_scores' wall seconds per video, decode and "
        "detection in a prefetch thread; ratio = end to end / sum (below 1: the overlap "
        "pays). Dask: the same on a warm LocalCluster (client, weights' scatter and tasks "
        "timed, its start-up not); ratio = end to end / Dask, the speed-up (ideal: the "
        "worker count). Untrained weights run as fast as trained ones (same layers and "
        "shapes). x budget: s/video over DFDC's budget (9 GPU-hours for 4,000 videos).",
        "",
    ]
    for name in dict.fromkeys(r["ensemble"] for r in rows):
        lines += [*_table([r for r in rows if r["ensemble"] == name]), ""]
    return "\n".join(lines).rstrip()


METRICS = (
    "seconds_per_video",
    "ratio",
    "efficiency",
    "videos_per_hour",
    "projected_hours",
    "budget_ratio",
    "reported_decode_seconds_per_video",
    "reported_detect_seconds_per_video",
    "reported_model_seconds_per_video",
    "reported_total_seconds_per_video",
)


def metrics(rows: Sequence[dict]) -> dict[str, float]:
    """``bench/scoring/<ensemble>/<case>/<metric>``; ``ratio`` is end to end / sum for
    ``end_to_end`` and the speed-up end to end / dask for ``dask`` (``efficiency``: the
    speed-up over the worker count)."""
    out: dict[str, float] = {}
    for r in rows:
        for key in METRICS:
            value = r.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                out[f"bench/scoring/{r['ensemble']}/{r['case']}/{key}"] = float(value)
    return out
