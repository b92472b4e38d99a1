"""Device choice and mixed precision that behave sensibly on both a laptop CPU and a GPU.

The same parameters file runs on a 2-core CPU and on an H100: ``auto`` picks the GPU when
there is one, bf16 where the GPU supports it (no loss scaling needed), fp16 with a
GradScaler otherwise, and plain fp32 on CPU unless bf16 is asked for explicitly.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from podium.core.config import ParameterError, check_choice, check_keys

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISION_CHOICES = ("auto", "bf16", "fp16", "fp32")

M = TypeVar("M", nn.Module, torch.Tensor)


def select_device(preference: str = "auto", *, parameter: str = "device") -> torch.device:
    """Resolve ``auto|cpu|cuda|cuda:N|mps`` to a torch.device, failing early if unavailable."""
    if not isinstance(preference, str) or not re.fullmatch(
        r"auto|cpu|cuda|cuda:\d+|mps", preference
    ):
        check_choice(parameter, preference, DEVICE_CHOICES)
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(
                parameter,
                f"{preference!r} asked for but no CUDA GPU is visible; use 'auto' or 'cpu'",
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ParameterError(
                parameter,
                f"{preference!r} asked for but only "
                f"{torch.cuda.device_count()} CUDA device(s) are visible",
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ParameterError(parameter, "'mps' asked for but it is not available; use 'auto'")
    return device


@dataclass(frozen=True)
class AmpSettings:
    """What autocast and the GradScaler need: where, whether, and in which dtype."""

    device: torch.device
    enabled: bool
    dtype: torch.dtype

    @property
    def name(self) -> str:
        """The precision actually used: 'bf16', 'fp16' or 'fp32' (worth logging per run)."""
        if not self.enabled:
            return "fp32"
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, str(self.dtype))


def _cuda_supports_bf16(device: torch.device) -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def amp_settings(
    device: torch.device | str, precision: str = "auto", *, parameter: str = "precision"
) -> AmpSettings:
    """Choose the autocast dtype for ``device`` from ``auto|bf16|fp16|fp32``.

    On CUDA, ``auto`` means bf16 where supported (Ampere and later), else fp16; an explicit
    bf16 on a GPU without it falls back to fp16 with a warning. On CPU (and MPS) only an
    explicit ``bf16`` enables autocast: CPU fp16 autocast is slow and gains nothing.
    """
    device = torch.device(device)
    check_choice(parameter, precision, PRECISION_CHOICES)
    disabled = AmpSettings(device, False, torch.float32)
    if precision == "fp32":
        return disabled
    if device.type == "cuda":
        bf16 = _cuda_supports_bf16(device)
        if precision == "bf16" and not bf16:
            warnings.warn(
                "bf16 is not supported on this GPU; using fp16 with a GradScaler", stacklevel=2
            )
        if precision == "fp16" or not bf16:
            return AmpSettings(device, True, torch.float16)
        return AmpSettings(device, True, torch.bfloat16)
    if precision == "bf16":
        return AmpSettings(device, True, torch.bfloat16)
    if precision == "fp16":
        warnings.warn(f"fp16 autocast is not used on {device.type}; running in fp32", stacklevel=2)
    return disabled


def autocast(amp: AmpSettings) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for these settings, or a no-op context when AMP is disabled."""
    if not amp.enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=amp.device.type, dtype=amp.dtype)


def needs_grad_scaler(amp: AmpSettings) -> bool:
    """Only fp16 needs loss scaling: bf16 has fp32's exponent range."""
    return amp.enabled and amp.dtype == torch.float16


def make_grad_scaler(amp: AmpSettings) -> torch.amp.GradScaler:
    """A GradScaler that is enabled exactly when ``needs_grad_scaler`` (a no-op otherwise)."""
    return torch.amp.GradScaler(amp.device.type, enabled=needs_grad_scaler(amp))


def to_channels_last(obj: M, device: torch.device | str) -> M:
    """Move a model or a 4-D tensor to channels_last on CUDA (where it speeds convs up).

    Elsewhere, and for tensors that are not 4-D, the input is returned unchanged.
    """
    if torch.device(device).type != "cuda":
        return obj
    if isinstance(obj, nn.Module):
        return obj.to(memory_format=torch.channels_last)
    if isinstance(obj, torch.Tensor) and obj.dim() == 4:
        return obj.contiguous(memory_format=torch.channels_last)
    return obj


def loader_settings(device: torch.device | str, num_workers: int) -> dict[str, Any]:
    """DataLoader settings that depend on the device: pinned memory only helps CUDA copies."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ParameterError("num_workers", f"expected an integer >= 0, got {num_workers!r}")
    return {"num_workers": num_workers, "pin_memory": torch.device(device).type == "cuda"}


@dataclass(frozen=True)
class Runtime:
    """Where and how to train and predict: the shared ``runtime`` parameters, resolved."""

    device: torch.device
    amp: AmpSettings
    num_workers: int = 0
    pin_memory: bool = False
    channels_last: bool = False
    deterministic: bool = False


#: Keys of the ``runtime`` block (conf/base/parameters.yml).
RUNTIME_KEYS = (
    "device",
    "precision",
    "num_workers",
    "torch_threads",
    "channels_last",
    "deterministic",
    "distributed",
    "dask",
)


DASK_KEYS = ("scheduler_address", "n_workers", "threads_per_worker")


def check_runtime_keys(runtime: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``runtime`` block and its ``dask`` block hold only known keys: ``num_worker``
    is a typo, not a request for the default."""
    check_keys("runtime", runtime, RUNTIME_KEYS)
    if runtime.get("dask") is not None:
        check_keys("runtime.dask", runtime["dask"], DASK_KEYS)
    return runtime


def resolve_runtime(runtime: Mapping[str, Any]) -> Runtime:
    """The ``runtime`` parameter block (device, precision, num_workers, channels_last,
    deterministic) as a :class:`Runtime`; channels_last only applies on CUDA."""
    check_runtime_keys(runtime)
    device = select_device(runtime.get("device", "auto"), parameter="runtime.device")
    loader = loader_settings(device, runtime.get("num_workers", 0))
    return Runtime(
        device=device,
        amp=amp_settings(device, runtime.get("precision", "auto"), parameter="runtime.precision"),
        num_workers=loader["num_workers"],
        pin_memory=loader["pin_memory"],
        channels_last=bool(runtime.get("channels_last", False)) and device.type == "cuda",
        deterministic=bool(runtime.get("deterministic", False)),
    )


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
