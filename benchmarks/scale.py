"""make bench-scale: does memory stay flat as the collection grows?

For each pipeline and multiplier, writes the embedded sample at that many times its
default size into a fresh copy of the project, then runs each stage as its own
``kedro run --pipelines=<p> --nodes=...`` (the real nodes, the real catalog) while a
sampler follows the whole process tree (the kedro driver, its Dask workers, its
DataLoader workers). Per stage it records the peak proportional set size (PSS: shared
pages counted once across the tree, so forked loader workers are not counted twice),
the driver's own peak, the wall time and seconds per item.

    python benchmarks/scale.py                       # every pipeline, default multipliers
    python benchmarks/scale.py --pipelines=deepfake --multipliers=1,4,16
    python benchmarks/scale.py --source=/path/to/other/checkout --label=before

``--source`` runs another checkout's code and configuration (its ``src`` goes first on
PYTHONPATH), so the same command measures a before and an after. Results are appended to
``data/08_reporting/bench/scale.json`` and the whole table is rewritten to ``scale.md``.
Seconds are for comparison within one run on one machine; memory is what the issue is
about.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "data" / "08_reporting" / "bench"


@dataclass(frozen=True)
class Stage:
    name: str
    nodes: tuple[str, ...]
    items: str  # what seconds_per_item divides by: a key of Case.count()


@dataclass(frozen=True)
class Case:
    """One pipeline: its sample at multiplier m, cheap run settings, and its stages."""

    pipeline: str
    competition: str  # the sample_data tag
    sample: object  # m -> sample_data.<competition> overrides
    run_parameters: dict  # the pipeline's parameters, kept cheap: memory is measured here
    stages: tuple[Stage, ...]
    count: object  # project root -> {item kind: count}
    probe: str  # a node that reads almost nothing: its run is kedro's own start-up
    default_multipliers: tuple[int, ...] = (1, 8)


def _deepfake_sample(m: int) -> dict:
    return {"n_parts": 2 * m, "n_test_videos": 10 * m, "test_actors": 3 * m}


def _deepfake_count(root: Path) -> dict:
    raw = root / "data" / "01_raw" / "deepfake"
    train = sum(len(json.loads(p.read_text())) for p in raw.glob("dfdc_train_part_*/metadata.json"))
    test = len(list((raw / "test_videos").glob("*.mp4")))
    return {"videos": train + test, "train_videos": train, "test_videos": test}


def _files(root: Path, pattern: str) -> int:
    return sum(1 for p in root.glob(pattern) if p.is_file())


UDA_SPLITS = ("train_source", "val_source", "train_target", "val_target", "test")


def _uda_sample(m: int) -> dict:
    base = {"train_source": 32, "val_source": 8, "train_target": 32, "val_target": 8, "test": 8}
    return {f"n_{split}": n * m for split, n in base.items()}


def _csv_rows(path: Path) -> int:
    return max(sum(1 for _ in path.open()) - 1, 0) if path.exists() else 0


def _uda_count(root: Path) -> dict:
    raw = root / "data" / "01_raw" / "uda"
    rows = {split: _csv_rows(raw / f"{split}.csv") for split in UDA_SPLITS}
    return {
        "images": sum(rows.values()),
        "iterations": 8,
        "predicted": rows["val_source"] + rows["val_target"] + rows["test"],
    }


def _mask_count(root: Path) -> dict:
    raw = root / "data" / "01_raw" / "mask"
    train = _csv_rows(raw / "train" / "train.csv") * 7  # one row per person, 7 photos each
    evaluation = _csv_rows(raw / "eval" / "info.csv")
    return {"photos": train + evaluation, "train_photos": train, "eval_photos": evaluation}


def _monet_count(root: Path) -> dict:
    raw = root / "data" / "01_raw" / "monet"
    photos, monets = _files(raw, "photo_jpg/*.jpg"), _files(raw, "monet_jpg/*.jpg")
    return {"images": photos + monets, "photos": photos}


CASES: dict[str, Case] = {
    "deepfake": Case(
        pipeline="deepfake",
        competition="deepfake",
        sample=_deepfake_sample,
        run_parameters={
            "deepfake": {
                "training": {"epochs": 1, "folds_to_train": [0], "progress": False},
                "stacking": {"enabled": False},
            }
        },
        stages=(
            Stage(
                "extract",
                (
                    "deepfake.data.index_training_videos",
                    "deepfake.data.index_test_videos",
                    "deepfake.faces.extract_faces",
                    "deepfake.faces.index_faces",
                ),
                "videos",
            ),
            Stage(
                "split",
                ("deepfake.split.assign_folds", "deepfake.split.hold_out_family"),
                "train_videos",
            ),
            Stage(
                "train (1 epoch, 1 fold)", ("deepfake.models.train_frame_models",), "train_videos"
            ),
            Stage("predict", ("deepfake.scoring.predict_test_frames",), "test_videos"),
        ),
        count=_deepfake_count,
        probe="deepfake.data.index_test_videos",
        default_multipliers=(1, 4, 16),
    ),
    "mask": Case(
        pipeline="mask",
        competition="mask",
        sample=lambda m: {"n_people": 90 * m, "n_eval_people": 18 * m},
        run_parameters={"mask": {"train": {"epochs": 1}}},
        stages=(
            Stage(
                "crop",
                (
                    "mask.data.index_training_images",
                    "mask.data.index_evaluation_images",
                    "mask.crops.crop_training_images",
                    "mask.crops.crop_evaluation_images",
                    "mask.report.count_crop_outcomes",
                    "mask.split.assign_person_folds",
                ),
                "photos",
            ),
            Stage("train (1 epoch)", ("mask.models.train_models",), "train_photos"),
            Stage("predict", ("mask.scoring.predict_evaluation_images",), "eval_photos"),
        ),
        count=_mask_count,
        probe="mask.data.index_evaluation_images",
    ),
    "uda": Case(
        pipeline="uda",
        competition="uda",
        sample=_uda_sample,
        run_parameters={
            "uda": {
                "training": {
                    "iterations": 8,
                    "iterations_per_epoch": 4,
                    "scheduler": {"warmup_epochs": 0.5},
                    "pseudo_label": {"start_iteration": 4},
                }
            }
        },
        stages=(
            Stage("prepare", ("uda.data.index_data", "uda.data.inspect_images"), "images"),
            Stage("train (8 iterations)", ("uda.models.train_models",), "iterations"),
            Stage(
                "predict and score",
                (
                    "uda.scoring.predict_val_source",
                    "uda.scoring.predict_val_target",
                    "uda.scoring.predict_test",
                    "uda.report.score_predictions",
                    "uda.submission.write_submission",
                ),
                "predicted",
            ),
        ),
        count=_uda_count,
        probe="uda.data.index_data",
    ),
    "monet": Case(
        pipeline="monet",
        competition="monet",
        sample=lambda m: {"n_photos": 120 * m, "n_monet": 30 * m},
        run_parameters={"monet": {"train": {"n_epochs": 1, "n_epochs_decay": 0}}},
        stages=(
            Stage("prepare", ("monet.data.index_images", "monet.data.check_images"), "images"),
            Stage("train (1 epoch)", ("monet.models.train_cyclegan",), "images"),
            Stage("translate", ("monet.submission.write_images_zip",), "photos"),
            Stage("score", ("monet.report.score_images",), "photos"),
        ),
        count=_monet_count,
        probe="monet.data.index_images",
    ),
}


# ---------------------------------------------------------------------------- measuring


@dataclass
class Peak:
    tree_mb: float = 0.0
    driver_mb: float = 0.0
    processes: int = 0


def _pss_mb(process: psutil.Process) -> float:
    try:
        info = process.memory_full_info()
        return getattr(info, "pss", info.rss) / 2**20
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0.0


def _follow(pid: int, peak: Peak, stop: threading.Event, interval: float = 0.2) -> None:
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        sizes = [_pss_mb(p) for p in tree]
        peak.tree_mb = max(peak.tree_mb, sum(sizes))
        peak.driver_mb = max(peak.driver_mb, sizes[0] if sizes else 0.0)
        peak.processes = max(peak.processes, len(tree))
        stop.wait(interval)


def _kedro(project: Path, env: dict, *args: str) -> tuple[float, Peak, str]:
    """Run `kedro <args>` in ``project``: wall seconds, peak memory, the output's tail."""
    kedro = Path(sys.executable).with_name("kedro")
    peak, stop = Peak(), threading.Event()
    started = time.perf_counter()
    with subprocess.Popen(
        [str(kedro), *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        sampler = threading.Thread(target=_follow, args=(process.pid, peak, stop), daemon=True)
        sampler.start()
        output, _ = process.communicate()
        stop.set()
        sampler.join()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(
            f"kedro {' '.join(args)} failed ({process.returncode}):\n{output[-3000:]}"
        )
    return seconds, peak, output[-2000:]


def _in_checkout(wanted: Sequence[str], known: set[str], pipeline: str) -> list[str]:
    """The checkout's names for ``wanted``: the full name, or in an older checkout (nodes
    without namespaces, or a node it lacks) the same short name; none at all is an error."""
    short = {name.rsplit(".", 1)[-1]: name for name in known}
    found = [n if n in known else short.get(n.rsplit(".", 1)[-1]) for n in wanted]
    found = [n for n in found if n]
    if not found:
        raise RuntimeError(f"{pipeline}: none of {list(wanted)} is a node of this checkout")
    return found


def _node_names(pipeline: str, env: dict) -> set[str]:
    script = (
        f"from podium.pipelines.{pipeline}.pipeline import create_pipeline\n"
        "print('\\n'.join(n.name for n in create_pipeline().nodes))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def _project(source: Path, where: Path, parameters: dict) -> Path:
    """A fresh copy of ``source``'s project settings: its own data folders and MLflow store."""
    root = where / "project"
    root.mkdir(parents=True)
    shutil.copy(source / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(source / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    (root / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(parameters))
    mlflow = {"server": {"mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}}
    (root / "conf" / "local" / "mlflow.yml").write_text(yaml.safe_dump(mlflow))
    return root


@dataclass
class Row:
    label: str
    pipeline: str
    multiplier: int
    stage: str
    items: int
    seconds: float  # the whole `kedro run`, start-up included
    startup_seconds: float  # the same command on a node that reads almost nothing
    seconds_per_item: float  # (seconds - startup_seconds) / items
    peak_tree_mb: float
    peak_driver_mb: float
    startup_mb: float  # peak of the start-up run: imports, the model code, no data
    processes: int
    host: str = field(default_factory=platform.node)
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M"))


def measure(case: Case, multiplier: int, source: Path, label: str, keep: Path | None) -> list[Row]:
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(
            [str(source / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    where = Path(tempfile.mkdtemp(prefix=f"scale-{case.pipeline}-{multiplier}x-", dir=keep))
    parameters = {"sample_data": {case.competition: case.sample(multiplier)}, **case.run_parameters}
    project = _project(source, where, parameters)
    print(f"==> {label} {case.pipeline} {multiplier}x: writing the sample", flush=True)
    _kedro(project, env, "run", "--pipelines=sample_data", f"--tags={case.competition}")
    counts = case.count(project)
    known = _node_names(case.pipeline, env)
    run = ("run", f"--pipelines={case.pipeline}")
    (probe,) = _in_checkout([case.probe], known, case.pipeline)
    startup, idle, _ = _kedro(project, env, *run, f"--nodes={probe}")
    rows = []
    for stage in case.stages:
        nodes = _in_checkout(stage.nodes, known, case.pipeline)
        seconds, peak, _ = _kedro(project, env, *run, f"--nodes={','.join(nodes)}")
        items = int(counts[stage.items])
        work = max(seconds - startup, 0.0)
        row = Row(
            label=label,
            pipeline=case.pipeline,
            multiplier=multiplier,
            stage=stage.name,
            items=items,
            seconds=round(seconds, 1),
            startup_seconds=round(startup, 1),
            seconds_per_item=round(work / max(items, 1), 4),
            peak_tree_mb=round(peak.tree_mb),
            peak_driver_mb=round(peak.driver_mb),
            startup_mb=round(idle.tree_mb),
            processes=peak.processes,
        )
        print(
            f"    {stage.name:<26} {items:>6} items {seconds:8.1f} s "
            f"{row.seconds_per_item:7.3f} s/item  peak {row.peak_tree_mb:6.0f} MB "
            f"(driver {row.peak_driver_mb:.0f} MB, start-up {row.startup_mb} MB, "
            f"{peak.processes} processes)",
            flush=True,
        )
        rows.append(row)
    if keep is None:
        shutil.rmtree(where, ignore_errors=True)
    return rows


# ---------------------------------------------------------------------------- reporting


def _markdown(rows: list[dict]) -> str:
    lines = [
        "# make bench-scale",
        "",
        "Each stage is one `kedro run --nodes=...` on the sample at m times its default size.",
        "Peak: PSS of the whole process tree (driver, Dask workers, loader workers), sampled",
        "every 0.2 s. Data: the peak less the start-up run's peak (the same command on a node",
        "that reads almost nothing: imports and libraries, no data). s/item: the stage's time",
        "less the start-up time, per item. `vs 1x`: this stage's figure over its figure at 1x.",
        "",
        "| label | pipeline | m | stage | items | s | s/item | peak MB | vs 1x "
        "| data MB | vs 1x | driver MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    first = {}
    for r in rows:
        if r["multiplier"] == 1:
            first[(r["label"], r["pipeline"], r["stage"])] = r

    def ratio(value: float, base: float | None) -> str:
        return f"{value / base:.2f}" if base else ""

    for r in rows:
        base = first.get((r["label"], r["pipeline"], r["stage"]))
        data = max(r["peak_tree_mb"] - r["startup_mb"], 0)
        base_data = max(base["peak_tree_mb"] - base["startup_mb"], 0) if base else None
        lines.append(
            f"| {r['label']} | {r['pipeline']} | {r['multiplier']} | {r['stage']} | "
            f"{r['items']} | {r['seconds']} | {r['seconds_per_item']} | {r['peak_tree_mb']} | "
            f"{ratio(r['peak_tree_mb'], base and base['peak_tree_mb'])} | {data} | "
            f"{ratio(data, base_data)} | {r['peak_driver_mb']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelines", default=",".join(CASES))
    parser.add_argument("--multipliers", default=None, help="e.g. 1,4,16 (default per pipeline)")
    parser.add_argument("--source", type=Path, default=REPO, help="checkout whose code runs")
    parser.add_argument("--label", default="after", help="names this run in the table")
    parser.add_argument("--keep", type=Path, default=None, help="keep the projects under here")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.pipelines.split(",")) - set(CASES))
    if unknown:
        parser.error(f"unknown pipeline(s) {unknown}; choose from {sorted(CASES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "scale.json"
    rows = json.loads(store.read_text()) if store.exists() else []
    for name in args.pipelines.split(","):
        case = CASES[name]
        multipliers = (
            [int(m) for m in args.multipliers.split(",")]
            if args.multipliers
            else case.default_multipliers
        )
        for m in multipliers:
            new = [
                asdict(r) for r in measure(case, m, args.source.resolve(), args.label, args.keep)
            ]
            rows = [
                r
                for r in rows
                if (r["label"], r["pipeline"], r["multiplier"]) != (args.label, name, m)
            ] + new
            store.write_text(json.dumps(rows, indent=1) + "\n")
            (args.out / "scale.md").write_text(_markdown(rows))
    print(f"==> {args.out / 'scale.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
