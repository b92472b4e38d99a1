"""A training killed for real (SIGKILL) resumes to the uninterrupted run's weights, bit for bit;
the run seed alone decides the weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from podium.core.checkpoints import load_training_checkpoint
from podium.core.device import resolve_runtime
from podium.core.optim import build_optimizer, build_scheduler
from podium.core.seeding import seed_everything, training_seed
from podium.core.training import fit, seeded_loader
from tests.core.helpers import NoisyImages, state_equal, tiny_cnn

EPOCHS, KILL_AFTER = 4, 2
ROOT = Path(__file__).resolve().parents[2]
READY = "READY-TO-BE-KILLED"

SCHEDULES = {
    "cosine_per_step": {"name": "cosine", "warmup_epochs": 1, "min_lr": 1e-5, "per": "step"},
    # a falling loss watched in "max" mode never improves: a decay every other epoch, so the
    # count of bad epochs crosses the resume point
    "plateau": {
        "name": "plateau",
        "patience": 1,
        "decay_rate": 0.5,
        "mode": "max",
        "monitor": "train_loss",
    },
}


def _train(
    seed: int,
    schedule: str,
    checkpoint: str | None = None,
    epochs: int = EPOCHS,
    on_epoch_end=None,
):
    """BatchNorm, dropout, noisy data, class-balanced draws, timm AdamW and a timm schedule."""
    torch.set_num_threads(1)
    seed_everything(seed, deterministic=True)
    dataset = NoisyImages(30)
    model = tiny_cnn()
    weights = np.where(dataset.labels.numpy() == 0, 2.0, 1.0)
    loader = seeded_loader(
        dataset,
        10,
        shuffle=True,
        seed=seed,
        runtime=resolve_runtime({"device": "cpu"}),
        sample_weights=weights,
    )
    optimizer = build_optimizer(model, {"name": "adamw", "lr": 3e-3, "weight_decay": 1e-2})
    scheduler = build_scheduler(
        optimizer, SCHEDULES[schedule], epochs=EPOCHS, steps_per_epoch=len(loader)
    )
    history = fit(
        model,
        loader,
        loss_fn=F.cross_entropy,
        optimizer=optimizer,
        scheduler=scheduler,
        epochs=epochs,
        device="cpu",
        checkpoint_path=checkpoint,
        progress=False,
        on_epoch_end=on_epoch_end,
    )
    return model.state_dict(), history


def child(checkpoint: str) -> None:
    """Train in a subprocess; after epoch KILL_AFTER + 1 (epoch KILL_AFTER checkpointed, the
    next one trained but not saved) say so and wait to be killed."""

    def wait_for_kill(epoch: int, metrics: dict) -> None:
        if epoch == KILL_AFTER + 1:
            print(READY, flush=True)
            time.sleep(600)

    _train(0, "cosine_per_step", checkpoint, on_epoch_end=wait_for_kill)


def test_sigkilled_training_resumes_bit_for_bit(tmp_path):
    checkpoint = tmp_path / "last.pt"
    code = f"from tests.core.test_resume import child; child({str(checkpoint)!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == READY, f"child said {line!r} (exit code {proc.poll()})"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.stdout.close()
    state = load_training_checkpoint(checkpoint, model=tiny_cnn(), restore_rng=False)
    assert state.epoch == KILL_AFTER  # the killed epoch's work was lost, the last save holds

    expected, full = _train(0, "cosine_per_step")
    seed_everything(999)  # another process state before resuming
    resumed_state, resumed = _train(5, "cosine_per_step", str(checkpoint))
    assert resumed == full
    assert state_equal(resumed_state, expected)
    lrs = [h["lr"] for h in full]
    assert lrs[0] < lrs[1] and lrs[1] > lrs[-1]  # the warm-up and the cosine really ran


def test_plateau_schedule_resumes_with_its_whole_state(tmp_path):
    checkpoint = str(tmp_path / "last.pt")
    expected, full = _train(0, "plateau")
    _train(0, "plateau", checkpoint, epochs=KILL_AFTER)
    resumed_state, resumed = _train(3, "plateau", checkpoint)
    assert [h["lr"] for h in full] == pytest.approx([3e-3, 3e-3, 3e-3, 1.5e-3])
    assert resumed == full
    assert state_equal(resumed_state, expected)


def _seeded_weights(run_seed: int, fold: int) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    seed = training_seed(run_seed, model="tiny_cnn", fold=fold)
    state, _ = _train(seed, "cosine_per_step", epochs=2)
    return state


def test_the_run_seed_decides_the_weights():
    first = _seeded_weights(7, fold=0)
    assert state_equal(first, _seeded_weights(7, fold=0))
    assert not state_equal(first, _seeded_weights(8, fold=0))
    assert not state_equal(first, _seeded_weights(7, fold=1))


@pytest.mark.parametrize(
    "keys",
    [((0, 0, 0), (0, 0, 1)), ((0, 1, 0), (1, 0, 0)), (("a", 0, 0), ("b", 0, 0))],
)
def test_training_seeds_differ_per_model_fold_and_rank(keys):
    (m1, f1, r1), (m2, f2, r2) = keys
    a = training_seed(42, model=m1, fold=f1, rank=r1)
    b = training_seed(42, model=m2, fold=f2, rank=r2)
    assert a != b and 0 <= a < 2**32 and 0 <= b < 2**32
    assert a == training_seed(42, model=m1, fold=f1, rank=r1)


def test_training_seed_is_pinned():
    """The scheme is part of reproducibility: a change here changes every recorded run."""
    expected = int(np.random.SeedSequence([42, 1, 2, 3]).generate_state(1, dtype=np.uint32)[0])
    assert training_seed(42, model=1, fold=2, rank=3) == expected
    with pytest.raises(ValueError, match="seed"):
        training_seed(-1)
    with pytest.raises(ValueError, match="seed keys"):
        training_seed(1, fold=-2)
