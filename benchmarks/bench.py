"""make bench: podium's speed as ratios, each measured within one process run (issue 18).

A figure on its own says little on a shared 2-core box whose other work comes and goes;
a ratio of two measurements taken one right after the other in the same process holds.
So every suite measures podium's real code against a ceiling (the same model's bare step,
later decode alone, the reference implementations) in the same run, interleaving the
repeats, and keeps the medians.

    python benchmarks/bench.py                                # every suite, every case
    python benchmarks/bench.py --device=cuda --workers=0,4,8  # the same on a GPU box
    python benchmarks/bench.py --pipelines=mask,uda --repeats=5
    python benchmarks/bench.py --suites=extraction --videos=4 --scales=1,0.5,0.25

Suites, each a module beside this one with ``add_arguments``, ``run``, ``markdown`` and
``metrics``: ``training`` (part 1: each pipeline's training step end to end against its
model's bare step, DataLoader workers swept) and ``extraction`` (part 2: decode, stock
facenet-pytorch MTCNN, podium's detection and its end-to-end extraction, at full size and
downscaled, each detecting case with its recall at IoU 0.5) and ``cyclegan`` (part 4:
podium's whole CycleGAN training step against one written from the authors' published
architecture and settings, at podium's conf settings and at the paper's, with the
parameter counts and a one-step comparison from the same weights) and ``scoring`` (the
scoring part: seconds per video with the configured deepfake ensemble, conf/base's or with
``--env=full`` conf/full's, on the sample's test videos: decode, detect and model alone,
end to end without Dask and on a Dask LocalCluster, with the prefetch overlap's and Dask's
ratios, videos per hour and the hours for DFDC's 4,000 test videos against its budget).

Results: every row is appended to ``data/08_reporting/bench/<YYYY-MM-DD>-<host>.json``,
``<YYYY-MM-DD>-<host>.md`` is rewritten from it (newest run first), and the run is logged
to MLflow (the project's store and experiment, conf/base/mlflow.yml) as a run named
``bench``: one metric per case and setting, the Markdown table as an artifact.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "data" / "08_reporting" / "bench"
HERE = Path(__file__).resolve().parent
#: Suites in the order they run: the module ``benchmarks/<name>.py`` of each.
SUITES = ("training", "extraction", "cyclegan", "scoring")
DEVICES = ("auto", "cpu", "cuda")

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def suite(name: str) -> ModuleType:
    """The suite module ``benchmarks/<name>.py`` (benchmarks/ is scripts, not a package)."""
    key = f"podium_bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- context


def load_config(env: str | None) -> tuple[dict, dict]:
    """The project's parameters and mlflow settings as ``kedro run --env=<env>`` sees them."""
    from kedro.framework.project import settings
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(REPO)
    with warnings.catch_warnings():  # omegaconf's deprecation notice, kedro's to fix
        warnings.filterwarnings("ignore", message=".*register_new_resolver")
        loader = settings.CONFIG_LOADER_CLASS(
            conf_source=str(REPO / settings.CONF_SOURCE), env=env, **settings.CONFIG_LOADER_ARGS
        )
        loader.config_patterns.update({"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]})
        return dict(loader["parameters"]), dict(loader["mlflow"])


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return done.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine(device: str) -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    info = {
        "host": platform.node(),
        "cpus": os.cpu_count() or 1,
        "torch": torch.__version__,
        "device": device,
        "accelerator": platform.processor() or platform.machine(),
    }
    if device.startswith("cuda"):
        info["accelerator"] = torch.cuda.get_device_name(torch.device(device))
    return info


@dataclass
class Context:
    """What every suite gets: the configuration, the device, where to write, the run's id."""

    parameters: dict
    device: str  # resolved: cpu | cuda
    scratch: Path  # a temporary folder for the inputs suites build, removed afterwards
    run: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    raw_root: Path = REPO / "data" / "01_raw"
    info: dict = field(default_factory=dict)

    def raw(self, competition: str) -> Path:
        """``data/01_raw/<competition>``, written by the sample_data pipeline if absent."""
        root = self.raw_root / competition
        if not (root.is_dir() and any(root.iterdir())):
            kedro = Path(sys.executable).with_name("kedro")
            print(f"==> writing the embedded {competition} sample into {root}", flush=True)
            subprocess.run(
                [str(kedro), "run", "--pipelines=sample_data", f"--tags={competition}"],
                cwd=REPO,
                check=True,
            )
        return root


def resolve_device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device=cuda asked for but no CUDA GPU is visible; use cpu or auto")
    return choice


# ---------------------------------------------------------------------------- records


def report_paths(out: Path, run: str, host: str) -> tuple[Path, Path]:
    stem = f"{run[:10]}-{host}"
    return out / f"{stem}.json", out / f"{stem}.md"


def append_rows(store: Path, rows: Sequence[dict]) -> list[dict]:
    """``rows`` added to the JSON list in ``store``; every row of it returned."""
    old = json.loads(store.read_text()) if store.exists() else []
    everything = old + list(rows)
    store.parent.mkdir(parents=True, exist_ok=True)
    temporary = store.with_name(f".{store.name}.tmp")
    temporary.write_text(json.dumps(everything, indent=1) + "\n")
    os.replace(temporary, store)
    return everything


def markdown(rows: Sequence[dict]) -> str:
    """Every run in ``rows``, newest first: its machine and command, then each suite's table."""
    runs: dict[str, list[dict]] = {}
    for row in rows:
        runs.setdefault(row["run"], []).append(row)
    lines = [
        "# make bench",
        "",
        "Each ratio compares two measurements taken one after the other in the same process "
        "(medians over interleaved repeats), so it holds on a machine whose other load "
        "varies; the images/s figures themselves are this machine's at that time.",
        "",
    ]
    for run in sorted(runs, reverse=True):
        group = runs[run]
        first = group[0]
        lines += [
            f"## {run} on {first['host']} ({first['device']}, {first['accelerator']}, "
            f"{first['cpus']} CPUs, torch {first['torch']}, commit {first['commit']})",
            "",
            f"`{first['command']}`",
            "",
        ]
        for name in SUITES:
            chosen = [r for r in group if r["suite"] == name]
            if chosen:
                lines += [suite(name).markdown(chosen), ""]
    return "\n".join(lines).rstrip() + "\n"


def _tracking_uri(mlflow_conf: Mapping[str, Any]) -> str:
    uri = (mlflow_conf.get("server") or {}).get("mlflow_tracking_uri") or "sqlite:///mlflow.db"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not Path(uri[len(prefix) :]).is_absolute():
        uri = prefix + str(REPO / uri[len(prefix) :])  # relative to the project root
    return uri


def log_to_mlflow(
    uri: str,
    experiment: str,
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    artifacts: Sequence[Path],
) -> str:
    """One MLflow run named ``bench`` in ``experiment`` of the store at ``uri``; its id."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        location = None
        if uri.startswith("sqlite:///"):  # artifacts beside the store, as kedro-mlflow's
            location = (Path(uri[len("sqlite:///") :]).parent / "mlruns").resolve().as_uri()
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name="bench") as run:
        mlflow.set_tags(dict(tags))
        mlflow.log_metrics(dict(metrics))
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="bench")
        return run.info.run_id


# ---------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", default=",".join(SUITES), help="e.g. training,extraction")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--env", default=None, help="configuration environment (e.g. full)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per case")
    parser.add_argument("--out", type=Path, default=REPORT, help="where the JSON and md go")
    parser.add_argument(
        "--raw", type=Path, default=REPO / "data" / "01_raw", help="the raw data (data/01_raw)"
    )
    parser.add_argument("--mlflow-uri", default=None, help="default: the project's store")
    parser.add_argument("--no-mlflow", action="store_true", help="write the files only")
    for name in SUITES:
        suite(name).add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    chosen = [s for s in args.suites.split(",") if s]
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown:
        raise SystemExit(f"unknown suite(s) {unknown}; choose from {list(SUITES)}")
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    parameters, mlflow_conf = load_config(args.env)
    device = resolve_device(args.device)
    command = "python benchmarks/bench.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as scratch:
        context = Context(parameters, device, Path(scratch), raw_root=args.raw)
        context.info = {**machine(device), "commit": _git_commit(), "command": command.strip()}
        rows: list[dict] = []
        for name in chosen:
            for row in suite(name).run(args, context):
                rows.append({"run": context.run, "suite": name, **context.info, **row})
    if not rows:
        raise SystemExit("nothing was measured")
    store, table = report_paths(args.out, context.run, context.info["host"])
    everything = append_rows(store, rows)
    table.write_text(markdown(everything))
    print(f"==> {store}\n==> {table}", flush=True)
    this_run = markdown(rows)
    print(this_run[this_run.index("## ") :], flush=True)
    if not args.no_mlflow:
        metrics: dict[str, float] = {}
        for name in chosen:
            metrics |= suite(name).metrics([r for r in rows if r["suite"] == name])
        with tempfile.TemporaryDirectory(prefix="podium-bench-mlflow-") as folder:
            table_file, rows_file = Path(folder) / "bench.md", Path(folder) / "bench.json"
            table_file.write_text(markdown(rows))
            rows_file.write_text(json.dumps(rows, indent=1) + "\n")
            run_id = log_to_mlflow(
                args.mlflow_uri or _tracking_uri(mlflow_conf),
                (mlflow_conf.get("tracking") or {}).get("experiment", {}).get("name", "podium"),
                metrics,
                {
                    "mlflow.runName": "bench",
                    "bench.suites": ",".join(chosen),
                    **{f"bench.{k}": str(v) for k, v in context.info.items()},
                },
                [table_file, rows_file],
            )
        print(f"==> MLflow run {run_id} (bench)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
