from __future__ import annotations

import os
import random

import albumentations as A
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from podium.core.config import ParameterError
from podium.core.seeding import dataloader_kwargs, make_generator, seed_everything, seed_worker
from podium.core.training import fit
from tests.core.helpers import NoisyImages, state_equal, tiny_model


def _train(seed: int) -> dict[str, torch.Tensor]:
    seed_everything(seed, deterministic=True)
    model = tiny_model()
    loader = DataLoader(NoisyImages(24), batch_size=12, shuffle=True, **dataloader_kwargs(seed, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    fit(
        model,
        loader,
        loss_fn=torch.nn.functional.cross_entropy,
        optimizer=optimizer,
        epochs=2,
        device="cpu",
        progress=False,
    )
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_gives_bit_identical_weights_and_other_seed_does_not():
    first, second, other = _train(7), _train(7), _train(8)
    assert state_equal(first, second)
    assert not state_equal(first, other)


def test_seed_everything_repeats_python_numpy_torch_draws():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    assert seed_everything(3) == 3
    a = draw()
    seed_everything(3)
    assert draw() == a
    seed_everything(4)
    assert draw() != a
    assert os.environ["PYTHONHASHSEED"] == "4"


def test_deterministic_flags():
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"]
    seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "1", True])
def test_bad_seed_is_a_parameter_error(bad):
    with pytest.raises(ParameterError, match="seed"):
        seed_everything(bad)


class _WorkerDraws(Dataset):
    """Returns what the worker's numpy, python and seeded albumentations RNGs draw."""

    def __init__(self):
        self.transform = A.Compose([A.HorizontalFlip(p=0.5)], seed=5)

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.tensor(
            [np.random.rand(), random.random(), self.transform.random_generator.random()]
        )


def _worker_draws(seed: int) -> torch.Tensor:
    loader = DataLoader(_WorkerDraws(), batch_size=1, **dataloader_kwargs(seed, num_workers=2))
    return torch.cat(list(loader))


def test_workers_are_seeded_from_the_loader_seed_and_differ_from_each_other():
    a, b, c = _worker_draws(11), _worker_draws(11), _worker_draws(12)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # items 0 and 1 come from worker 0 and 1: their numpy, python and albumentations draws differ
    assert (a[0] != a[1]).all()


def test_seed_worker_outside_a_worker_seeds_numpy_from_torch():
    torch.manual_seed(99)
    seed_worker(0)
    x = np.random.rand()
    torch.manual_seed(99)
    seed_worker(0)
    assert np.random.rand() == x


def test_make_generator_and_dataloader_kwargs():
    assert torch.equal(
        torch.rand(3, generator=make_generator(1)), torch.rand(3, generator=make_generator(1))
    )
    kwargs = dataloader_kwargs(1, num_workers=0, pin_memory=True, persistent_workers=True)
    assert kwargs["worker_init_fn"] is seed_worker
    assert kwargs["persistent_workers"] is False  # meaningless (and an error) without workers
    assert kwargs["pin_memory"] is True
    assert dataloader_kwargs(1, num_workers=2, persistent_workers=True)["persistent_workers"]
    with pytest.raises(ParameterError, match="num_workers"):
        dataloader_kwargs(1, num_workers=-1)
