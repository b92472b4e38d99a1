"""Fault injection: every run's MLflow status says what happened, one run per folder.

End to end, `kedro run --pipelines=monet` (a tiny CycleGAN set to train for ever) in its own
process, in a throwaway project with the monet sample, hit once training is under way
(its first epoch checkpoint exists): Ctrl-C and SIGTERM end the run KILLED and the process
with a non-zero exit; an error in a node ends it FAILED; SIGKILL leaves it RUNNING until
the next run (or `kedro prune`) marks it KILLED; a second run in the folder is refused
while the first is alive. In-process: the lock, the liveness checks and the hook wrappers
around a kedro-mlflow whose error hook fails, the DDP launcher's signal error, a forked
child that inherits the handler.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from click.testing import CliRunner
from kedro.framework.hooks import hook_impl
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from podium.cli import cli
from podium.core.ddp import _signal_handlers_kept
from podium.run_guard import (
    LOCK_PATH,
    TAG_HOST,
    TAG_PID,
    TAG_PID_START,
    TAG_REASON,
    RunGuardHooks,
    RunLock,
    RunLockedError,
    mark_dead_runs,
    process_alive,
    process_identity,
    read_lock,
    signal_of,
)
from podium.sample_data.monet import generate_monet_sample
from tests.conftest import TINY_SAMPLE, make_project, write_tree
from tests.pipelines.monet.test_pipeline import TINY_PARAMS as TINY_MONET

#: The tiny CycleGAN, training far longer than any test waits: it only stops when hit.
FOREVER = copy.deepcopy(TINY_MONET)
FOREVER["monet"]["train"].update({"n_epochs": 100_000, "n_epochs_decay": 0})
QUIET = {"KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "MPLBACKEND": "Agg"}
KEDRO = Path(sys.executable).with_name("kedro")
BAD_RESUME = "monet.train.resume_from=2000-01-01T00.00.00.000Z"  # fails in train_cyclegan
WAIT = 240  # seconds at most for a run to reach training on a loaded 2-core box


# ------------------------------------------------------------------ end to end helpers


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = make_project(tmp_path_factory.mktemp("run_status") / "project", FOREVER, git=False)
    write_tree(
        generate_monet_sample(TINY_SAMPLE["sample_data"]["monet"], seed=3),
        root / "data" / "01_raw" / "monet",
    )
    return root


def _default_sigint() -> None:
    # A background job (`make test &`, CI) starts with SIGINT ignored, which the child would
    # inherit: a terminal's Ctrl-C reaches a foreground run, whose SIGINT is not ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_run_left_behind():
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start(project: Path, *args: str) -> subprocess.Popen:
    """`kedro run --pipelines=monet` in its own process group, as from a terminal."""
    shutil.rmtree(project / "data/06_models/monet/checkpoints", ignore_errors=True)
    log = project / f"run-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(KEDRO), "run", "--pipelines=monet", *args],
            cwd=project,
            env={**os.environ, **QUIET},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )
    proc.log = log
    _STARTED.append(proc)
    return proc


def output(proc: subprocess.Popen) -> str:
    return proc.log.read_text(errors="replace")


def run_to_end(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(KEDRO), "run", "--pipelines=monet", *args],
        cwd=project,
        env={**os.environ, **QUIET},
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def training(project: Path, proc: subprocess.Popen) -> dict:
    """Wait until the run trains (an epoch checkpoint exists); return its lock."""
    deadline = time.monotonic() + WAIT
    checkpoints = project / "data/06_models/monet/checkpoints"
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended ({proc.returncode}):\n{output(proc)[-3000:]}"
        lock = read_lock(project / LOCK_PATH)
        if lock and lock.get("mlflow_run_id") and any(checkpoints.glob("*/*")):
            assert lock["pid"] == proc.pid
            return lock
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint after {WAIT} s:\n{output(proc)[-3000:]}")


def hit(proc: subprocess.Popen, signum: int) -> int:
    os.killpg(proc.pid, signum)  # the whole group, as a terminal's Ctrl-C
    return proc.wait(timeout=120)


def client_of(project: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def n_runs(project: Path) -> int:
    client = client_of(project)
    return len(client.search_runs([client.get_experiment_by_name("podium").experiment_id]))


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_ctrl_c_mid_training_ends_the_run_killed(project):
    proc = start(project)
    lock = training(project, proc)
    assert hit(proc, signal.SIGINT) == 1, output(proc)[-3000:]  # click's "Aborted!"
    run = client_of(project).get_run(lock["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.info.end_time
    assert (
        run.data.tags[TAG_REASON] == "SIGINT (Ctrl-C) received in node monet.models.train_cyclegan"
    )
    assert run.data.tags[TAG_PID] == str(proc.pid)
    assert run.data.tags[TAG_HOST] == socket.gethostname()
    assert not (project / LOCK_PATH).exists()


@pytest.mark.slow
def test_a_second_run_is_refused_while_the_first_trains_which_sigterm_then_kills(project):
    first = start(project)
    lock = training(project, first)
    before = n_runs(project)
    second = run_to_end(project)
    said = second.stdout + second.stderr
    assert second.returncode == 1, said[-3000:]
    assert "Another `kedro run` is using this project folder" in said
    assert f"pid {first.pid} on {socket.gethostname()}" in said
    assert f"MLflow run {lock['mlflow_run_id']}" in said and "Fix: wait" in said
    assert n_runs(project) == before  # refused before kedro-mlflow opened a run
    assert read_lock(project / LOCK_PATH)["token"] == lock["token"]  # still the first's
    assert first.poll() is None, "the first run must still train for this test to mean much"

    assert hit(first, signal.SIGTERM) == -signal.SIGTERM, output(first)[-3000:]  # 143 in a shell
    run = client_of(project).get_run(lock["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert run.data.tags[TAG_REASON] == "SIGTERM received in node monet.models.train_cyclegan"
    assert not (project / LOCK_PATH).exists()


@pytest.mark.slow
def test_sigkill_leaves_running_until_prune_or_the_next_run_which_fails_in_a_node(project):
    proc = start(project)
    lock = training(project, proc)
    assert hit(proc, signal.SIGKILL) == -signal.SIGKILL
    client = client_of(project)
    killed = lock["mlflow_run_id"]
    assert client.get_run(killed).info.status == "RUNNING"  # nothing could end it
    assert read_lock(project / LOCK_PATH)["pid"] == proc.pid  # nor release its lock

    # kedro prune finds both; --dry-run changes nothing
    metadata = SimpleNamespace(project_path=project, package_name="podium")
    pruned = CliRunner().invoke(
        cli, ["prune", "--data", str(project / "data"), "--dry-run"], obj=metadata
    )
    assert pruned.exit_code == 0, pruned.output
    assert f"would mark KILLED: MLflow run {killed}" in pruned.output
    assert f"would delete the run lock {project / LOCK_PATH}" in pruned.output
    assert client.get_run(killed).info.status == "RUNNING"

    # the next run takes the lock over and marks the killed run; then fails in a node
    after = run_to_end(project, f"--params={BAD_RESUME}")
    said = after.stdout + after.stderr
    assert after.returncode == 1, said[-3000:]
    assert "Taking over the run lock" in said
    assert client.get_run(killed).info.status == "KILLED"
    assert "ended without closing its run" in client.get_run(killed).data.tags[TAG_REASON]
    (failed,) = client.search_runs(
        [client.get_run(killed).info.experiment_id], order_by=["start_time DESC"], max_results=1
    )
    assert failed.info.status == "FAILED"
    reason = failed.data.tags[TAG_REASON]
    assert reason.startswith("ParameterError in node monet.models.train_cyclegan: ")
    assert "monet.train.resume_from" in reason
    assert not (project / LOCK_PATH).exists()


# ------------------------------------------------------------------ the lock, in-process


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def warnings_said(caplog):
    """What podium.run_guard logged, whatever logging Kedro configured (propagate or not)."""
    logger = logging.getLogger("podium.run_guard")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_the_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path, sleeper, warnings_said):
    caplog = warnings_said
    path = tmp_path / LOCK_PATH
    lock = RunLock.acquire(path, pipeline="monet")
    held = json.loads(path.read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    assert held["pipeline"] == "monet" and held["started"] and held["mlflow_run_id"] is None
    with pytest.raises(RunLockedError, match="Another `kedro run`"):  # a session of this process
        RunLock.acquire(path, pipeline="mask")
    lock.update(mlflow_run_id="abc")
    assert read_lock(path)["mlflow_run_id"] == "abc"
    lock.release()
    assert not path.exists()
    assert not list(path.parent.glob("*.tmp"))  # written through a temporary name

    other = {"pid": sleeper.pid, "host": socket.gethostname(), "mlflow_run_id": "r1"}
    path.write_text(json.dumps({**other, "pipeline": "deepfake", "token": "t"}))
    with pytest.raises(RunLockedError) as refused:
        RunLock.acquire(path, pipeline="mask")
    assert f"pid {sleeper.pid}" in str(refused.value) and "MLflow run r1" in str(refused.value)
    assert "Fix: wait" in str(refused.value) and "another copy of the project" in str(refused.value)

    path.write_text(json.dumps({**other, "host": "elsewhere", "token": "t"}))
    with pytest.raises(RunLockedError, match="another host"):
        RunLock.acquire(path, pipeline="mask")

    for stale in ({**other, "pid": dead_pid(), "token": "t"}, "{half a lock"):
        path.write_text(stale if isinstance(stale, str) else json.dumps(stale))
        caplog.clear()
        taken = RunLock.acquire(path, pipeline="mask")
        assert "Taking over the run lock" in caplog.text
        assert read_lock(path)["token"] == taken.info["token"]
        taken.release()
    # a release never removes a lock that is not its own
    path.write_text(json.dumps({**other, "token": "t"}))
    taken.release()
    assert path.exists()


def test_liveness_tells_dead_zombie_and_reused_pids_from_live_ones(sleeper):
    me = process_identity()
    assert process_alive(me["pid"], me["pid_start"])
    assert process_alive(sleeper.pid)
    assert not process_alive(dead_pid())
    assert not process_alive("not a pid") and not process_alive(0)
    if me["pid_start"] is not None:  # Linux: /proc tells a reused pid by its start time
        assert not process_alive(me["pid"], int(me["pid_start"]) + 1)
        zombie = subprocess.Popen([sys.executable, "-c", "pass"])
        deadline = time.monotonic() + 30
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not process_alive(zombie.pid)  # exited, not yet reaped
        zombie.wait()


def test_only_runs_of_dead_processes_of_this_host_are_marked_killed(store):
    client, experiment = store
    host = socket.gethostname()
    runs = {}
    for name, tags in {
        "dead": {TAG_PID: str(dead_pid()), TAG_HOST: host},
        "alive": {TAG_PID: str(os.getpid()), TAG_HOST: host},
        "reused": {TAG_PID: str(os.getpid()), TAG_HOST: host, TAG_PID_START: "1"},
        "elsewhere": {TAG_PID: str(dead_pid()), TAG_HOST: "elsewhere"},
        "untagged": {},
    }.items():
        runs[name] = client.create_run(experiment, run_name=name, tags=tags).info.run_id
    if process_identity()["pid_start"] is None:
        runs.pop("reused")  # no /proc: a reused pid looks alive
        expected = {"dead"}
    else:
        expected = {"dead", "reused"}
    assert {r.info.run_name for r in mark_dead_runs(client, [experiment], dry_run=True)} == (
        expected
    )
    assert {r.info.run_name for r in mark_dead_runs(client, [experiment], by="a test")} == expected
    for name, run_id in runs.items():
        run = client.get_run(run_id)
        assert run.info.status == ("KILLED" if name in expected else "RUNNING"), name
        if name in expected:
            assert run.data.tags[TAG_REASON].endswith("by a test")


def test_signal_of_finds_interrupts_and_the_ddp_agents_signal_error():
    from torch.distributed.elastic.multiprocessing.api import SignalException

    assert signal_of(KeyboardInterrupt()) == signal.SIGINT
    term = SignalException("Process 1 got signal: 15", sigval=signal.SIGTERM)
    assert signal_of(term) == signal.SIGTERM
    try:
        raise RuntimeError("training failed") from term
    except RuntimeError as wrapped:
        assert signal_of(wrapped) == signal.SIGTERM
    assert signal_of(ValueError("bad")) is None


# ------------------------------------------------------------------ the hooks, in-process


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def store(store_uri, tmp_path, monkeypatch):
    monkeypatch.setattr(tracking_utils, "_tracking_uri", store_uri)
    client = MlflowClient(tracking_uri=store_uri)
    yield client, client.create_experiment(tmp_path.name)
    while mlflow.active_run() is not None:
        mlflow.end_run()


class FakeKedroMlflow:
    """kedro-mlflow's part: opens the run before the pipeline; its error hook fails as
    kedro-mlflow 2.0.3's does when no run is on the thread's stack."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog):
        mlflow.start_run(experiment_id=self.experiment)

    @hook_impl
    def on_pipeline_error(self, error, run_params, pipeline, catalog):
        raise UnboundLocalError("cannot access local variable 'pipeline_run_id_is_closed'")


