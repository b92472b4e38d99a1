"""Shared fixtures: a throwaway copy of the podium project for end-to-end runs."""

from __future__ import annotations

import contextlib
import copy
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import mlflow
import psutil
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from podium.core import config
from podium.pipelines.stages import STAGE_WORDS

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# Every process this session starts inherits this mark (through fork and exec alike), so
# one that outlives its parent is found, and told from any other process on the machine.
SESSION_MARK = "PODIUM_TEST_SESSION"
os.environ[SESSION_MARK] = uuid.uuid4().hex
SESSION_START = time.time()
ORPHAN_GRACE = 30  # seconds for an orphan to notice its parent's death and exit by itself


def orphans() -> list[psutil.Process]:
    """This session's processes that are no longer below it: their parent died without
    them (a server's child when only the server was stopped, a killed run's workers)."""
    me, mark = os.getpid(), os.environ[SESSION_MARK]
    found = []
    for proc in psutil.process_iter(["create_time"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid == me or proc.info["create_time"] < SESSION_START - 1:
                continue
            if proc.environ().get(SESSION_MARK) != mark:
                continue
            if me not in {parent.pid for parent in proc.parents()}:
                found.append(proc)
    return found


#: Processes that leave their parent by design: Chromium starts its crash reporter
#: detached (the browser tests' headless Chromium). Ended, not reported.
DETACHED_BY_DESIGN = ("chrome_crashpad_handler",)


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


def end_orphans() -> list[str]:
    """Wait for this session's orphans to exit, then kill those left; what they were (but
    for the ones detached by design)."""
    found = orphans()
    detached = [p for p in found if _name(p) in DETACHED_BY_DESIGN]
    for proc in detached:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _, alive = psutil.wait_procs([p for p in found if p not in detached], timeout=ORPHAN_GRACE)
    left = []
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            left.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:300]}")
            proc.kill()
    return left


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test(request):
    """Fails the test after which a process is left running without its parent (it, or
    a fixture torn down before it, started the process), and ends that process."""
    yield
    left = end_orphans()
    if left:
        pytest.fail(
            f"left running after {request.node.nodeid}, their parent gone (killed now):\n"
            + "\n".join(left),
            pytrace=False,
        )


@pytest.fixture(scope="session", autouse=True)
def _no_process_outlives_the_session():
    yield
    left = end_orphans()
    if left:
        pytest.fail(
            "left running by a fixture, their parent gone (killed now):\n" + "\n".join(left),
            pytrace=False,
        )


# Small enough that the four generators together take seconds, large enough that every
# generator still writes its whole layout.
#: The generator's single face-swap manipulation and no test distractors: the data the
#: deepfake tests were written against (a direct generator call takes a partial mapping).
ONE_FAMILY = {"families": {"face_swap": 1.0}, "test_distractors": {"share": 0.0}}

TINY_SAMPLE = {
    "sample_data": {
        "deepfake": {
            "n_parts": 1,
            "reals_per_part": 2,
            "fakes_per_real": 1,
            "actors_per_part": 2,
            "n_test_videos": 2,
            "test_actors": 1,
            "seconds": 1.0,
            "width": 160,
            "height": 120,
            # today's single manipulation and no test distractors: the pipeline tests'
            # data (every family is set, since parameters merge softly over conf/base's mix)
            "families": {
                "face_swap": 1.0,
                "autoencoder_256": 0.0,
                "morphable_mask": 0.0,
                "talking_head": 0.0,
                "poisson_blend": 0.0,
                "gan_face": 0.0,
            },
            "test_distractors": {"share": 0.0},
        },
        "mask": {"n_people": 6, "n_eval_people": 2, "width": 96, "height": 128},
        "uda": {
            "n_train_source": 4,
            "n_val_source": 1,
            "n_train_target": 4,
            "n_val_target": 2,
            "n_test": 2,
        },
        "monet": {"n_photos": 6, "n_monet": 4, "size": 64},
    }
}


def write_tree(files: dict[str, bytes], root: Path) -> Path:
    """Write a generator's ``{relative path: bytes}`` under ``root``; return ``root``."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def free_port() -> int:
    """A free TCP port below 49152: kedro-viz refuses ports in the ephemeral range,
    where the OS's own "any free port" answer usually lands."""
    for port in random.Random().sample(range(20000, 40000), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port between 20000 and 40000")


def soft_merged(base: dict, override: dict) -> dict:
    """:func:`podium.core.config.soft_merged` into a deep copy of ``base``, so a test that
    changes the result leaves a shared fixture's parameters alone."""
    return config.soft_merged(copy.deepcopy(base), override)


def make_project(root: Path, local_parameters: dict | None = None, git: bool = True) -> Path:
    """Copy pyproject.toml and conf/ into ``root`` (empty data layers, its own mlflow.db),
    with ``local_parameters`` as conf/local/parameters.yml, as a git checkout."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # podium itself is imported from the installed package
    # An absolute store per project: MLflow caches one SQLAlchemy engine per tracking URI
    # in the process, so the relative `sqlite:///mlflow.db` would keep the first project's.
    server = yaml.safe_load((REPO / "conf" / "base" / "mlflow.yml").read_text())["server"]
    server["mlflow_tracking_uri"] = f"sqlite:///{root / 'mlflow.db'}"
    (root / "conf" / "local" / "mlflow.yml").write_text(yaml.safe_dump({"server": server}))
    if local_parameters:
        (root / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(local_parameters))
    for layer in ("01_raw", "02_intermediate", "08_reporting"):
        (root / "data" / layer).mkdir(parents=True)
    if git:
        run = lambda *a: subprocess.run(["git", *a], cwd=root, check=True, capture_output=True)  # noqa: E731
        run("init", "-q")
        run("add", "-A")
        run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fixture")
    return root


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    root = make_project(tmp_path / "project", TINY_SAMPLE)
    monkeypatch.chdir(root)
    return root


def kedro_run(
    project: Path,
    pipeline: str,
    params: dict | None = None,
    tags: list[str] | None = None,
    nodes: list[str] | None = None,
) -> None:
    """One `kedro run`, in-process. kedro-mlflow's hook object lives for the process and
    may leave its run on MLflow's stack; each `kedro run` from the shell is a new process,
    so end any run left over to give each session here a fresh one."""
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project, runtime_params=params or {}) as session:
            session.run(pipeline_names=[pipeline], tags=tags, node_names=nodes)
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()


def data_files(project: Path) -> set[Path]:
    """Every file under the project's data/ folder."""
    return {p for p in (project / "data").rglob("*") if p.is_file()}


def assert_refused_at_the_door(project: Path, before: set[Path]) -> None:
    """A run stopped before its first node: data/ holds exactly what it held before (no
    node wrote anything), and the project's MLflow store has no run."""
    after = data_files(project)
    assert after == before, sorted(after ^ before)
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("podium")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def tracked_runs(project: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("podium")
    return client, client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])


