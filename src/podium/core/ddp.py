"""The same training loop in N processes: DDP through torch.distributed's elastic launcher.

``launch(fn, *args, settings=...)`` runs ``fn(*args)`` once per process with the process
group already initialized (gloo on CPU, NCCL on GPU) and returns what rank 0 returned. It
uses ``torch.distributed.launcher.api.elastic_launch``, torchrun's own machinery, started
from Python, so a Kedro node can train on every GPU of a box (or of several boxes)::

    def train_one(config, seed):                  # top level: picklable for spawn
        rt = ddp.rank_runtime(resolve_runtime(config["runtime"]))
        seed_everything(training_seed(seed, rank=ddp.rank()))
        model = build_model(...)
        loader = seeded_loader(dataset, batch_size, shuffle=True, seed=seed, runtime=rt)
        history = fit(model, loader, ..., device=rt.device)   # wraps the model in DDP
        return {"state_dict": unwrap_model(model).state_dict(), "history": history}

    result = ddp.launch(train_one, config, seed, settings=resolve_distributed(...))

With one process in total (``nproc_per_node: 1, nnodes: 1``, the default) ``launch`` just
calls ``fn`` in the calling process: no process group, no new process, the same results as
calling ``fn`` directly. Otherwise rank 0's return value is written (``torch.save``, by rank
0 only) to a temporary folder and read back by the caller with ``weights_only=True``: return
tensors and plain python values (state dicts, metric histories), not arbitrary objects.

Inside the processes ``fit`` and ``seeded_loader`` notice the process group by themselves:
the loader gives each rank its share of one seeded global shuffle (or of one seeded weighted
draw), ``batch_size`` stays the *global* batch, and ``fit`` wraps the model in
``DistributedDataParallel``, averages the metrics over the ranks and saves checkpoints on
rank 0 only. So the same parameters train the same model on 1 or N processes.

The runtime block::

    runtime:
      distributed:
        nproc_per_node: 1      # processes on this machine (GPUs on a GPU box)
        nnodes: 1              # machines; > 1 needs rdzv_endpoint and the same rdzv_id on all
        rdzv_endpoint: null    # host:port of the rendezvous (c10d) for several machines
        rdzv_id: null          # the job's id, shared by its machines (default: a fresh uuid)
        backend: auto          # auto (nccl on CUDA, gloo otherwise) | gloo | nccl
        strategy: ddp          # ddp: each training in all processes | jobs: independent
                               # trainings (models x folds) side by side, one process each
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record
from torch.utils.data import Dataset, Sampler, Subset

from podium.core.config import ParameterError, check_choice, check_keys

R = TypeVar("R")

DISTRIBUTED_KEYS = ("nproc_per_node", "nnodes", "rdzv_endpoint", "rdzv_id", "backend", "strategy")
BACKENDS = ("auto", "gloo", "nccl")
#: ddp: each training in world-size DDP processes; jobs: independent trainings side by side,
#: one process (one GPU) each (``core.resume.run_jobs``).
STRATEGIES = ("ddp", "jobs")
RESULT_FILE = "rank0_result.pt"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class DistributedSettings:
    """The resolved ``runtime.distributed`` block (``backend`` is gloo or nccl here)."""

    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None
    backend: str = "gloo"
    strategy: str = "ddp"

    @property
    def world_size(self) -> int:
        """Processes of one training: 1 when independent trainings run side by side."""
        return 1 if self.strategy == "jobs" else self.nproc_per_node * self.nnodes

    @property
    def enabled(self) -> bool:
        """Whether one training runs in several processes (else in the caller's)."""
        return self.world_size > 1

    @property
    def parallel_jobs(self) -> int:
        """Independent trainings run at once (``strategy: jobs``), else 1."""
        return self.nproc_per_node if self.strategy == "jobs" else 1


def _positive_int(parameter: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(parameter, f"expected an integer >= 1, got {value!r}")
    return int(value)


def resolve_distributed(
    block: Mapping[str, Any] | None,
    *,
    device: torch.device | str = "cpu",
    parameter: str = "runtime.distributed",
) -> DistributedSettings:
    """The ``runtime.distributed`` block as :class:`DistributedSettings`.

    ``backend: auto`` is NCCL when ``device`` is CUDA and gloo otherwise; NCCL on a CPU
    device is refused. On CUDA each process uses ``cuda:LOCAL_RANK``, so ``nproc_per_node``
    may not exceed the visible GPUs.
    """
    block = dict(block or {})
    check_keys(parameter, block, DISTRIBUTED_KEYS)
    nproc = _positive_int(f"{parameter}.nproc_per_node", block.get("nproc_per_node", 1))
    nnodes = _positive_int(f"{parameter}.nnodes", block.get("nnodes", 1))
    endpoint = block.get("rdzv_endpoint")
    rdzv_id = block.get("rdzv_id")
    for key, value in (("rdzv_endpoint", endpoint), ("rdzv_id", rdzv_id)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ParameterError(f"{parameter}.{key}", f"expected a string or null, got {value!r}")
    if nnodes > 1 and endpoint is None:
        raise ParameterError(
            f"{parameter}.rdzv_endpoint",
            f"nnodes={nnodes} needs the host:port of the rendezvous every machine can reach",
        )
    if nnodes > 1 and rdzv_id is None:
        raise ParameterError(
            f"{parameter}.rdzv_id", f"nnodes={nnodes} needs one job id shared by every machine"
        )
    backend = check_choice(f"{parameter}.backend", block.get("backend", "auto"), BACKENDS)
    strategy = check_choice(f"{parameter}.strategy", block.get("strategy", "ddp"), STRATEGIES)
    if strategy == "jobs" and nnodes > 1:
        raise ParameterError(
            f"{parameter}.strategy",
            "jobs spreads trainings over this machine's processes only: use nnodes 1, or "
            "ddp to train each job across machines",
        )
    is_cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        backend = "nccl" if is_cuda else "gloo"
    if backend == "nccl" and not is_cuda:
        raise ParameterError(
            f"{parameter}.backend", f"nccl needs a CUDA device, got {device}: use gloo or auto"
        )
    if is_cuda and nproc > 1 and nproc > torch.cuda.device_count():
        raise ParameterError(
            f"{parameter}.nproc_per_node",
            f"{nproc} processes asked for but {torch.cuda.device_count()} GPU(s) are visible",
        )
    return DistributedSettings(nproc, nnodes, endpoint, rdzv_id, backend, strategy)


# ----------------------------------------------------------------------- in a process


def is_distributed() -> bool:
    """Whether this process is one of several in an initialized process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``; 0 without one)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0


def is_main() -> bool:
    """True on rank 0 (and without a process group): the one process that saves and logs."""
    return rank() == 0


def rank_runtime(runtime: Any) -> Any:
    """A :class:`~podium.core.device.Runtime` whose CUDA device is this rank's GPU.

    Each process of a GPU box trains on ``cuda:LOCAL_RANK``; CPU runtimes are returned as
    they are.
    """
    if runtime.device.type != "cuda" or not is_distributed():
        return runtime
    device = torch.device("cuda", local_rank())
    return replace(runtime, device=device, amp=replace(runtime.amp, device=device))


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order; ``[value]`` without a group."""
    if not is_distributed():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every rank."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait for every rank (a no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def mean_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Each metric averaged over the ranks (the same keys on every rank are required)."""
    gathered = all_gather_objects({k: float(v) for k, v in metrics.items()})
    keys = set(gathered[0])
    if any(set(g) != keys for g in gathered):
        raise RuntimeError(
            f"ranks returned different metrics: {[sorted(g) for g in gathered]}; val_fn must "
            "return the same keys on every rank"
        )
    return {k: float(np.mean([g[k] for g in gathered])) for k in gathered[0]}


# --------------------------------------------------------------------------- samplers


class DistributedWeightedSampler(Sampler[int]):
    """Each rank's share of one seeded weighted draw with replacement (class balancing).

    Every epoch all ranks draw the same ``num_samples`` indices in proportion to
    ``weights`` from a generator seeded with ``seed + epoch`` (``set_epoch``), and rank r
    keeps positions r, r + W, r + 2W, ...: the ranks' batches together are the global
    batches of a one-process run with ``num_replicas=1``. ``num_samples`` is cut down to a
    multiple of the number of ranks.
    """

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray | torch.Tensor,
        num_samples: int,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
    ) -> None:
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        self.num_replicas = world_size() if num_replicas is None else int(num_replicas)
        self.rank = globals()["rank"]() if rank is None else int(rank)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside [0, {self.num_replicas})")
        self.num_samples = int(num_samples) // self.num_replicas
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        total = self.num_samples * self.num_replicas
        draw = torch.multinomial(self.weights, total, replacement=True, generator=generator)
        return iter(draw[self.rank :: self.num_replicas].tolist())


def rank_block(dataset: Dataset) -> Dataset:
    """This rank's contiguous block of ``dataset`` (all of it in one process): each rank
    scores its block of a validation set, and gathering the blocks in rank order gives the
    whole set in its own order."""
    world = world_size()
    if world == 1:
        return dataset
    bounds = np.linspace(0, len(dataset), world + 1).astype(int)
    return Subset(dataset, range(bounds[rank()], bounds[rank() + 1]))


class ZipSampler(Sampler[tuple[int, ...]]):
    """Tuples of indices, one from each sampler (paired draws for a paired dataset, e.g.
    a source and a target image per sample), epoch-seeded through every sampler."""

    def __init__(self, *samplers: Sampler[int]) -> None:
        if not samplers:
            raise ValueError("ZipSampler needs at least one sampler")
        self.samplers = samplers

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            if callable(getattr(sampler, "set_epoch", None)):
                sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return min(len(s) for s in self.samplers)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        return zip(*self.samplers, strict=False)


def local_batch_size(
    batch_size: int, replicas: int | None = None, *, parameter: str = "batch_size"
) -> int:
    """One rank's share of the global ``batch_size`` (which must divide evenly); check it
    with ``parameter`` (the full parameter path) before launching the processes."""
    replicas = world_size() if replicas is None else replicas
    if batch_size % replicas:
        raise ParameterError(
            parameter,
            f"the global batch {batch_size} does not split evenly over {replicas} processes; "
            f"use a multiple of {replicas}",
        )
    return batch_size // replicas


# -------------------------------------------------------------------------- launching


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """The elastic agent installs its own SIGTERM/SIGINT/... handlers: restore ours after."""
    names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
    main = threading.current_thread() is threading.main_thread()
    saved = {n: signal.getsignal(getattr(signal, n)) for n in names if hasattr(signal, n)}
    env = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
    try:
        yield
    finally:
        if main:
            for name, handler in saved.items():
                if handler is not None:
                    signal.signal(getattr(signal, name), handler)
        if env is None:
            os.environ.pop("TORCHELASTIC_SIGNALS_TO_HANDLE", None)
        else:
            os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = env


def die_with_parent(parent_pid: int, *, poll_s: float = 1.0) -> None:
    """End this process as soon as its parent ``parent_pid`` is gone, however it died.

    torch's spawn asks the kernel for SIGINT at the parent's death, which a rank ignores
    when its launcher started with SIGINT ignored (a job started in the background) and
    ran the elastic agent off the main thread, where the agent installs no handlers (e.g.
    Kedro's ThreadRunner): a SIGKILLed ``kedro run`` then left its ranks training, and then
    waiting for a reader, for ever. On Linux the kernel sends SIGKILL instead (tied to the
    launching thread, which blocks in ``launch`` for the ranks' whole life); elsewhere a
    daemon thread polls the parent.
    """
    if not (sys.platform.startswith("linux") and _kill_me_with_my_parent()):
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid, poll_s), daemon=True).start()
    if os.getppid() != parent_pid:  # died before the request: no signal will come
        os._exit(1)


