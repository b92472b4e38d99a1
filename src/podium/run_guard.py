"""One run per project folder, and an MLflow status that says what happened.

``RunGuardHooks`` takes the lock ``data/.podium-run.lock`` before kedro-mlflow opens the
run (a second ``kedro run`` in the same folder is refused, naming the first one's pid and
MLflow run id) and ends each run FINISHED, FAILED (an exception) or KILLED (SIGINT,
SIGTERM, SIGHUP; a SIGKILLed run is marked at the next start or by ``kedro prune``), with
the reason in the ``podium.status_reason`` tag.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from mlflow.tracking import MlflowClient

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock file alone
    fcntl = None

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ run status and lock
#
# What kedro-mlflow (2.0.3) does on its own, checked against its hook:
# - an exception in a node: Kedro calls ``on_pipeline_error``, kedro-mlflow ends the run
#   FAILED. But its loop ``while mlflow.active_run(): ...`` leaves a flag unbound when no
#   run is on this thread's stack, so the hook itself raises UnboundLocalError, which
#   replaces the node's error in the traceback and leaves the run RUNNING; it records no
#   reason either.
# - Ctrl-C (KeyboardInterrupt) and ``sys.exit`` are BaseExceptions: Kedro calls neither
#   ``on_pipeline_error`` nor ``after_pipeline_run``, and MLflow's own atexit hook ends
#   the run FINISHED, with no metrics after the interrupted node.
# - SIGTERM kills the process with its default action: no atexit, the run stays RUNNING.
# - SIGKILL cannot be caught: the run stays RUNNING.
# - two ``kedro run`` in one folder load each other's newest versions.
#
# RunGuardHooks makes the status say what happened and keeps one run per folder.

#: The project's run lock, relative to the project root.
LOCK_PATH = Path("data") / ".podium-run.lock"
TAG_PID = "podium.pid"
TAG_PID_START = "podium.pid_start"
TAG_HOST = "podium.host"
TAG_REASON = "podium.status_reason"
#: Signals that end a run as KILLED; each is left alone where it was ignored (nohup,
#: a background job's SIGINT).
CAUGHT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
_REASON_CHARS = 4000
_LOCKS_HELD: set[str] = set()  # tokens of the locks this process holds now
_GUARD = threading.local()
_GUARDS: weakref.WeakSet[RunGuardHooks] = weakref.WeakSet()


_FORK = threading.local()


def _before_fork() -> None:
    # Block the run's signals across a fork while our handlers are installed: CPython drops
    # a signal that reaches a child before its handlers are reset (below), and would drop
    # the SIGTERM meant to stop a DataLoader worker that had just started.
    if hasattr(signal, "pthread_sigmask") and any(g._saved_handlers for g in list(_GUARDS)):
        _FORK.mask = signal.pthread_sigmask(signal.SIG_BLOCK, CAUGHT_SIGNALS)


def _unblock_after_fork() -> None:
    mask = getattr(_FORK, "mask", None)
    if mask is not None:
        _FORK.mask = None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _after_fork_in_child() -> None:
    """A forked child (DataLoader worker, ParallelRunner process) gets the signal
    dispositions of before the run back at once, then the signals that arrived meanwhile:
    the run and its lock are the parent's, and a Python-level handler cannot run in a
    child stuck on a lock it inherited."""
    _LOCKS_HELD.clear()
    for guard in list(_GUARDS):
        for signum, previous in guard._saved_handlers.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                if signal.getsignal(signum) == guard._on_signal:
                    signal.signal(signum, previous)
        guard._saved_handlers = {}
        guard._lock = None
    _unblock_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_unblock_after_fork,
        after_in_child=_after_fork_in_child,
    )


class RunLockError(click.ClickException):
    """The run lock cannot be taken. A ClickException, so ``kedro run`` prints the message
    (no traceback) and exits 1."""


class RunLockedError(RunLockError):
    """Another live ``kedro run`` holds this project folder's lock."""


