from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from podium.core.checkpoints import (
    atomic_path,
    capture_rng_state,
    load_metadata,
    load_state_dict,
    load_training_checkpoint,
    restore_rng_state,
    save_state_dict,
    save_training_checkpoint,
    unwrap_model,
)
from tests.core.helpers import state_equal, tiny_cnn, tiny_model


def test_safetensors_round_trip_with_metadata_and_parent_dirs(tmp_path):
    model = tiny_model()
    path = tmp_path / "deep" / "er" / "model.safetensors"
    save_state_dict(path, model.state_dict(), {"backbone": "test_efficientnet", "epoch": 3})
    loaded = load_state_dict(path)
    assert state_equal(loaded, model.state_dict())
    assert load_metadata(path) == {"backbone": "test_efficientnet", "epoch": "3"}
    fresh = tiny_model()
    fresh.load_state_dict(loaded)
    assert state_equal(fresh.state_dict(), model.state_dict())
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temp file left


def test_safetensors_handles_shared_and_non_contiguous_tensors(tmp_path):
    weight = torch.randn(4, 6)
    state = {"a": weight, "tied": weight, "t": weight.t()}
    save_state_dict(tmp_path / "s.safetensors", state)
    loaded = load_state_dict(tmp_path / "s.safetensors")
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_rng_state_round_trip():
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), np.random.randn(), torch.rand(2))
    restore_rng_state(state)
    again = (random.random(), np.random.rand(), np.random.randn(), torch.rand(2))
    assert expected[:3] == again[:3] and torch.equal(expected[3], again[3])


@pytest.mark.parametrize("kind", ["step", "plateau", "onecycle", "cosine"])
def test_training_checkpoint_loads_with_weights_only(tmp_path, kind):
    model = tiny_cnn()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    make_scheduler = {
        "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2, 0.5),
        "plateau": lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1),
        "onecycle": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, 0.01, total_steps=10),
        "cosine": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 5),
    }[kind]
    scheduler = make_scheduler(optimizer)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    loss = model(torch.randn(2, 3, 32, 32)).sum()
    loss.backward()
    optimizer.step()
    scheduler.step(1.0) if kind == "plateau" else scheduler.step()
    generator = torch.Generator().manual_seed(5)
    path = tmp_path / "ckpt" / "last.pt"
    save_training_checkpoint(
        path,
        model=model,
        epoch=4,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        extra={"history": [{"train_loss": 1.0}]},
        generators={"loader": generator},
    )
    expected_draw = torch.rand(1, generator=generator)

    torch.load(path, weights_only=True)  # the whole file is plain tensors and python values
    model2 = tiny_cnn()
    optimizer2 = torch.optim.AdamW(model2.parameters(), lr=1e-3, betas=(0.9, 0.99))
    scheduler2 = make_scheduler(optimizer2)
    generator2 = torch.Generator().manual_seed(0)
    state = load_training_checkpoint(
        path,
        model=model2,
        optimizer=optimizer2,
        scheduler=scheduler2,
        scaler=torch.amp.GradScaler("cpu"),
        generators={"loader": generator2},
    )
    assert state.epoch == 4 and state.extra["history"] == [{"train_loss": 1.0}]
    assert state_equal(model2.state_dict(), model.state_dict())
    first = next(iter(optimizer.state.values()))
    first2 = next(iter(optimizer2.state.values()))
    assert torch.equal(first["exp_avg"], first2["exp_avg"])
    assert torch.equal(torch.rand(1, generator=generator2), expected_draw)
    assert scheduler2.state_dict() == scheduler.state_dict()
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_loading_something_else_is_refused(tmp_path):
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a podium training checkpoint"):
        load_training_checkpoint(tmp_path / "other.pt", model=tiny_model())


def test_unwrap_model_strips_data_parallel():
    model = torch.nn.Linear(2, 2)
    assert unwrap_model(torch.nn.DataParallel(model)) is model
    assert unwrap_model(model) is model
