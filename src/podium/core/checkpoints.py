"""Weights as safetensors, training state as a ``weights_only``-loadable torch file.

Nothing here unpickles arbitrary objects: weights are safetensors, and the resumable
training checkpoint holds only tensors and plain python values (RNG states are converted
to tensors) so ``torch.load(..., weights_only=True)`` accepts it. Every write goes to a
temporary file first and is renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import os
import random
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

CHECKPOINT_FORMAT = "podium.training_checkpoint.v1"


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose state dict has clean keys: strips DDP/DataParallel and torch.compile."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def cpu_state_dict(
    state: nn.Module | Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """A model's (or a state dict's) tensors as detached, contiguous CPU copies: what a
    training hands back or saves, sharing no memory with the live (GPU, channels_last,
    DDP-wrapped) model."""
    if isinstance(state, nn.Module):
        state = unwrap_model(state).state_dict()
    return {
        k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        for k, v in state.items()
    }


def _contiguous_unshared(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no two sharing memory (safetensors refuses shared ones)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
        tensor = value.detach().to("cpu")
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


def save_state_dict(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write tensors to a safetensors file (atomically); metadata values are stored as strings."""
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    tensors = _contiguous_unshared(state_dict)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta or None)
    return Path(path)


def load_state_dict(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a dict of tensors on ``device``."""
    return load_file(str(path), device=str(device))


def load_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header (empty if none)."""
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


# ---------------------------------------------------------------------------- RNG states


def capture_rng_state() -> dict[str, Any]:
    """python, numpy, torch and CUDA RNG states as tensors and plain values."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Undo ``capture_rng_state``: the next random draws repeat those after the capture."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


# ------------------------------------------------------------------- training checkpoint


@dataclass
class TrainingState:
    """What a loaded training checkpoint says beyond the restored objects."""

    epoch: int
    extra: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1  # processes that trained it (DDP ranks)


def rank_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """This process's RNG and generator states, as ``rank_states`` entries hold them."""
    return {
        "rng": capture_rng_state(),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }


def _state_or_none(obj: Any) -> Any:
    return None if obj is None else obj.state_dict()


def save_training_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
    extra: Mapping[str, Any] | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    rank_states: Sequence[Mapping[str, Any]] | None = None,
    states: Mapping[str, Any] | None = None,
) -> Path:
    """Save everything needed to resume after ``epoch`` completed epochs (atomically).

    ``extra`` must hold only tensors and plain python values (e.g. the metrics history);
    ``generators`` are e.g. a DataLoader's shuffling generator, whose state is saved too.
    ``rank_states`` (DDP, saved by rank 0): every rank's ``rank_state()``, so each rank
    resumes its own RNG and loader generators. ``states``: more objects with a
    ``state_dict()`` saved by name (an EMA of the weights, a second optimizer, the
    discriminators of a GAN), restored by ``load_training_checkpoint(states=...)``.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": int(epoch),
        "model": unwrap_model(model).state_dict(),
        "optimizer": _state_or_none(optimizer),
        "scheduler": _state_or_none(scheduler),
        "scaler": _state_or_none(scaler),
        "rng": capture_rng_state(),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
        "extra": dict(extra or {}),
        "states": {name: obj.state_dict() for name, obj in (states or {}).items()},
    }
    if rank_states is not None:
        payload["ranks"] = [dict(state) for state in rank_states]
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_training_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    restore_rng: bool = True,
    map_location: str | torch.device | Callable[..., Any] = "cpu",
    rank: int | None = None,
    states: Mapping[str, Any] | None = None,
) -> TrainingState:
    """Restore the given objects in place from a checkpoint; return the epoch and ``extra``.

    Loaded with ``weights_only=True``: a tampered file cannot execute code. ``rank`` (DDP):
    restore that rank's RNG and generator states when the checkpoint holds per-rank states
    (a checkpoint from a different number of processes restores rank 0's, with a warning).
    ``states``: the objects saved by name with ``save_training_checkpoint(states=...)``;
    one the checkpoint lacks is an error (it was written by a different training).
    """
    payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a podium training checkpoint ({CHECKPOINT_FORMAT})")
    unwrap_model(model).load_state_dict(payload["model"])
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and payload[name] is not None:
            obj.load_state_dict(payload[name])
    saved = payload.get("states", {})
    for name, obj in (states or {}).items():
        if name not in saved:
            raise ValueError(
                f"{path} holds no {name!r} state (it has {sorted(saved)}): it was written by a "
                "different training; delete it or start afresh (resume_from: null)"
            )
        obj.load_state_dict(saved[name])
    own = {"rng": payload["rng"], "generators": payload["generators"]}
    ranks = payload.get("ranks")
    if rank is not None and ranks:
        if rank < len(ranks):
            own = ranks[rank]
        else:
            warnings.warn(
                f"{path} was saved by {len(ranks)} process(es); rank {rank} resumes with rank "
                "0's random state, so this run will not repeat an uninterrupted one exactly",
                stacklevel=2,
            )
    for name, generator in (generators or {}).items():
        if name in own["generators"]:
            generator.set_state(own["generators"][name].cpu())
    if restore_rng:
        restore_rng_state(own["rng"])
    return TrainingState(
        epoch=int(payload["epoch"]),
        extra=dict(payload["extra"]),
        world_size=len(ranks) if ranks else 1,
    )