def _session(tmp_path: Path, experiment: str):
    guard = RunGuardHooks()
    guard._project_path = tmp_path
    manager = _create_hook_manager()
    manager.register(guard)
    manager.register(FakeKedroMlflow(experiment))
    args = {"run_params": {"pipeline_names": ["demo"]}, "pipeline": Pipeline([])}
    args["catalog"] = DataCatalog()
    return guard, manager.hook, args


def _other_handler(signum, frame):  # pragma: no cover - never called
    pass


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (ValueError("bad input"), "FAILED", "ValueError: bad input"),
        (None, "KILLED", "SIGTERM received"),  # the DDP agent's SignalException
    ],
)
def test_the_hooks_end_the_run_whatever_kedro_mlflows_error_hook_does(
    tmp_path, store, error, status, reason
):
    from torch.distributed.elastic.multiprocessing.api import SignalException

    error = error or SignalException("Process 1 got signal: 15", sigval=signal.SIGTERM)
    client, experiment = store
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    guard, hook, args = _session(tmp_path, experiment)
    hook.before_pipeline_run(**args)
    run_id = mlflow.active_run().info.run_id
    assert read_lock(tmp_path / LOCK_PATH)["mlflow_run_id"] == run_id
    tags = client.get_run(run_id).data.tags
    assert tags[TAG_PID] == str(os.getpid()) and tags[TAG_HOST] == socket.gethostname()
    assert signal.getsignal(signal.SIGTERM) == guard._on_signal
    with _signal_handlers_kept():  # the DDP launcher: the elastic agent's handlers, then ours
        signal.signal(signal.SIGTERM, _other_handler)
    assert signal.getsignal(signal.SIGTERM) == guard._on_signal

    hook.on_pipeline_error(error=error, **args)  # the fake's UnboundLocalError is not raised
    run = client.get_run(run_id)
    assert run.info.status == status and run.data.tags[TAG_REASON].startswith(reason)
    assert mlflow.active_run() is None  # nothing left for MLflow's atexit to end FINISHED
    assert not (tmp_path / LOCK_PATH).exists()
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_forked_child_that_inherited_the_handler_dies_as_before(tmp_path, store):
    """A DataLoader worker (fork) hit by SIGTERM must not end the parent's run."""
    client, experiment = store
    guard, hook, args = _session(tmp_path, experiment)
    hook.before_pipeline_run(**args)
    run_id = mlflow.active_run().info.run_id
    try:
        child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
        child.start()
        os.kill(child.pid, signal.SIGTERM)
        child.join(30)
        assert child.exitcode == -signal.SIGTERM
        assert client.get_run(run_id).info.status == "RUNNING"
        assert read_lock(tmp_path / LOCK_PATH)["pid"] == os.getpid()
    finally:
        hook.after_pipeline_run(run_result={}, **args)
    assert not (tmp_path / LOCK_PATH).exists()


def test_an_output_that_cannot_be_written_stops_the_run_before_its_first_node(
    tmp_path, monkeypatch
):
    from kedro.io import DataCatalog
    from kedro_datasets.pandas import CSVDataset

    from podium import hooks

    locked = tmp_path / "locked"
    locked.mkdir()
    catalog = DataCatalog(
        {
            "fine": CSVDataset(filepath=str(tmp_path / "open" / "a.csv")),
            "blocked": CSVDataset(filepath=str(locked / "deep" / "er" / "b.csv")),
        }
    )
    hooks.check_writable(catalog, ["fine", "blocked", "params:x"])  # all writable here
    # root may write anywhere: deny the one folder through os.access, as a read-only
    # mount would for another user
    real_access = os.access
    monkeypatch.setattr(
        hooks.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode)
    )
    hooks.check_writable(catalog, ["fine"])
    with pytest.raises(
        hooks.OutputNotWritableError, match=r"blocked -> .*b\.csv.*locked is not writable.*Fix"
    ):
        hooks.check_writable(catalog, ["fine", "blocked"])