def process_identity() -> dict[str, Any]:
    """This process as the lock and the run's tags name it: pid, host, and the pid's start
    time (Linux; tells a reused pid from the original process)."""
    stat = _proc_stat(os.getpid())
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "pid_start": stat[1] if stat else None,
    }


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a process from /proc, None without /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def process_alive(pid: Any, pid_start: Any = None) -> bool:
    """Whether process ``pid`` of this host still runs (a zombie or a reused pid, one that
    started at another time than ``pid_start``, does not)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        state, started = stat
        if state in ("Z", "X"):
            return False
        if pid_start not in (None, "", "None") and str(pid_start) != started:
            return False
    return True


@contextlib.contextmanager
def _guarded(folder: Path) -> Iterator[None]:
    """An exclusive flock on ``folder`` while the lock file is read and replaced, so two
    runs starting at once cannot both take it. Re-entrant (a signal handler may release
    while the main thread updates); a no-op where flock is unavailable."""
    if getattr(_GUARD, "held", False) or fcntl is None:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        _GUARD.held = True
        try:
            yield
        finally:
            _GUARD.held = False
    finally:
        os.close(fd)  # releases the flock


def _write_atomic(path: Path, info: Mapping[str, Any]) -> None:
    """Write, fsync, rename: a reader sees the old lock or the whole new one."""
    fd, name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(dict(info), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's content; None if there is none; ``{"unreadable": ...}`` if garbled."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        return {"unreadable": str(error)}
    try:
        info = json.loads(text)
    except ValueError as error:
        return {"unreadable": f"not JSON ({error})"}
    return info if isinstance(info, dict) else {"unreadable": "not a JSON object"}


def lock_holder_alive(info: Mapping[str, Any]) -> bool:
    """Whether the run that wrote ``info`` may still be running. A lock from another host
    cannot be checked from here and counts as alive."""
    if "unreadable" in info:
        return False
    if info.get("host") != socket.gethostname():
        return True
    if info.get("pid") == os.getpid():
        return info.get("token") in _LOCKS_HELD  # a session of this very process
    return process_alive(info.get("pid"), info.get("pid_start"))


def describe_lock(info: Mapping[str, Any]) -> str:
    return (
        f"pid {info.get('pid')} on {info.get('host')}, pipeline '{info.get('pipeline')}', "
        f"MLflow run {info.get('mlflow_run_id') or '(not started yet)'}, "
        f"started {info.get('started')}"
    )


def refusal_message(path: Path, info: Mapping[str, Any]) -> str:
    here = info.get("host") == socket.gethostname()
    gone = (
        f"If that process is gone, delete {path}."
        if here
        else f"It runs on another host, which podium cannot check from here: if it is no "
        f"longer running, delete {path}."
    )
    return (
        f"Another `kedro run` is using this project folder: {describe_lock(info)} "
        f"(lock {path}). Two runs in one folder load and overwrite each other's outputs, so "
        f"this run was not started. Fix: wait for that run to finish (or stop it), or start "
        f"this one from another copy of the project, with its own data/ and mlflow.db "
        f"(another --env in this folder shares its data/ and is refused too). {gone}"
    )


def check_run_lock(project_path: Path) -> None:
    """Raise RunLockedError if a live run holds ``project_path``'s lock (for commands that
    start runs themselves, such as ``kedro ablate``, before they start any)."""
    path = Path(project_path) / LOCK_PATH
    info = read_lock(path)
    if info is not None and lock_holder_alive(info):
        raise RunLockedError(refusal_message(path, info))


class RunLock:
    """``data/.podium-run.lock``: the one live ``kedro run`` of a project folder (pid,
    host, pipeline, MLflow run id, start time). Written atomically; a lock whose process
    is dead is taken over with a warning."""

    def __init__(self, path: Path, info: dict[str, Any]) -> None:
        self.path = path
        self.info = info

    @classmethod
    def acquire(cls, path: Path, **fields: Any) -> RunLock:
        path = Path(path)
        try:
            return cls._acquire(path, **fields)
        except OSError as error:
            raise RunLockError(
                f"Cannot write the run lock {path} ({type(error).__name__}: {error}). A run "
                f"writes its outputs under {path.parent}. Fix: make that folder writable, or "
                f"run from a copy of the project you can write to."
            ) from error

    @classmethod
    def _acquire(cls, path: Path, **fields: Any) -> RunLock:
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            **process_identity(),
            "token": uuid.uuid4().hex,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "mlflow_run_id": None,
            **fields,
        }
        with _guarded(path.parent):
            held = read_lock(path)
            if held is not None and lock_holder_alive(held):
                raise RunLockedError(refusal_message(path, held))
            if held is not None:
                what = held.get("unreadable") or describe_lock(held)
                log.warning(
                    "Taking over the run lock %s: the run that left it is no longer running (%s)",
                    path,
                    what,
                )
            _write_atomic(path, info)
        _LOCKS_HELD.add(info["token"])
        return cls(path, info)

    def _ours(self, held: Mapping[str, Any] | None) -> bool:
        return bool(held) and held.get("token") == self.info["token"]

    def update(self, **fields: Any) -> None:
        self.info.update(fields)
        with _guarded(self.path.parent):
            if self._ours(read_lock(self.path)):
                _write_atomic(self.path, self.info)

    def release(self) -> None:
        _LOCKS_HELD.discard(self.info["token"])
        with _guarded(self.path.parent):
            if self._ours(read_lock(self.path)):
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()


def release_stale_lock(project_path: Path, dry_run: bool = False) -> dict[str, Any] | None:
    """Delete the project's lock if the run that left it is dead (``kedro prune``); return
    what it held, None if there was none or its run is alive."""
    path = Path(project_path) / LOCK_PATH
    with _guarded(path.parent) if path.parent.is_dir() else contextlib.nullcontext():
        info = read_lock(path)
        if info is None or lock_holder_alive(info):
            return None
        if not dry_run:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return info


def _search_all(client: MlflowClient, experiment_ids: list[str], query: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, query, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def dead_runs(
    client: MlflowClient, experiment_ids: list[str], exclude: tuple[str, ...] = ()
) -> list[Any]:
    """RUNNING runs of these experiments started by a process of this host that is dead
    (SIGKILL, out-of-memory kill, power loss): tagged with podium.pid / podium.host."""
    host = socket.gethostname().replace("'", "")
    query = f"attributes.status = 'RUNNING' and tags.`{TAG_HOST}` = '{host}'"
    return [
        run
        for run in _search_all(client, experiment_ids, query)
        if run.info.run_id not in exclude
        and TAG_PID in run.data.tags
        and not process_alive(run.data.tags[TAG_PID], run.data.tags.get(TAG_PID_START))
    ]


def mark_dead_runs(
    client: MlflowClient,
    experiment_ids: list[str],
    *,
    exclude: tuple[str, ...] = (),
    by: str = "the next run",
    dry_run: bool = False,
) -> list[Any]:
    """Mark :func:`dead_runs` KILLED with a ``podium.status_reason`` tag; return them."""
    found = dead_runs(client, experiment_ids, exclude)
    if dry_run:
        return found
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for run in found:
        tags = run.data.tags
        client.set_tag(
            run.info.run_id,
            TAG_REASON,
            f"process {tags[TAG_PID]} on {tags.get(TAG_HOST)} ended without closing its run "
            f"(SIGKILL, out-of-memory kill or power loss); marked KILLED at {now} by {by}",
        )
        client.set_terminated(run.info.run_id, "KILLED")
        log.warning(
            "MLflow run %s (%s) was left RUNNING by process %s, which is gone: marked KILLED",
            run.info.run_id,
            run.info.run_name,
            tags[TAG_PID],
        )
    return found


def signal_of(error: BaseException | None) -> int | None:
    """The signal behind an error, if it is one: KeyboardInterrupt (SIGINT) or torch
    elastic's SignalException (the DDP launcher's agent turns SIGTERM / SIGINT into it
    while it runs), also as the cause or context of another error."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, KeyboardInterrupt):
            return signal.SIGINT
        sigval = getattr(error, "sigval", None)
        if type(error).__name__ == "SignalException" and sigval is not None:
            return int(sigval)
        error = error.__cause__ or error.__context__
    return None


