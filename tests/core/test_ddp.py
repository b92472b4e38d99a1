"""DDP in real processes (gloo on CPU): N ranks train what one process trains, and resume."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.utils.data import TensorDataset

from podium.core import ddp
from podium.core.config import ParameterError
from podium.core.device import resolve_runtime
from podium.core.optim import build_optimizer, build_scheduler
from podium.core.seeding import seed_everything
from podium.core.training import fit, seeded_loader

ROOT = Path(__file__).resolve().parents[2]
N_SAMPLES, BATCH, EPOCHS, RESUME_AFTER = 48, 12, 4, 2
TWO_RANKS = ddp.DistributedSettings(nproc_per_node=2, backend="gloo")


def _dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(N_SAMPLES, 6, generator=generator)
    y = x @ torch.randn(6, 1, generator=generator) + 0.1 * torch.randn(
        N_SAMPLES, 1, generator=generator
    )
    return TensorDataset(x, y)


def _weights() -> np.ndarray:
    """Class-balancing-like weights: the first quarter of the rows drawn three times as often."""
    return np.where(np.arange(N_SAMPLES) < N_SAMPLES // 4, 3.0, 1.0)


def _train(seed: int, epochs: int, checkpoint: str | None, weighted: bool) -> dict:
    """One training of a small MLP (no batch statistics): timm AdamW, per-step cosine."""
    seed_everything(seed, deterministic=True)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    loader = seeded_loader(
        _dataset(),
        BATCH,
        shuffle=True,
        seed=seed,
        runtime=resolve_runtime({"device": "cpu"}),
        sample_weights=_weights() if weighted else None,
        distributed=True,  # one process: what the ranks draw together
    )
    optimizer = build_optimizer(model, {"name": "adamw", "lr": 0.02, "weight_decay": 0.01})
    schedule = build_scheduler(
        optimizer,
        {"name": "cosine", "warmup_epochs": 1, "warmup_lr": 0.002, "per": "step"},
        epochs=EPOCHS,
        steps_per_epoch=len(loader),
    )
    history = fit(
        model,
        loader,
        loss_fn=F.mse_loss,
        optimizer=optimizer,
        scheduler=schedule,
        epochs=epochs,
        device="cpu",
        checkpoint_path=checkpoint,
        progress=False,
    )
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "history": history}


def ranked_training(seed: int, folder: str) -> dict:
    """Run in every rank by ddp.launch: a full run, an interrupted-and-resumed one, a weighted one."""
    torch.set_num_threads(1)
    assert dist.is_initialized() and dist.get_backend() == "gloo"
    full = _train(seed, EPOCHS, None, weighted=False)
    checkpoint = str(Path(folder) / "last.pt")
    _train(seed, RESUME_AFTER, checkpoint, weighted=False)  # "killed" after RESUME_AFTER epochs
    saved = torch.load(checkpoint, weights_only=True)
    seed_everything(seed + 1000 + ddp.rank())  # a fresh process: another random state
    resumed = _train(seed + 1, EPOCHS, checkpoint, weighted=False)  # seed ignored: resumed
    weighted = _train(seed, EPOCHS, None, weighted=True)
    return {
        "world_size": ddp.world_size(),
        "rank": ddp.rank(),
        "saved_epoch": int(saved["epoch"]),
        "saved_ranks": len(saved["ranks"]),
        "full": full,
        "resumed": resumed,
        "weighted": weighted,
    }


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 1e-5) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=rtol, atol=1e-7) for k in a)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("ddp")
    return ddp.launch(ranked_training, 0, str(folder), settings=TWO_RANKS)


def test_launch_returns_rank_0_result(two_ranks):
    assert two_ranks["world_size"] == 2 and two_ranks["rank"] == 0
    assert not dist.is_initialized()  # the caller never joined a process group


def test_two_processes_train_what_one_process_trains(two_ranks):
    torch.set_num_threads(1)
    single = _train(0, EPOCHS, None, weighted=False)
    ranked = two_ranks["full"]
    assert _close(ranked["state"], single["state"])
    # the training loss is the mean over both ranks' samples, i.e. the one-process loss
    for a, b in zip(ranked["history"], single["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["lr"] == pytest.approx(b["lr"])
    # ...and it really trained (not two copies of an untouched model)
    assert single["history"][-1]["train_loss"] < single["history"][0]["train_loss"]


def test_weighted_sampling_shares_one_global_draw(two_ranks):
    torch.set_num_threads(1)
    single = _train(0, EPOCHS, None, weighted=True)
    assert _close(two_ranks["weighted"]["state"], single["state"])
    uniform = _train(0, EPOCHS, None, weighted=False)
    assert not _close(single["state"], uniform["state"])  # the weights changed the draws


def test_resume_under_ddp_is_bit_for_bit(two_ranks):
    assert two_ranks["saved_epoch"] == RESUME_AFTER
    assert two_ranks["saved_ranks"] == 2  # rank 0 saved both ranks' random states
    full, resumed = two_ranks["full"], two_ranks["resumed"]
    assert full["state"].keys() == resumed["state"].keys()
    assert all(torch.equal(full["state"][k], resumed["state"][k]) for k in full["state"])
    assert resumed["history"] == full["history"]


def failing_rank() -> None:
    if ddp.rank() == 1:
        raise RuntimeError("rank 1 broke")
    dist.barrier()


def test_a_failing_rank_fails_the_launch_and_leaves_the_caller_as_it_was():
    handler = signal.getsignal(signal.SIGTERM)
    env = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
    with pytest.raises(ChildFailedError, match="failing_rank|rank 1 broke"):
        ddp.launch(failing_rank, settings=TWO_RANKS)
    assert signal.getsignal(signal.SIGTERM) is handler
    assert os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE") == env


def _in_process(x: int) -> tuple[int, bool]:
    return x + 1, dist.is_initialized()


def test_one_process_runs_in_the_caller_without_a_process_group():
    settings = ddp.resolve_distributed({"nproc_per_node": 1}, device="cpu")
    assert not settings.enabled and settings.backend == "gloo"
    assert ddp.launch(_in_process, 41, settings=settings) == (42, False)
    assert ddp.launch(_in_process, 1) == (2, False)  # no settings: one process


def test_distributed_weighted_sampler_splits_one_draw():
    weights = np.arange(1.0, 11.0)
    one = ddp.DistributedWeightedSampler(weights, 10, num_replicas=1, rank=0, seed=3)
    ranks = [
        ddp.DistributedWeightedSampler(weights, 10, num_replicas=2, rank=r, seed=3) for r in (0, 1)
    ]
    for epoch in (1, 2):
        for sampler in (one, *ranks):
            sampler.set_epoch(epoch)
        merged = [i for pair in zip(*(list(s) for s in ranks), strict=True) for i in pair]
        assert merged == list(one) and len(ranks[0]) == 5
    first = list(one)
    one.set_epoch(3)
    assert list(one) != first  # a new draw each epoch


def test_distributed_settings_are_validated():
    with pytest.raises(ParameterError, match=r"runtime\.distributed.*nproc_per_nod"):
        ddp.resolve_distributed({"nproc_per_nod": 2})
    with pytest.raises(ParameterError, match=r"runtime\.distributed\.nproc_per_node"):
        ddp.resolve_distributed({"nproc_per_node": 0})
    with pytest.raises(ParameterError, match=r"runtime\.distributed\.rdzv_endpoint"):
        ddp.resolve_distributed({"nnodes": 2, "rdzv_id": "job"})
    with pytest.raises(ParameterError, match=r"runtime\.distributed\.backend.*gloo"):
        ddp.resolve_distributed({"backend": "nccl"}, device="cpu")
    with pytest.raises(ParameterError, match=r"runtime\.distributed\.backend.*auto, gloo, nccl"):
        ddp.resolve_distributed({"backend": "mpi"})
    with pytest.raises(ParameterError, match="batch_size"):
        ddp.local_batch_size(10, 4)
    settings = ddp.resolve_distributed(
        {"nproc_per_node": 2, "nnodes": 2, "rdzv_endpoint": "10.0.0.1:29400", "rdzv_id": "job"}
    )
    assert settings.world_size == 4 and settings.enabled


# ------------------------------------------------------------------ a killed launcher


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a job started in the background


def survivors_of_sigkill(
    code: str, folder: Path, ready: int, *, wait: float = 180, grace: float = 15
) -> list[str]:
    """Run ``python -c code`` with SIGINT ignored; once ``ready`` files named ``ready-*``
    are in ``folder``, SIGKILL it. Returns the command lines of its descendants still alive
    ``grace`` seconds later (every one of them is killed afterwards)."""
    log = folder / "launcher.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_ignore_sigint,
        )
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + wait
        while len(list(folder.glob("ready-*"))) < ready:
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(children, timeout=grace)
        left = []
        for child in alive:
            with contextlib.suppress(psutil.Error):
                left.append(" ".join(child.cmdline()))
        return left
    finally:
        proc.kill()
        proc.wait(timeout=30)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()


def _report_and_wait(folder: str) -> None:
    """A rank that says it is running, then waits for ever: only its parent's death ends it."""
    Path(folder, f"ready-{ddp.rank()}").touch()
    time.sleep(3600)


def launch_off_the_main_thread(folder: str) -> None:
    """``ddp.launch`` as a thread runner calls it: where the elastic agent installs no
    signal handlers (with SIGINT ignored, torch's own death signal then does nothing)."""
    thread = threading.Thread(
        target=ddp.launch, args=(_report_and_wait, folder), kwargs={"settings": TWO_RANKS}
    )
    thread.start()
    thread.join()


def test_the_ranks_die_with_a_sigkilled_launcher(tmp_path):
    code = (
        "from tests.core.test_ddp import launch_off_the_main_thread; "
        f"launch_off_the_main_thread({str(tmp_path)!r})"
    )
    assert survivors_of_sigkill(code, tmp_path, ready=2) == []


def orphan_watch(folder: str) -> None:
    """A child that polls its parent, the fallback where prctl is missing."""
    Path(folder, "ready-0").touch()
    ddp._exit_when_orphaned(os.getppid(), 0.1)


def test_without_prctl_a_thread_notices_the_parents_death(tmp_path):
    child = f"from tests.core.test_ddp import orphan_watch; orphan_watch({str(tmp_path)!r})"
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    assert survivors_of_sigkill(code, tmp_path, ready=1, grace=10) == []
