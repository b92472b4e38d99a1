"""Faults during deepfake batch scoring: a Dask worker killed, the whole run killed.

A reproducible demonstration, on generated data, of what ``kedro run
--pipelines=deepfake_inference`` promises (``podium.pipelines.deepfake.inference``):
results are saved per video as tasks finish, a task lost with its worker is rescheduled
by Dask, a re-run after a crash scores only the videos without a result, a second run
scores none, and the submission equals the training run's test predictions exactly.

    .venv/bin/python benchmarks/scoring_faults.py                # 100 videos, 2 workers
    .venv/bin/python benchmarks/scoring_faults.py --videos 40 --workers 2 --keep

What it does, each step a ``kedro run`` subprocess (``.venv/bin/kedro``) in a throwaway
copy of the project (``git clone`` of this repository's HEAD, its own data/ and
mlflow.db, conf/local/parameters.yml written here; ``--keep`` keeps it):

0. **setup**: the DFDC sample generator with ``n_test_videos: --videos`` and otherwise
   tiny (160x120, 1 s videos), ``kedro run --pipelines=sample_data --tags=deepfake``, then
   a tiny training, ``kedro run --pipelines=deepfake`` (one resnet10t, 2 folds, 1 epoch;
   its test predictions, for the same videos, are the reference of step 4).
1. **worker killed**: ``deepfake_inference`` with ``videos_per_task=1``; once about 20% of
   the videos have a result file, one Dask worker process is SIGKILLed. Expected: Dask
   reschedules its tasks, the run ends with rc 0 and every video has a result.
2. **run killed**: the results folder deleted, the same run SIGKILLed (the kedro process,
   then whatever children outlive it) at about 50%; the results present are counted, then
   a re-run must score exactly the missing ones and end with rc 0. It also takes over the
   run lock (``data/.podium-run.lock``) the killed run left behind.
3. **second run**: scores no video (``timing.json``: ``scored_this_run == 0``).
4. **submission**: the latest deepfake_inference ``submission.csv`` has one row per test
   video and its labels equal the training run's submission's, compared with ``==``.

How a Dask worker is told apart: in podium's LocalCluster (``processes=True``) the
scheduler and the nannies are objects inside the kedro process; each nanny starts its
worker as a child process through multiprocessing's *spawn* (command line
``... from multiprocessing.spawn import spawn_main ...``); the other child is
multiprocessing's resource tracker. The script finds the scheduler among the kedro
process's listening ports (Dask's ``identity`` call answers ``type: Scheduler``),
connects a client of its own to it and asks each worker for its pid and the videos of
the tasks it holds (``Client.run``), the scheduler for its task count, and psutil
whether that pid is a spawned child of the kedro process. The process killed is one Dask
itself names as a worker (the one holding the most videos), never a nanny, which would be
the kedro process. Without a scheduler answer it falls back to the first spawned child.

The summary is printed and written to ``data/08_reporting/bench/scoring_faults.md`` and
``.json`` of this repository; the exit status is 1 if any expectation failed. Kedro's log
of every run is kept in the copy (``logs/<step>.log``, plain text, one record a line).
Minutes on a 2-core box (100 videos: setup about 1 min, each scoring run 15-30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "data" / "08_reporting" / "bench"
KEDRO = Path(sys.executable).with_name("kedro")

# Paths inside the project copy.
TEST_VIDEOS = Path("data/01_raw/deepfake/test_videos")
RESULTS = Path("data/07_model_output/deepfake_inference/results")
TIMING = Path("data/08_reporting/deepfake_inference/timing.json")
INFERENCE_OUT = Path("data/07_model_output/deepfake_inference/submission.csv")
TRAINING_OUT = Path("data/07_model_output/deepfake/submission.csv")
REPORT_CSV = Path("data/08_reporting/deepfake_inference/report.csv")
COSTS_CSV = Path("data/08_reporting/deepfake_inference/costs.csv")
LOCK = Path("data/.podium-run.lock")

SCORING = ["run", "--pipelines=deepfake_inference"]
ONE_VIDEO_A_TASK = "--params=deepfake_inference.videos_per_task=1"
#: "score_new_videos: N of M video(s) to score with ensemble <digest> (K already scored)"
TO_SCORE = re.compile(r"score_new_videos: (\d+) of (\d+) video\(s\) to score")
#: Log lines worth quoting in the summary: warnings and errors, the lock, the plan.
NOTABLE = re.compile(r" (WARNING|ERROR|CRITICAL) |run lock|score_new_videos: \d+ of")

#: Kedro's default logging is rich, wrapped at 80 columns when not on a terminal: one
#: record a line instead, so the log can be searched.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {"kedro": {"level": "INFO"}, "podium": {"level": "INFO"}},
    "root": {"handlers": ["console"]},
}


def local_parameters(videos: int, workers: int) -> dict[str, Any]:
    """conf/local/parameters.yml of the copy: the DFDC sample (``videos`` test videos,
    tiny frames, 1 s each) and a training as small as tests/conftest.py's TINY_DEEPFAKE."""
    return {
        "sample_data": {
            "deepfake": {
                "n_parts": 1,
                "reals_per_part": 3,
                "fakes_per_real": 1,
                "actors_per_part": 2,
                "n_test_videos": videos,
                "test_actors": 2,
                "seconds": 1.0,
                "width": 160,
                "height": 120,
            }
        },
        "deepfake": {
            "extraction": {"n_frames": 4, "crop_size": 64},
            "split": {"strategy": "original", "n_folds": 2},
            "training": {
                "models": [
                    {
                        "name": "tiny",
                        "architecture": "classifier",
                        "backbone": "resnet10t",
                        "seed_offset": 0,
                    }
                ],
                "image_size": 48,
                "epochs": 1,
                "batch_size": 8,
                "progress": False,
            },
            "stacking": {"enabled": True},
            "evaluation": {"grid_videos": 4},
        },
        "runtime": {"num_workers": 0, "dask": {"n_workers": workers}},
    }


