"""Where a training keeps its checkpoints, and how a killed run continues from them.

Every pipeline resumes the same way::

    <root>/<settings digest>/settings.json          what shaped these trainings
    <root>/<settings digest>/<job>/checkpoints/     fit's checkpoint files, every epoch
    <root>/<settings digest>/<job>/result.pt        the job's result once it finished

``checkpoint_folder`` names the folder by a digest of everything that shapes the trainings
(settings, seed, data, device, precision, processes), so another configuration never
resumes these checkpoints. ``launch_resumable`` runs one job (``ddp.launch``: in this
process or in ``runtime.distributed``'s processes), keeps its result and drops the
checkpoints it no longer needs. ``resume_from``: ``null`` starts afresh (an earlier run's
folder is emptied first), ``latest`` continues a checkpoint or takes a finished result.
No kedro or mlflow imports.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from podium.core import ddp
from podium.core.checkpoints import atomic_path
from podium.core.config import ParameterError
from podium.core.device import Runtime

log = logging.getLogger(__name__)

RESUME_FROM = (None, "latest")
#: Raised when the checkpoint layout changes: older folders then no longer match.
CHECKPOINT_FORMAT = 2
DIGEST_CHARS = 16
SETTINGS_FILE = "settings.json"
RESULT_FILE = "result.pt"
CHECKPOINTS = "checkpoints"


def check_resume_from(parameter: str, value: Any, checkpoints: Any = True) -> bool:
    """True for ``latest``, False for ``null``; ``latest`` needs a checkpoint folder."""
    if value not in RESUME_FROM:
        raise ParameterError(parameter, f"expected null (afresh) or latest, got {value!r}")
    if value == "latest" and checkpoints is None:
        raise ParameterError(parameter, "latest needs a checkpoint folder to resume from")
    return value == "latest"


def runtime_shaping(runtime: Runtime, world_size: int) -> dict[str, Any]:
    """The runtime choices that change trained weights, for a checkpoint folder's digest."""
    return {
        "device": runtime.device.type,
        "precision": runtime.amp.name,
        "channels_last": runtime.channels_last,
        "num_workers": runtime.num_workers,  # loader workers draw their own augmentations
        "processes": int(world_size),
    }


def data_digest(*frames: Any, extra: Any = None) -> str:
    """A digest of index tables (pandas, hashed row by row) and any JSON-able ``extra``."""
    import pandas as pd

    digest = hashlib.sha256()
    for frame in frames:
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def short_digest(value: Any) -> str:
    """A short digest of a JSON-able value (e.g. one model's spec, to name its folder)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def checkpoint_folder(root: str | Path, shaping: Mapping[str, Any], resume: bool) -> Path:
    """``root/<digest of shaping>``, with ``settings.json`` saying what it holds.

    ``resume`` False empties an earlier run's folder first (a fresh run never continues
    a stale epoch); True keeps what it holds.
    """
    settings = {"format": CHECKPOINT_FORMAT, **shaping}
    text = json.dumps(settings, sort_keys=True, default=str, indent=1)
    folder = Path(root) / short_digest(settings)
    if not resume and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / SETTINGS_FILE) as tmp:
        Path(tmp).write_text(text)
    return folder


def launch_resumable(
    fn: Callable[[Any, str | None], Any],
    job: Any,
    folder: str | Path | None,
    *,
    settings: ddp.DistributedSettings | None = None,
) -> Any:
    """``fn(job, checkpoints)`` through ``ddp.launch``; its result kept in ``folder``.

    ``fn`` gets the folder its ``fit`` calls checkpoint in (``folder/checkpoints``, or None
    without a folder) and returns tensors and plain values. A result already in ``folder``
    is returned without training (the job finished in an earlier run); after a job
    finishes its result is written atomically and its checkpoints deleted (the result holds
    the weights). Several machines read rank 0's result from ``folder``, which they must
    share.
    """
    settings = settings or ddp.DistributedSettings()
    if folder is None:
        return ddp.launch(fn, job, None, settings=settings)
    folder = Path(folder)
    done = folder / RESULT_FILE
    if done.exists():
        log.info("%s: taken from the finished run", folder)
        return torch.load(done, map_location="cpu", weights_only=True)
    checkpoints = folder / CHECKPOINTS
    checkpoints.mkdir(parents=True, exist_ok=True)
    if any(checkpoints.iterdir()):
        log.info("%s: resuming from its checkpoints", folder)
    result = ddp.launch(
        fn,
        job,
        str(checkpoints),
        settings=settings,
        result_dir=folder if settings.enabled else None,
    )
    if result is None:
        raise RuntimeError(
            f"{folder}: rank 0's result is not readable on this machine; give every machine "
            "the same checkpoint folder (a shared file system)"
        )
    with atomic_path(done) as tmp:
        torch.save(result, tmp)
    if torch.cuda.is_initialized():  # the next job starts with the memory this one freed
        torch.cuda.empty_cache()
    shutil.rmtree(checkpoints, ignore_errors=True)
    (folder / ddp.RESULT_FILE).unlink(missing_ok=True)
    return result


def run_jobs(
    fn: Callable[[Any, str | None], Any],
    jobs: Sequence[tuple[Any, str | Path | None]],
    *,
    settings: ddp.DistributedSettings | None = None,
) -> list[Any]:
    """Every ``(job, folder)`` through :func:`launch_resumable`; the results in job order.

    ``strategy: ddp`` (the default) trains the jobs one after the other, each in the
    settings' DDP processes. ``strategy: jobs`` runs ``nproc_per_node`` of them at once on
    a Dask LocalCluster of as many single-threaded worker processes, each worker pinned to
    one GPU (``CUDA_VISIBLE_DEVICES``; on CPU the cores are shared out): the shape of a
    recipe of many small trainings, e.g. DFDC's models x folds, where one GPU per training
    beats splitting every batch over all of them. A failed job fails the run once the
    jobs already under way have saved their checkpoints, so a rerun with ``resume_from:
    latest`` continues.
    """
    settings = settings or ddp.DistributedSettings()
    if settings.parallel_jobs == 1 or len(jobs) <= 1:
        return [launch_resumable(fn, job, folder, settings=settings) for job, folder in jobs]
    from podium.core.distributed import dask_client

    workers = min(settings.parallel_jobs, len(jobs))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = (
        [g for g in visible.split(",") if g.strip()]
        if visible is not None
        else [str(i) for i in range(torch.cuda.device_count())]
    )
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Dask's worker processes are daemons by default, and daemons may not start the
    # DataLoader's worker processes.
    with dask_client(n_workers=workers, threads_per_worker=1, daemon=False) as client:
        futures = [
            client.submit(_job_on_worker, fn, job, folder, gpus, threads, pure=False)
            for job, folder in jobs
        ]
        return client.gather(futures)


def _job_on_worker(
    fn: Callable[[Any, str | None], Any],
    job: Any,
    folder: str | Path | None,
    gpus: Sequence[str],
    threads: int,
) -> Any:
    """One job in a Dask worker: the worker's GPU (by its name, 0..n-1), its threads."""
    from distributed import get_worker

    if gpus:  # before this process first touches CUDA: cuda:0 is then its own GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[int(get_worker().name) % len(gpus)]
    torch.set_num_threads(threads)
    return launch_resumable(fn, job, folder)