def _signal_name(signum: int) -> str:
    name = signal.Signals(signum).name
    return f"{name} (Ctrl-C)" if signum == signal.SIGINT else name


class RunGuardHooks:
    """Every ``kedro run``: one per project folder (``data/.podium-run.lock``), tagged
    with its process (``podium.pid``, ``podium.host``, ``podium.pid_start``), and an
    MLflow status that says what happened: FINISHED, FAILED on an exception, KILLED on
    SIGINT / SIGTERM / SIGHUP (its signal handler ends the run, releases the lock, then
    lets the signal stop the process: KeyboardInterrupt for SIGINT, the default action,
    death by the signal, for the others). A run left RUNNING by a dead process of this
    host (SIGKILL) is marked KILLED at the start of the next run (and by ``kedro prune``);
    ``podium.status_reason`` says why.

    The handlers are installed for the run only (restored after it, also on failure); the
    DDP launcher's ``_signal_handlers_kept`` puts them back after the elastic agent's, whose
    SignalException ends the run KILLED too; forked children (DataLoader workers) get the
    dispositions of before the run back at fork (``os.register_at_fork``).

    Hook wrappers, so the lock is taken before kedro-mlflow opens the MLflow run (a refused
    run opens none) and released after it closed it, whatever the other hooks raise."""

    def __init__(self) -> None:
        self._project_path = Path.cwd()
        self._lock: RunLock | None = None
        self._run_id: str | None = None
        self._owned = False  # this session opened the MLflow run (else: the caller did)
        self._tracking_uri: str | None = None
        self._node: str | None = None
        self._pid = os.getpid()
        self._saved_handlers: dict[int, Any] = {}
        self._in_handler = False
        self._signalled: int | None = None
        self._before: Any = None  # the MLflow run active before the session, if any
        self._pending: tuple[str, str] | None = None  # status the handler could not write
        self._atexit_registered = False
        _GUARDS.add(self)

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project_path = Path(context.project_path)

    @hook_impl(wrapper=True)
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog
    ) -> Iterator[None]:
        names = run_params.get("pipeline_names") or ["__default__"]
        self._reset()
        self._lock = RunLock.acquire(
            self._project_path / LOCK_PATH,
            pipeline="+".join(names),
            env=run_params.get("env"),
            project=str(self._project_path),
            command=" ".join(sys.argv),
        )
        self._install_handlers()
        if not self._atexit_registered:
            atexit.register(self._at_exit)
            self._atexit_registered = True
        try:
            result = yield  # kedro-mlflow opens the MLflow run, the other hooks tag it
        except BaseException as error:
            self._adopt_active_run()
            signum = self._signalled or signal_of(error)
            if signum is not None:
                self._settle("KILLED", f"{_signal_name(signum)} received before the first node")
            else:
                self._settle("FAILED", f"a before_pipeline_run hook failed: {_describe(error)}")
            self._finish()
            raise
        active = self._adopt_active_run()
        if active is not None:
            identity = process_identity()
            tags = {TAG_PID: identity["pid"], TAG_HOST: identity["host"]}
            if identity["pid_start"]:
                tags[TAG_PID_START] = identity["pid_start"]
            try:
                mlflow.set_tags(tags)
                mark_dead_runs(
                    MlflowClient(self._tracking_uri),
                    [active.info.experiment_id],
                    exclude=(self._run_id,),
                    by=f"the run {self._run_id} (pid {identity['pid']})",
                )
            except Exception as error:  # noqa: BLE001 - housekeeping must not fail a run
                log.warning("Could not check for runs left RUNNING by dead processes: %s", error)
            self._lock.update(mlflow_run_id=self._run_id)
        return result

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._node = node.name

    @hook_impl
    def on_node_error(self, error: Exception, node: Any) -> None:
        self._node = node.name

    @hook_impl(wrapper=True)
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Pipeline, catalog
    ) -> Iterator[None]:
        signum = signal_of(error)
        where = f" in node {self._node}" if self._node else ""
        what = type(error).__name__
        result = None
        try:
            result = yield  # kedro-mlflow ends the run FAILED
        except Exception as hook_error:  # noqa: BLE001 - keep the node's error the one raised
            log.warning(
                "An on_pipeline_error hook failed (%s); the MLflow run is ended here instead",
                _describe(hook_error),
            )
        if signum is not None:  # the DDP launcher's agent turned the signal into an error
            self._settle("KILLED", f"{_signal_name(signum)} received{where}", override=True)
        else:
            self._settle("FAILED", f"{what}{where}: {str(error).strip() or what}")
        self._finish()
        return result

    @hook_impl(wrapper=True)
    def after_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog
    ) -> Iterator[None]:
        try:
            return (yield)  # kedro-mlflow logs what it logs and ends the run FINISHED
        except BaseException as error:
            self._settle("FAILED", f"an after_pipeline_run hook failed: {_describe(error)}")
            raise
        finally:
            self._finish()

    # ---------------------------------------------------------------- the run's state

    def _reset(self) -> None:
        self._run_id, self._owned, self._tracking_uri = None, False, None
        self._node, self._pending, self._signalled = None, None, None
        self._pid = os.getpid()
        active = mlflow.active_run()
        self._before = active.info.run_id if active is not None else None

    def _adopt_active_run(self) -> Any:
        """Take the active MLflow run as this session's (once kedro-mlflow opened it)."""
        active = mlflow.active_run()
        if active is None or self._run_id is not None:
            return active
        self._run_id = active.info.run_id
        self._tracking_uri = mlflow.get_tracking_uri()
        # A run opened by the caller (a notebook, an orchestrator) is the caller's to end,
        # as kedro-mlflow leaves it open: only its reason is tagged.
        self._owned = self._before != self._run_id
        return active

    def _settle(self, status: str, reason: str, *, override: bool = False) -> None:
        """End this session's MLflow run as ``status`` unless it already ended (with
        ``override``: unless it already ended as ``status``), tag ``reason``, and take it
        off MLflow's stack (so MLflow's atexit hook cannot end it FINISHED)."""
        if self._run_id is None:
            return
        client = MlflowClient(self._tracking_uri)
        current = client.get_run(self._run_id).info.status
        change = current == "RUNNING" or (override and current != status)
        if change or current == status:
            client.set_tag(self._run_id, TAG_REASON, reason[:_REASON_CHARS])
        if not self._owned:
            return
        # kedro-mlflow re-enters the run before every node (nested: each start_run pushes it
        # again): pop every entry of it, and any nested run above it, not the caller's.
        seen = False
        while (active := mlflow.active_run()) is not None:
            ending = active.info.run_id
            if ending == self._before or (seen and ending != self._run_id):
                break
            mlflow.end_run(status if change else current)
            seen = seen or ending == self._run_id
        if change:
            client.set_terminated(self._run_id, status)

    def _finish(self) -> None:
        """Release the lock and put the signal handlers back (end of the run)."""
        self._restore_handlers()
        if self._lock is not None and os.getpid() == self._pid:
            with contextlib.suppress(OSError):
                self._lock.release()
        self._lock = None

    # ---------------------------------------------------------------- signals

    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; a session in a thread gets none
        for signum in CAUGHT_SIGNALS:
            previous = signal.getsignal(signum)
            if previous in (signal.SIG_IGN, None):
                continue
            try:
                signal.signal(signum, self._on_signal)
            except (ValueError, OSError):
                continue
            self._saved_handlers[signum] = previous

    def _restore_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in list(self._saved_handlers.items()):
            # a handler installed over ours since is left alone
            if signal.getsignal(signum) == self._on_signal:
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(signum, previous)
            del self._saved_handlers[signum]

    def _on_signal(self, signum: int, frame: Any) -> None:
        previous = self._saved_handlers.get(signum, signal.SIG_DFL)
        if os.getpid() != self._pid:
            # a child forked without os.register_at_fork inherited the handler: as before
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, previous)
            if callable(previous):
                previous(signum, frame)
                return
            signal.raise_signal(signum)
            return
        self._signalled = self._signalled or signum
        if not self._in_handler:
            self._in_handler = True
            self._adopt_active_run()  # before the first node: kedro-mlflow's run, if open
            reason = f"{_signal_name(signum)} received" + (
                f" in node {self._node}" if self._node else ""
            )
            try:
                self._settle("KILLED", reason)
            except Exception as error:  # noqa: BLE001 - retried at exit, the signal goes on
                self._pending = ("KILLED", reason)
                log.warning("Could not end the MLflow run now (%s); retrying at exit", error)
            else:
                if self._run_id:
                    log.warning("%s: MLflow run %s ended as KILLED", reason, self._run_id)
            self._finish()
            self._in_handler = False
        _proceed(signum, frame, previous)

    def _at_exit(self) -> None:
        """The process exits with the run still open (a signal arrived before the handler
        was installed, ``sys.exit`` in a node): end it, release the lock."""
        if os.getpid() != self._pid:
            return
        if self._signalled:
            default = ("KILLED", f"{_signal_name(self._signalled)} received")
        else:
            default = (
                "FAILED",
                "the process exited before the run ended (no exception reached Kedro's hooks)",
            )
        status, reason = self._pending or default
        if self._lock is not None or self._pending:
            with contextlib.suppress(Exception):
                self._settle(status, reason)
        with contextlib.suppress(Exception):
            self._finish()


def _proceed(signum: int, frame: Any, previous: Any) -> None:
    """Let the signal do what it did before the run: the previous handler (Python's SIGINT
    handler raises KeyboardInterrupt), else the default action: SIGTERM and SIGHUP kill the
    process at once, as without podium (exit status 143 / 129 in a shell, -15 / -1 for a
    parent's ``Popen``). Not a SystemExit: unwinding a node can hang (a Dask client closed
    under a suspended generator), and who sends SIGTERM wants the process gone."""
    if callable(previous):
        previous(signum, frame)
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    raise SystemExit(128 + signum)  # a signal whose default action does not terminate


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