# ---------------------------------------------------------------------------- the copy


def make_copy(root: Path, parameters: Mapping[str, Any]) -> str:
    """``git clone`` of this repository's HEAD into ``root`` (no data, no mlflow.db: both
    are ignored by git) with ``parameters`` as conf/local/parameters.yml; its commit.
    Kedro puts the copy's src/ first on sys.path, so the copy runs HEAD's podium."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(root)], check=True)
    local = root / "conf" / "local"
    local.mkdir(parents=True, exist_ok=True)
    (local / "parameters.yml").write_text(yaml.safe_dump(dict(parameters), sort_keys=False))
    (local / "logging.yml").write_text(yaml.safe_dump(LOGGING, sort_keys=False))
    (root / "logs").mkdir()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True, capture_output=True
    )
    return head.stdout.decode().strip()


@dataclass
class Run:
    """One ``kedro`` subprocess in the copy, its log in ``logs/<name>.log``."""

    name: str
    args: list[str]
    root: Path
    process: subprocess.Popen | None = None
    started: float = 0.0
    rc: int | None = None
    wall_s: float | None = None

    @property
    def log(self) -> Path:
        return self.root / "logs" / f"{self.name}.log"

    def start(self) -> Run:
        env = {
            **os.environ,
            "KEDRO_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "MPLBACKEND": "Agg",
            "KEDRO_LOGGING_CONFIG": str(self.root / "conf" / "local" / "logging.yml"),
        }
        print(f"==> [{self.name}] kedro {' '.join(self.args)}", flush=True)
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [str(KEDRO), *self.args], cwd=self.root, env=env, stdout=out, stderr=out
            )
        self.started = time.perf_counter()
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float = 1800) -> Run:
        self.rc = self.process.wait(timeout=timeout)
        self.wall_s = round(time.perf_counter() - self.started, 2)
        print(f"    rc {self.rc} after {self.wall_s} s (log {self.log})", flush=True)
        return self

    def lines(self, pattern: re.Pattern = NOTABLE) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if pattern.search(line)]

    def to_score(self) -> tuple[int, int] | None:
        """(N, M) of the run's "score_new_videos: N of M video(s) to score" line."""
        found = TO_SCORE.search(self.log.read_text())
        return (int(found[1]), int(found[2])) if found else None

    def summary(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "command": "kedro " + " ".join(self.args),
            "rc": self.rc,
            "wall_s": self.wall_s,
        }


