"""The train_cyclegan node resumed with ``resume_from: latest``: a run split by
epochs_this_run continues from its saved state, a run SIGKILLed mid-way from its last
epoch checkpoint, and either ends with the uninterrupted run's four networks, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from podium.core.config import ParameterError
from podium.layouts.monet import index_monet
from podium.pipelines.monet import nodes
from podium.pipelines.monet import train as training
from podium.pipelines.monet.data import encode_jpeg
from tests.pipelines.monet.test_train import DATA, LOSS, MODEL, OPTIMIZER, TRAIN

ROOT = Path(__file__).resolve().parents[3]
READY = "READY-TO-BE-KILLED"
KILL_AFTER = 2  # the killed run has checkpointed epoch 2 of 3
RUNTIME = {"device": "cpu", "precision": "fp32", "num_workers": 0}


def _tables(raw: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    generator = torch.Generator().manual_seed(0)
    for domain, count in (("photo", 5), ("monet", 3)):
        folder = raw / f"{domain}_jpg"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = torch.randint(0, 255, (24, 24, 3), generator=generator, dtype=torch.uint8)
            (folder / f"{domain}{i}.jpg").write_bytes(encode_jpeg(image.numpy(), 90))
    index = index_monet(raw)
    return tuple(
        index.loc[index["domain"] == d, ["domain", "path", "name"]].reset_index(drop=True)
        for d in ("photo", "monet")
    )


def _node(raw: Path, checkpoints: Path, saved: dict, **train) -> tuple:
    photos, monets = _tables(raw)
    return nodes.train_cyclegan(
        photos, monets, saved, checkpoints, data=DATA, model=MODEL, loss=LOSS,
        optimizer=OPTIMIZER, train=TRAIN | train, seed=7, deterministic=True, runtime=RUNTIME,
    )  # fmt: skip


def _as_saved(outputs: tuple, version: str) -> dict:
    """The node's outputs as ``monet_saved_sub_models`` lists them once saved."""
    files = dict(zip([*training.SUB_MODELS, nodes.TRAINING_STATE], outputs[:5], strict=True))
    return {
        f"{name}.safetensors/{version}/{name}": (lambda value=value: value)
        for name, value in files.items()
    }


def _weights(outputs: tuple) -> dict:
    return dict(zip(training.SUB_MODELS, outputs[:4], strict=True))


def _same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])


def child(raw: str, checkpoints: str, first: str) -> None:
    """Continue the saved first run with latest; once epoch KILL_AFTER is checkpointed say
    so and wait to be killed."""
    torch.set_num_threads(1)
    save = training.save_training_checkpoint

    def save_then_wait(path, **kwargs):
        save(path, **kwargs)
        if kwargs["epoch"] == KILL_AFTER:
            print(READY, flush=True)
            time.sleep(600)

    training.save_training_checkpoint = save_then_wait
    saved = _as_saved(torch.load(first, weights_only=True), "v1")
    _node(Path(raw), Path(checkpoints), saved, resume_from="latest")


def test_latest_continues_a_split_run_and_then_a_killed_one_bit_for_bit(tmp_path, monkeypatch):
    raw, checkpoints = tmp_path / "raw", tmp_path / "checkpoints"
    straight = _node(raw, tmp_path / "straight", {})
    first = _node(raw, checkpoints, {}, epochs_this_run=1)
    assert first[-1]["epoch"].tolist() == [1]
    torch.save(first[:5], tmp_path / "first.pt")  # what monet_saved_sub_models reads back

    # the second run continues v1 (its epoch checkpoint, at epoch 1 too, is no further on)
    args = tuple(map(str, (raw, checkpoints, tmp_path / "first.pt")))
    code = f"from tests.pipelines.monet.test_resume import child; child(*{args!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.strip() == READY, f"child said {line!r} (exit code {proc.poll()})"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.stdout.close()

    # killed after epoch 2: its checkpoint is further on than v1, so latest continues it
    (checkpoint,) = checkpoints.glob(f"*/{nodes.CHECKPOINT_FILE}")
    assert nodes._epochs_done(checkpoint) == KILL_AFTER
    saves, save = [], training.save_training_checkpoint
    monkeypatch.setattr(
        training,
        "save_training_checkpoint",
        lambda path, **kw: saves.append(kw["epoch"]) or save(path, **kw),
    )
    resumed = _node(raw, checkpoints, _as_saved(first, "v1"), resume_from="latest")
    assert saves == [3]  # only the epoch the kill lost was trained again
    assert resumed[-1]["epoch"].tolist() == [2, 3]  # since v1: the killed run's epoch too
    pd.testing.assert_frame_equal(resumed[-1], straight[-1].iloc[1:].reset_index(drop=True))
    assert _same_weights(_weights(resumed), _weights(straight))

    # asked again, latest takes the finished run's save (as far on as the checkpoint)
    again = _node(raw, checkpoints, _as_saved(first, "v1") | _as_saved(resumed, "v2"),
                  resume_from="latest")  # fmt: skip
    assert again[-1].empty and _same_weights(_weights(again), _weights(straight))


def test_null_starts_afresh_over_an_old_checkpoint_and_a_version_must_exist(tmp_path):
    raw, checkpoints = tmp_path / "raw", tmp_path / "checkpoints"
    first = _node(raw, checkpoints, {}, epochs_this_run=1)
    afresh = _node(raw, checkpoints, {}, epochs_this_run=1)
    assert afresh[-1]["epoch"].tolist() == [1]  # the epoch-1 checkpoint was not continued
    assert _same_weights(_weights(first), _weights(afresh))
    with pytest.raises(ParameterError, match=r"resume_from.*no saved run 'v9'"):
        _node(raw, checkpoints, _as_saved(first, "v1"), resume_from="v9")
    # an explicit version starts from that save, whatever the folder holds
    from_v1 = _node(raw, checkpoints, _as_saved(first, "v1"), resume_from="v1")
    assert from_v1[-1]["epoch"].tolist() == [2, 3]


def test_a_state_saved_before_training_checkpoints_asks_for_a_fresh_start(tmp_path):
    first = _node(tmp_path / "raw", tmp_path / "checkpoints", {}, epochs_this_run=1)
    old = (*first[:4], {"epoch": torch.tensor(1), "data_rng": torch.zeros(5, dtype=torch.uint8)})
    with pytest.raises(ParameterError, match=r"resume_from.*predates.*null"):
        _node(tmp_path / "raw", tmp_path / "checkpoints", _as_saved(old, "v0"), resume_from="v0")


def test_latest_on_a_finished_run_is_a_no_op_with_no_curves_to_log(tmp_path):
    raw, checkpoints = tmp_path / "raw", tmp_path / "checkpoints"
    finished = _node(raw, checkpoints, {})
    again = _node(raw, checkpoints, _as_saved(finished, "v1"), resume_from="latest")
    assert _same_weights(_weights(finished), _weights(again))
    curves, history = again[-2], again[-1]
    assert curves == {} and history.empty  # nothing trained: no empty metric history
    assert finished[-2] and all(finished[-2].values())