def _kill_me_with_my_parent() -> bool:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)``; whether the kernel took it."""
    unused = ctypes.c_ulong(0)  # prctl is variadic: unsigned longs at their full width
    signum = ctypes.c_ulong(signal.SIGKILL)
    return ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signum, unused, unused, unused) == 0


def _exit_when_orphaned(parent_pid: int, poll_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(1)


@record  # writes the failing rank's traceback where the agent reports it
def _worker(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    result_path: str,
    backend: str,
    threads: int,
    log_level: int = logging.INFO,
    parent_pid: int | None = None,
) -> None:
    """One DDP process: join the group, run ``fn``, rank 0 writes the result atomically."""
    from podium.core.checkpoints import atomic_path

    if parent_pid is not None:  # a killed run loses its work in flight, not its memory
        die_with_parent(parent_pid)
    _log_from_rank(int(os.environ.get("RANK", "0")), log_level)
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend=backend)
    try:
        result = fn(*args, **kwargs)
        if dist.get_rank() == 0:
            with atomic_path(result_path) as tmp:
                torch.save(result, tmp)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _log_from_rank(rank: int, level: int) -> None:
    """A spawned process has no logging set up: rank 0 logs at the caller's level (epoch
    lines, resumes), the other ranks warnings only, each line naming its rank."""
    logging.basicConfig(
        level=level if rank == 0 else max(level, logging.WARNING),
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )


def launch(
    fn: Callable[..., R],
    *args: Any,
    settings: DistributedSettings | None = None,
    result_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> R | None:
    """Run ``fn(*args, **kwargs)`` in ``settings.world_size`` processes; return rank 0's result.

    One process in total: ``fn`` runs here, directly. Several: the elastic agent starts
    ``nproc_per_node`` processes on this machine (``spawn``: ``fn`` must be a top-level
    function and the arguments picklable), each with ``torch.get_num_threads() //
    nproc_per_node`` threads, and rendezvouses with the other machines' agents. If any
    process fails, the others are stopped and a ``ChildFailedError`` names the rank and its
    traceback. Rank 0 writes its result to ``result_dir`` (a temporary folder by default;
    with several machines use a folder they share) and the caller reads it; a caller on a
    machine without rank 0 and without that folder gets None. The processes die with the
    caller, SIGKILL included (:func:`die_with_parent`).
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    settings = settings or DistributedSettings()
    if not settings.enabled:
        return fn(*args, **kwargs)
    threads = max(1, torch.get_num_threads() // settings.nproc_per_node)
    with contextlib.ExitStack() as stack:
        folder = (
            Path(result_dir)
            if result_dir is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="podium-ddp-")))
        )
        result_path = folder / RESULT_FILE
        result_path.unlink(missing_ok=True)
        config = LaunchConfig(
            min_nodes=settings.nnodes,
            max_nodes=settings.nnodes,
            nproc_per_node=settings.nproc_per_node,
            run_id=settings.rdzv_id or uuid.uuid4().hex,
            rdzv_backend="c10d",
            rdzv_endpoint=settings.rdzv_endpoint or "localhost:0",
            max_restarts=0,
            monitor_interval=0.1,
            start_method="spawn",
        )
        with _signal_handlers_kept():
            elastic_launch(config, _worker)(
                fn,
                tuple(args),
                dict(kwargs),
                str(result_path),
                settings.backend,
                threads,
                logging.getLogger().getEffectiveLevel(),
                os.getpid(),
            )
        if not result_path.exists():
            return None
        return torch.load(result_path, map_location="cpu", weights_only=True)


def global_mean(total: torch.Tensor, count: int) -> float:
    """``sum(total) / sum(count)`` over the ranks (e.g. the mean loss of an epoch)."""
    if not is_distributed():
        return float(total) / count if count else math.nan
    both = torch.stack(
        [
            total.detach().double(),
            torch.tensor(float(count), device=total.device, dtype=torch.float64),
        ]
    )
    dist.all_reduce(both, op=dist.ReduceOp.SUM)
    return float(both[0]) / float(both[1]) if float(both[1]) else math.nan