def kedro(root: Path, name: str, *args: str) -> Run:
    return Run(name, list(args), root).start().wait()


# ---------------------------------------------------------------------------- the outputs


def result_files(root: Path) -> list[Path]:
    """The stored results (``results/<scorer digest>/<video>.pkl``; a file still being
    written ends in ``.partial-...`` and is not one)."""
    return sorted((root / RESULTS).glob("*/*.pkl"))


def partial_files(root: Path) -> list[Path]:
    return sorted((root / RESULTS).glob("*/*.partial-*"))


def read_timing(root: Path) -> dict[str, Any] | None:
    path = root / TIMING
    return json.loads(path.read_text()) if path.is_file() else None


def latest_version(folder: Path) -> Path:
    """The newest version of a versioned dataset ``folder/<version>/<folder name>``."""
    versions = sorted(p for p in folder.iterdir() if p.is_dir())
    return versions[-1] / folder.name


def test_videos(root: Path) -> list[str]:
    return sorted(p.name for p in (root / TEST_VIDEOS).glob("*.mp4"))


def wait_for_results(run: Run, target: int, timeout: float = 900) -> int:
    """Poll the results folder until ``target`` results exist or the run ends."""
    deadline = time.monotonic() + timeout
    while run.running() and time.monotonic() < deadline:
        count = len(result_files(run.root))
        if count >= target:
            return count
        time.sleep(0.05)
    return len(result_files(run.root))


# ---------------------------------------------------------------------------- processes


@dataclass
class Worker:
    """One Dask worker process of the run, as the scheduler, the worker and psutil see it."""

    pid: int
    address: str | None  # None: found by its command line alone (no scheduler answer)
    nanny: str | None  # the nanny's address: a port of the kedro process itself
    parent: int | None  # its parent's pid: the kedro process
    spawned: bool  # its command line is multiprocessing's spawn_main
    tasks: int | None  # tasks the scheduler has it processing (running or queued there)
    videos: list[str] = field(default_factory=list)  # the videos of those tasks


#: Worker-side states of a task assigned to a worker and not finished yet.
HELD_STATES = ("waiting", "ready", "constrained", "executing", "long-running")


def _mp4_names(value: Any, depth: int = 0) -> set[str]:
    """File names of the ``*.mp4`` strings anywhere in a task's spec (its arguments: the
    job ``{"videos": [{"video", "path"}, ...]}``), through dicts, sequences and dask's
    task-spec nodes (``.args``, ``.kwargs``, ``.value``)."""
    if depth > 10:
        return set()
    if isinstance(value, str):
        return {os.path.basename(value)} if value.endswith(".mp4") else set()
    if isinstance(value, Mapping):
        parts = list(value.values())
    elif isinstance(value, list | tuple | set | frozenset):
        parts = list(value)
    else:
        parts = [getattr(value, a) for a in ("args", "kwargs", "value") if hasattr(value, a)]
    return set().union(*(_mp4_names(p, depth + 1) for p in parts))


def _on_the_worker(dask_worker: Any = None) -> dict[str, Any]:
    """Run by ``Client.run`` in each worker's event loop: its pid and the videos of the
    tasks it holds."""
    held = [ts for ts in dask_worker.state.tasks.values() if ts.state in HELD_STATES]
    videos = set().union(*(_mp4_names(ts.run_spec) for ts in held)) if held else set()
    return {"pid": os.getpid(), "videos": sorted(videos)}