def assert_reports_logged(
    client: MlflowClient, run_id: str, pipeline: str, reporting: Path, names: set[str]
) -> None:
    """Each report table ``names`` is logged under the run at ``reports/<pipeline>/``, byte
    for byte the file the run wrote in ``reporting`` (the newest version of a versioned
    one)."""
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, f"reports/{pipeline}")}
    assert names <= logged, f"not logged under reports/{pipeline}: {sorted(names - logged)}"
    for name in names:
        local = reporting / name
        if local.is_dir():  # versioned: <name>/<version>/<name>
            local = max(local.iterdir()) / name
        remote = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=f"reports/{pipeline}/{name}",
            tracking_uri=client.tracking_uri,
        )
        assert Path(remote).read_bytes() == local.read_bytes(), name


# ---------------------------------------------------------------- ablations (kedro ablate)

# Deepfake at its smallest: one tiny CNN epoch, so one `kedro run` is seconds once the
# faces are cached (the end-to-end pipeline test and the ablation tests share it).
TINY_DEEPFAKE = {
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
    "runtime": {"num_workers": 0, "dask": {"n_workers": 1}},
}
# The ablation compares split strategies, and a folder split needs two part folders.
TINY_ABLATION_PARAMETERS = {
    "sample_data": {
        "deepfake": {**TINY_SAMPLE["sample_data"]["deepfake"], "n_parts": 2, "reals_per_part": 2}
    },
    **TINY_DEEPFAKE,
}
TINY_ABLATION_GRID = {
    "name": "tiny_split",
    "pipeline": "deepfake",
    "metric": "deepfake/report/oof/log_loss",
    "greater_is_better": False,
    "baseline": "original",
    "metrics": ["deepfake/report/test/log_loss"],
    "points": {
        "original": {"deepfake.split.strategy": "original"},
        "folder": {"deepfake.split.strategy": "folder"},
    },
}


def stop_group(server: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True`` and every process of its
    group: kedro viz and the MLflow UI serve from children of the command started."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(server.pid, signal.SIGKILL)  # whatever of the group is left
    except ProcessLookupError:
        pass
    server.wait(timeout=30)


def kedro_cli(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`kedro <args>` in ``project`` as a person runs it: its own process, output captured."""
    import sys

    kedro = Path(sys.executable).with_name("kedro")
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "MPLBACKEND": "Agg",
    }
    return subprocess.run(
        [str(kedro), *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def ablated_project(tmp_path_factory):
    """A tiny project with the DFDC sample and one finished 2-point x 2-seed ablation,
    `tiny_split`, made by `kedro ablate` (shared: ablation, reproduce, notebook and
    browser tests read it; none may change its runs' data for good)."""
    root = make_project(tmp_path_factory.mktemp("ablation") / "project", TINY_ABLATION_PARAMETERS)
    grid = root / "conf" / "base" / "ablations" / "tiny_split.yml"
    grid.parent.mkdir(parents=True, exist_ok=True)
    grid.write_text(yaml.safe_dump(TINY_ABLATION_GRID, sort_keys=False))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        kedro_run(root, "sample_data", tags=["deepfake"])
    finally:
        os.chdir(cwd)
    done = kedro_cli(root, "ablate", f"--grid={grid}", "--seeds=0,1")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    root.joinpath("ablate.log").write_text(done.stdout + done.stderr)
    return root


# ------------------------------------------------------------------ metric names

STAGE = "|".join(STAGE_WORDS)
SEGMENT = r"[A-Za-z0-9_\-]+"


def assert_metric_names(metrics, pipeline: str) -> None:
    """Every key of ``metrics`` is ``<pipeline>/score`` or ``<pipeline>/<stage>/...``."""
    name = re.compile(rf"{pipeline}/(score|({STAGE})(/{SEGMENT})+)")
    wrong = sorted(key for key in metrics if not name.fullmatch(key))
    assert not wrong, f"{pipeline}: metrics outside <pipeline>/<stage>/...: {wrong[:10]}"
