"""One seed for python, numpy, torch, CUDA and every DataLoader worker.

Reproducing a run means reproducing every random draw: weight init, shuffling, dropout
and the augmentations drawn inside DataLoader worker processes. ``seed_everything``
covers the process, ``dataloader_kwargs`` covers the loaders and their workers, and
``derive_seed`` / ``training_seed`` give every (model, fold, DDP rank) its own seed derived
from the run's one ``seed`` (``np.random.SeedSequence``).
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any

import numpy as np
import torch

from podium.core.config import ParameterError

#: numpy's legacy seeding accepts 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1
#: cuBLAS needs a fixed workspace to be deterministic (CUDA >= 10.2).
CUBLAS_WORKSPACE = ":4096:8"


def _check_seed(seed: int, parameter: str = "seed") -> int:
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int | np.integer)
        or not 0 <= seed <= MAX_SEED
    ):
        raise ParameterError(parameter, f"expected an integer in [0, {MAX_SEED}], got {seed!r}")
    return int(seed)


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed python, numpy and torch (CPU and all CUDA devices); return the seed.

    ``deterministic=True`` also asks torch for deterministic kernels (warning, not failing,
    where none exists), fixes cuDNN's algorithm choice and cuBLAS' workspace: slower on GPU,
    but the same seed on CPU then gives identical weights. ``PYTHONHASHSEED`` only affects
    subprocesses started afterwards (the current interpreter's hash seed is fixed at start).
    """
    seed = _check_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    return seed


def _reseed_transforms(dataset: Any, seed: int) -> None:
    """Give a dataset's augmentation pipelines (attributes of it) a per-worker seed.

    albumentations 2 draws from its own generators, not numpy's global one: a
    ``Compose(seed=s)`` is copied into every worker with the same state (all workers would
    draw the same augmentations) and ``Compose(seed=None)`` is seeded from OS entropy (not
    reproducible). Reseeding from the worker seed fixes both.
    """
    seen: set[int] = set()
    stack = [dataset]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
            if callable(getattr(value, "set_random_seed", None)) and hasattr(value, "transforms"):
                value.set_random_seed(seed)
            elif isinstance(value, torch.utils.data.Dataset):
                stack.append(value)  # e.g. Subset(dataset) or ConcatDataset members


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy, python and seeded transforms per worker.

    torch gives each worker ``base_seed + worker_id`` (base_seed drawn from the loader's
    generator), so deriving from ``torch.initial_seed()`` makes workers differ from each
    other and from epoch to epoch while staying a function of the run's seed.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        _reseed_transforms(info.dataset, worker_seed)


def reseed_main_process_transforms(loader: Any, epoch: int) -> None:
    """A loader without workers runs its transforms here: seed them per epoch.

    Workers reseed a dataset's transforms every epoch (:func:`seed_worker`); without
    workers the transforms' own generators would run on across epochs, a state no
    checkpoint holds. Reseeding them from the loader generator's seed and the epoch makes
    a resumed run draw the same augmentations as an uninterrupted one.
    """
    generator = getattr(loader, "generator", None)
    if getattr(loader, "num_workers", 1) != 0 or generator is None:
        return
    dataset = getattr(loader, "dataset", None)
    if dataset is not None:
        _reseed_transforms(dataset, derive_seed(generator.initial_seed() % 2**32, epoch))


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator for a DataLoader: shuffling and worker seeds then follow ``seed``."""
    return torch.Generator().manual_seed(_check_seed(seed))


def dataloader_kwargs(
    seed: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
) -> dict[str, Any]:
    """Keyword arguments that seed a DataLoader the same way everywhere.

    Use as ``DataLoader(ds, batch_size=32, shuffle=True, **dataloader_kwargs(seed, 2))``.
    ``persistent_workers`` stays off by default: fresh workers each epoch are seeded from the
    loader's generator, which a training checkpoint restores, so a resumed run draws the
    same augmentations as an uninterrupted one.
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ParameterError("num_workers", f"expected an integer >= 0, got {num_workers!r}")
    return {
        "num_workers": num_workers,
        "pin_memory": bool(pin_memory),
        "worker_init_fn": seed_worker,
        "generator": make_generator(seed),
        "persistent_workers": bool(persistent_workers) and num_workers > 0,
    }


def derive_seed(run_seed: int, *keys: int | str, parameter: str = "seed") -> int:
    """The seed of one part of a run (a model, a fold, a DDP rank), derived from the run seed.

    podium's one seeding scheme: every random stream of a run comes from the single ``seed``
    parameter through ``np.random.SeedSequence([run_seed, *keys])``, so

    - the same run seed and keys give the same seed on every machine and python version
      (string keys, e.g. a model name, are hashed with SHA-256, not python's salted ``hash``);
    - different keys give statistically independent streams, unlike ``seed + fold`` (where
      model 0 fold 1 and model 1 fold 0 would collide);
    - the order of the keys matters: use them as ``(model, fold, rank)``, see
      :func:`training_seed`.

    The result lies in ``[0, 2**32 - 1]``, so ``seed_everything`` and numpy accept it.
    """
    entropy = [_check_seed(run_seed, parameter)]
    for key in keys:
        if isinstance(key, str):
            digest = hashlib.sha256(key.encode("utf-8")).digest()
            entropy.append(int.from_bytes(digest[:8], "little"))
        elif not isinstance(key, bool) and isinstance(key, int | np.integer) and key >= 0:
            entropy.append(int(key))
        else:
            raise ParameterError(
                parameter, f"seed keys must be integers >= 0 or strings, got {key!r}"
            )
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])


def training_seed(
    run_seed: int, *, model: int | str = 0, fold: int = 0, rank: int = 0, parameter: str = "seed"
) -> int:
    """The seed of one (model, fold, rank) training process: ``derive_seed(seed, model, fold, rank)``.

    ``model`` is the model's index in its list or its name. Seed the process with it
    (``seed_everything(training_seed(seed, model=..., fold=..., rank=dist_rank))``): under DDP
    each rank then draws its own dropout masks and augmentations, while DDP copies rank 0's
    initial weights to every rank when it wraps the model.
    """
    return derive_seed(run_seed, model, fold, rank, parameter=parameter)