def is_spawned_child(process: psutil.Process) -> bool:
    """A multiprocessing *spawn* child (how a Dask nanny starts its worker), not the
    resource tracker."""
    with contextlib.suppress(psutil.Error):
        line = " ".join(process.cmdline())
        return "multiprocessing.spawn" in line and "resource_tracker" not in line
    return False


def listening_ports(process: psutil.Process) -> set[int]:
    with contextlib.suppress(psutil.Error):
        return {c.laddr.port for c in process.net_connections("tcp") if c.status == "LISTEN"}
    return set()


def _identity(address: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """Dask's ``identity`` of the server at ``address``; None if it is not one."""
    from distributed.core import rpc

    async def ask() -> Any:
        async with rpc(address) as remote:
            return await asyncio.wait_for(remote.identity(), timeout)

    try:
        return asyncio.run(ask())
    except Exception:  # noqa: BLE001 - not a Dask server (an HTTP port), or not up yet
        return None


def find_scheduler(kedro_pid: int, timeout: float = 120) -> str | None:
    """The address of the run's LocalCluster scheduler: the port of the kedro process
    that answers Dask's ``identity`` with ``type: Scheduler`` (the others are its nannies
    and an HTTP server). Waits, while the run lives, for the cluster to come up."""
    process = psutil.Process(kedro_pid)
    others: set[int] = set()  # ports that answered as something else (a nanny)
    deadline = time.monotonic() + timeout
    while process.is_running() and time.monotonic() < deadline:
        for port in sorted(listening_ports(process) - others):
            identity = _identity(f"tcp://127.0.0.1:{port}")
            if identity and identity.get("type") == "Scheduler":
                return identity["address"]
            if identity:
                others.add(port)
        time.sleep(0.2)
    return None


def dask_workers(kedro_pid: int, scheduler: str | None) -> list[Worker]:
    """The run's worker processes as Dask itself names them: each worker the scheduler
    lists, with its pid and held videos (asked on the worker) and its task count (asked
    of the scheduler), checked against psutil (a spawned child of the kedro process).
    Without a scheduler: the spawned children of the kedro process."""
    children = {c.pid: c for c in psutil.Process(kedro_pid).children(recursive=True)}
    if scheduler is None:
        return [
            Worker(c.pid, None, None, kedro_pid, True, None)
            for c in children.values()
            if is_spawned_child(c)
        ]
    import cloudpickle
    from distributed import Client

    if __name__ != "__main__":  # imported under a name the workers cannot import (tests)
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with Client(scheduler, timeout=10, set_as_default=False) as client:
        seen = client.run(_on_the_worker)
        processing = client.processing()
        listed = client.scheduler_info()["workers"]
    workers = []
    for address, here in seen.items():
        process = children.get(here["pid"])
        workers.append(
            Worker(
                pid=here["pid"],
                address=address,
                nanny=listed.get(address, {}).get("nanny"),
                parent=process.ppid() if process else None,
                spawned=bool(process) and is_spawned_child(process),
                tasks=len(processing.get(address, ())),
                videos=here["videos"],
            )
        )
    return workers


def kill_tree(process: subprocess.Popen, grace: float = 3.0) -> dict[str, Any]:
    """SIGKILL ``process`` (a crash: no handler runs), then, after ``grace`` seconds, any
    of its descendants still alive (each by its pid, SIGKILL too)."""
    parent = psutil.Process(process.pid)
    children = parent.children(recursive=True)
    described = {c.pid: " ".join(c.cmdline())[:120] for c in children if c.is_running()}
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(grace)
    outlived = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    for child in outlived:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    return {
        "children_at_kill": described,
        "outlived_the_kill": {c.pid: described.get(c.pid, "") for c in outlived},
    }


# ---------------------------------------------------------------------------- the steps


def check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    print(f"    {'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    return {"check": name, "ok": bool(ok), "detail": detail}


def setup(root: Path) -> list[Run]:
    sample = kedro(root, "sample_data", "run", "--pipelines=sample_data", "--tags=deepfake")
    if sample.rc != 0:
        raise SystemExit(f"sample_data failed, see {sample.log}")
    training = kedro(root, "training", "run", "--pipelines=deepfake")
    if training.rc != 0:
        raise SystemExit(f"the deepfake training failed, see {training.log}")
    return [sample, training]


def kill_one_worker(root: Path, videos: int, share: float = 0.2) -> dict[str, Any]:
    """Step 1: one Dask worker SIGKILLed at about ``share`` of the videos: the one holding
    the most videos, once Dask confirmed it is a worker process of this run."""
    run = Run("worker_killed", [*SCORING, ONE_VIDEO_A_TASK], root).start()
    scheduler = find_scheduler(run.process.pid)
    wait_for_results(run, max(1, math.ceil(share * videos)))
    workers = dask_workers(run.process.pid, scheduler) if run.running() else []
    candidates = [w for w in workers if w.spawned and w.parent == run.process.pid]
    victim = max(candidates, key=lambda w: len(w.videos)) if candidates else None
    at, killed_at = len(result_files(root)), time.time()
    if victim is not None:
        os.kill(victim.pid, signal.SIGKILL)
        print(
            f"    SIGKILL worker pid {victim.pid} ({victim.address}) at {at} results, "
            f"holding {victim.tasks} task(s): {victim.videos}",
            flush=True,
        )
    run.wait()
    stored = {p.stem + ".mp4": p for p in result_files(root)}
    expected = set(test_videos(root))
    held = victim.videos if victim else []
    rescored = [v for v in held if v in stored and stored[v].stat().st_mtime > killed_at]
    return {
        **run.summary(),
        "to_score": run.to_score(),
        "scheduler": scheduler,
        "results_at_kill": at,
        "workers_at_kill": [asdict(w) for w in workers],
        "killed": asdict(victim) if victim else None,
        "held_videos_rescored": rescored,
        "results_after": len(stored),
        "timing": read_timing(root),
        "log": run.lines(),
        "checks": [
            check(
                "a worker was killed mid-run",
                victim is not None and at < videos,
                f"pid {victim.pid if victim else None}, a spawned child of kedro pid "
                f"{run.process.pid}, at {at} of {videos} results",
            ),
            check("the run finishes (rc 0)", run.rc == 0, f"rc {run.rc}"),
            check(
                "every video has a result",
                set(stored) == expected,
                f"{len(set(stored) & expected)} of {len(expected)}",
            ),
            check(
                "the killed worker's videos were scored again",
                bool(held) and len(rescored) == len(held),
                f"{len(rescored)} of {len(held)} held ({', '.join(held)}) have a result "
                "written after the kill",
            ),
        ],
    }


def kill_the_run(root: Path, videos: int, share: float = 0.5) -> dict[str, Any]:
    """Step 2: from zero results, the kedro process SIGKILLed at about ``share``; then
    the re-run, which must score only what is missing."""
    shutil.rmtree(root / RESULTS, ignore_errors=True)
    run = Run("run_killed", [*SCORING, ONE_VIDEO_A_TASK], root).start()
    at = wait_for_results(run, max(1, math.ceil(share * videos)))
    killed = run.running()
    run.wall_s = round(time.perf_counter() - run.started, 2)  # the time of the kill
    reaped = kill_tree(run.process) if killed else {}
    run.rc = run.process.returncode
    present = len(result_files(root))
    left = read_timing(root)  # as the killed run last wrote it
    partial = [p.name for p in partial_files(root)]
    lock = json.loads((root / LOCK).read_text()) if (root / LOCK).is_file() else None
    print(
        f"    SIGKILL kedro pid {run.process.pid} at {at} results; {present} present, "
        f"lock left: {lock is not None}",
        flush=True,
    )

    resumed = kedro(root, "resumed", *SCORING, ONE_VIDEO_A_TASK)
    planned = resumed.to_score()
    timing = read_timing(root)  # the re-run's
    takeover = [line for line in resumed.lines() if "run lock" in line]
    marked = [line for line in resumed.lines() if "marked KILLED" in line]
    return {
        "killed": {
            **run.summary(),
            "results_at_kill": at,
            "results_present": present,
            "to_score": run.to_score(),
            "timing": left,
            "partial_files_left": partial,
            "lock_left": lock,
            **reaped,
            "log_tail": run.log.read_text().splitlines()[-3:],
        },
        "resumed": {
            **resumed.summary(),
            "to_score": planned,
            "timing": timing,
            "results_after": len(result_files(root)),
            "log": resumed.lines(),
        },
        "checks": [
            check(
                "the run was killed mid-run",
                killed and 0 < present < videos,
                f"{present} of {videos} results present after the kill",
            ),
            check(
                "the killed run left its lock",
                lock is not None,
                f"pid {lock.get('pid') if lock else None} in {LOCK}",
            ),
            check(
                "the re-run takes the lock over",
                bool(takeover),
                takeover[0].split(": ", 1)[-1] if takeover else "no 'run lock' log line",
            ),
            check(
                "the re-run plans only the missing videos",
                planned == (videos - present, videos),
                f"log says {planned}, expected ({videos - present}, {videos})",
            ),
            check(
                "the re-run scores only the missing videos",
                bool(timing) and timing["scored_this_run"] == videos - present,
                f"scored_this_run {timing and timing['scored_this_run']}",
            ),
            check("the re-run finishes (rc 0)", resumed.rc == 0, f"rc {resumed.rc}"),
            check(
                "every video has a result",
                len(result_files(root)) == videos,
                f"{len(result_files(root))} of {videos}",
            ),
            check(
                "the killed MLflow run is marked KILLED",
                bool(marked),
                marked[0].split(": ", 1)[-1] if marked else "no 'marked KILLED' log line",
            ),
        ],
    }


def second_run(root: Path, videos: int) -> dict[str, Any]:
    """Step 3: everything is scored already."""
    run = kedro(root, "second_run", *SCORING)
    timing = read_timing(root)
    return {
        **run.summary(),
        "to_score": run.to_score(),
        "timing": timing,
        "log": run.lines(),
        "checks": [
            check(
                "a second run scores no video",
                bool(timing) and timing["scored_this_run"] == 0,
                f"scored_this_run {timing and timing['scored_this_run']}, log {run.to_score()}",
            ),
            check("the second run finishes (rc 0)", run.rc == 0, f"rc {run.rc}"),
        ],
    }


def compare_submissions(root: Path) -> dict[str, Any]:
    """Step 4: the latest deepfake_inference submission against the training run's."""
    scored_path = latest_version(root / INFERENCE_OUT)
    trained_path = latest_version(root / TRAINING_OUT)
    scored = pd.read_csv(scored_path)
    trained = pd.read_csv(trained_path).set_index("filename")["label"]
    videos = test_videos(root)
    joined = scored.set_index("filename")["label"].to_frame("scored").join(trained, how="left")
    differ = joined[joined["scored"] != joined["label"]]
    max_abs = float((joined["scored"] - joined["label"]).abs().max())
    return {
        "inference_submission": str(scored_path.relative_to(root)),
        "training_submission": str(trained_path.relative_to(root)),
        "rows": len(scored),
        "test_videos": len(videos),
        "labels_differing": len(differ),
        "max_abs_difference": max_abs,
        "checks": [
            check(
                "one row per test video",
                sorted(scored["filename"]) == videos and not scored["filename"].duplicated().any(),
                f"{len(scored)} rows, {scored['filename'].nunique()} names, {len(videos)} videos",
            ),
            check(
                "labels == the training run's, exactly",
                differ.empty and joined["label"].notna().all(),
                f"{len(differ)} differ, max |difference| {max_abs:.3g}",
            ),
        ],
    }


def scoring_costs(root: Path, runs: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """Seconds per video of the last run's report.csv (per-video timings of the stored
    results) and its costs.csv, with the throughput of the runs that scored videos."""
    report = pd.read_csv(latest_version(root / REPORT_CSV))
    costs = pd.read_csv(latest_version(root / COSTS_CSV))
    scored = report[report["status"] == "scored"]
    stages = {
        f"{stage}_s": float((scored if stage == "model" else report)[f"{stage}_s"].mean())
        for stage in ("decode", "detect", "model", "total")
    }
    throughput = {
        name: round(t["wall_seconds"] / t["scored_this_run"], 4)
        for name, t in runs.items()
        if t and t.get("scored_this_run")
    }
    return {
        "statuses": report["status"].value_counts().to_dict(),
        "seconds_per_video": stages,
        "wall_seconds_per_video": throughput,
        "costs": costs.to_dict(orient="records"),
    }


def mlflow_statuses(root: Path) -> list[dict[str, Any]]:
    """Every MLflow run of the copy: name, status and podium's reason tag."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("podium")
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])
    return [
        {
            "run": r.info.run_name,
            "status": r.info.status,
            "reason": r.data.tags.get("podium.status_reason", ""),
        }
        for r in runs
    ]


# ---------------------------------------------------------------------------- the summary


def markdown(summary: Mapping[str, Any]) -> str:
    s = summary
    rows = [
        "# deepfake_inference under faults",
        "",
        f"{s['finished']} on {s['host']}, podium {s['commit']}, {s['videos']} test videos, "
        f"{s['workers']} Dask worker(s), {s['wall_s']:.0f} s in all. "
        "Made by `benchmarks/scoring_faults.py`.",
        "",
        "| step | check | result | detail |",
        "|---|---|---|---|",
    ]
    for step, block in s["steps"].items():
        for c in block["checks"]:
            detail = str(c["detail"]).replace("|", "\\|")
            rows.append(f"| {step} | {c['check']} | {'ok' if c['ok'] else '**FAIL**'} | {detail} |")
    rows += [
        "",
        "| kedro run | rc | wall s | scored this run | to score (log) |",
        "|---|---|---|---|---|",
    ]
    for run in s["runs"]:
        rows.append(
            f"| {run['step']} | {run['rc']} | {run['wall_s']} | "
            f"{run.get('scored_this_run', '')} | {run.get('to_score') or ''} |"
        )
    killed = s["steps"]["worker_killed"].get("killed") or {}
    rows += [
        "",
        f"Worker killed: pid {killed.get('pid')} ({killed.get('address')}, nanny "
        f"{killed.get('nanny')}), {killed.get('tasks')} task(s) of one video each in its "
        f"hands: {', '.join(killed.get('videos') or [])}; scored again after the kill: "
        f"{len(s['steps']['worker_killed']['held_videos_rescored'])}.",
    ]
    run_kill = s["steps"]["run_killed"]["killed"]
    rows += [
        "",
        f"Run killed: {run_kill['results_present']} results present after the kill "
        f"(its timing.json: scored_this_run {(run_kill['timing'] or {}).get('scored_this_run')}), "
        f"{len(run_kill['partial_files_left'])} partial file(s) left, "
        f"{len(run_kill.get('outlived_the_kill', {}))} of its "
        f"{len(run_kill.get('children_at_kill', {}))} child processes alive "
        "3 s after it, its lock left with pid "
        f"{(run_kill['lock_left'] or {}).get('pid')}.",
    ]
    costs = s["costs"]
    per = costs["seconds_per_video"]
    rows += [
        "",
        "Seconds per video (the last run's report.csv; decode, detect, total over all videos, "
        f"model over the scored): decode {per['decode_s']:.4f}, detect {per['detect_s']:.4f}, "
        f"model {per['model_s']:.4f}, total {per['total_s']:.4f}. Wall seconds per video "
        "scored (timing.json, cluster start included): "
        + ", ".join(f"{k} {v}" for k, v in costs["wall_seconds_per_video"].items())
        + ".",
        "",
        "| instance | source | videos/h | $/h | videos | hours | cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in costs["costs"]:
        cells = [row["instance"], row["source"]] + [
            "" if pd.isna(row[k]) else f"{row[k]:.4g}"
            for k in ("videos_per_hour", "price_per_hour", "videos", "hours", "cost")
        ]
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    rows += ["", "| MLflow run | status | reason |", "|---|---|---|"]
    for r in s["mlflow"]:
        rows.append(f"| {r['run']} | {r['status']} | {r['reason'].replace('|', '/')} |")
    notable = [
        (step, line)
        for step, lines in s["log_lines"].items()
        for line in lines
        if "score_new_videos: " not in line
    ]
    if notable:
        rows += ["", "Log lines (warnings, the run lock):", "", "```"]
        rows += [f"[{step}] {line}" for step, line in notable]
        rows += ["```"]
    return "\n".join(rows) + "\n"


def write_summary(summary: Mapping[str, Any], out: Path = REPORT) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    as_json = out / "scoring_faults.json"
    as_md = out / "scoring_faults.md"
    as_json.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    as_md.write_text(markdown(summary))
    return as_md, as_json


# ---------------------------------------------------------------------------- main


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=100, help="test videos to score")
    parser.add_argument("--workers", type=int, default=2, help="runtime.dask.n_workers")
    parser.add_argument("--keep", action="store_true", help="keep the project copy")
    parser.add_argument("--out", type=Path, default=REPORT, help="folder of the summary")
    args = parser.parse_args(argv)
    if args.videos < 10 or args.workers < 2:
        parser.error("--videos must be >= 10 and --workers >= 2 (one worker is killed)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="podium-scoring-faults-")) / "project"
    commit = make_copy(root, local_parameters(args.videos, args.workers))
    print(f"==> project copy {root} (podium {commit})", flush=True)
    try:
        runs = setup(root)
        steps: dict[str, Any] = {}
        steps["worker_killed"] = kill_one_worker(root, args.videos)
        steps["run_killed"] = kill_the_run(root, args.videos)
        steps["second_run"] = second_run(root, args.videos)
        steps["submission"] = compare_submissions(root)
        costs = scoring_costs(
            root,
            {
                "worker_killed": steps["worker_killed"]["timing"],
                "resumed": steps["run_killed"]["resumed"]["timing"],
            },
        )
        scoring_runs = [
            steps["worker_killed"],
            steps["run_killed"]["killed"],
            steps["run_killed"]["resumed"],
            steps["second_run"],
        ]
        table = [r.summary() for r in runs] + [
            {
                **{k: r[k] for k in ("step", "command", "rc", "wall_s")},
                "to_score": r.get("to_score"),
                "scored_this_run": (r.get("timing") or {}).get("scored_this_run"),
            }
            for r in scoring_runs
        ]
        summary = {
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "commit": commit,
            "videos": args.videos,
            "workers": args.workers,
            "project": str(root) if args.keep else None,
            "wall_s": round(time.perf_counter() - started, 1),
            "ok": all(c["ok"] for b in steps.values() for c in b["checks"]),
            "runs": table,
            "steps": steps,
            "costs": costs,
            "mlflow": mlflow_statuses(root),
            "log_lines": {
                "worker_killed": steps["worker_killed"].pop("log"),
                "resumed": steps["run_killed"]["resumed"].pop("log"),
                "second_run": steps["second_run"].pop("log"),
            },
        }
        as_md, as_json = write_summary(summary, args.out)
        print("\n" + markdown(summary))
        print(f"==> {as_md}\n==> {as_json}\n==> {summary['wall_s']} s", flush=True)
        return 0 if summary["ok"] else 1
    finally:
        if args.keep:
            print(f"==> kept {root}", flush=True)
        else:
            shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
