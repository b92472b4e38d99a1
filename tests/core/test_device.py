from __future__ import annotations

import pytest
import torch

from podium.core.config import ParameterError
from podium.core.device import (
    AmpSettings,
    amp_settings,
    autocast,
    eval_mode,
    loader_settings,
    make_grad_scaler,
    needs_grad_scaler,
    select_device,
    to_channels_last,
)

CPU = torch.device("cpu")
requires_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")


@requires_no_cuda
def test_select_device_auto_and_unavailable_cuda():
    assert select_device("auto") == CPU
    assert select_device("cpu") == CPU
    with pytest.raises(ParameterError, match="no CUDA GPU"):
        select_device("cuda:0", parameter="mask.device")


def test_select_device_rejects_unknown():
    with pytest.raises(ParameterError) as info:
        select_device("gpu", parameter="mask.device")
    assert "mask.device" in str(info.value) and "cuda:N" in str(info.value)


def test_amp_settings_on_cpu():
    assert amp_settings(CPU, "auto") == AmpSettings(CPU, False, torch.float32)
    assert amp_settings(CPU, "fp32").name == "fp32"
    bf16 = amp_settings("cpu", "bf16")
    assert bf16.enabled and bf16.dtype == torch.bfloat16 and bf16.name == "bf16"
    assert not needs_grad_scaler(bf16)
    with pytest.warns(UserWarning, match="fp16"):
        assert not amp_settings(CPU, "fp16").enabled
    with pytest.raises(ParameterError, match="bf32"):
        amp_settings(CPU, "bf32")


def test_amp_settings_on_cuda_prefers_bf16(monkeypatch):
    import podium.core.device as device_module

    cuda = torch.device("cuda")
    monkeypatch.setattr(device_module, "_cuda_supports_bf16", lambda device: True)
    assert amp_settings(cuda, "auto").dtype == torch.bfloat16
    assert amp_settings(cuda, "fp16").dtype == torch.float16
    monkeypatch.setattr(device_module, "_cuda_supports_bf16", lambda device: False)
    fp16 = amp_settings(cuda, "auto")
    assert fp16.dtype == torch.float16 and needs_grad_scaler(fp16)
    with pytest.warns(UserWarning, match="bf16 is not supported"):
        assert amp_settings(cuda, "bf16").dtype == torch.float16


def test_autocast_applies_dtype_only_when_enabled():
    layer = torch.nn.Linear(4, 2)
    x = torch.randn(3, 4)
    with autocast(amp_settings(CPU, "bf16")):
        assert layer(x).dtype == torch.bfloat16
    with autocast(amp_settings(CPU, "fp32")):
        assert layer(x).dtype == torch.float32


def test_grad_scaler_is_disabled_without_fp16():
    assert not make_grad_scaler(amp_settings(CPU, "bf16")).is_enabled()


def test_channels_last_only_on_cuda():
    x = torch.randn(2, 3, 8, 8)
    assert to_channels_last(x, "cpu") is x
    model = torch.nn.Conv2d(3, 4, 3)
    assert to_channels_last(model, CPU) is model
    if torch.cuda.is_available():
        y = to_channels_last(x.cuda(), "cuda")
        assert y.is_contiguous(memory_format=torch.channels_last)
        z = torch.randn(2, 3).cuda()
        assert to_channels_last(z, "cuda") is z


def test_loader_settings_and_eval_mode():
    assert loader_settings(CPU, 2) == {"num_workers": 2, "pin_memory": False}
    assert loader_settings("cuda", 0)["pin_memory"] is True
    with pytest.raises(ParameterError):
        loader_settings(CPU, -2)
    model = torch.nn.Dropout()
    model.train()
    with eval_mode(model):
        assert not model.training
    assert model.training


def test_the_runtime_block_resolves_to_cpu_settings_here():
    import pytest

    from podium.core.config import ParameterError
    from podium.core.device import resolve_runtime

    runtime = resolve_runtime(
        {"device": "cpu", "precision": "auto", "num_workers": 2, "channels_last": True}
    )
    assert runtime.device.type == "cpu" and not runtime.amp.enabled
    assert runtime.num_workers == 2 and not runtime.pin_memory
    assert not runtime.channels_last  # channels_last pays on CUDA only
    with pytest.raises(ParameterError, match="runtime.precision"):
        resolve_runtime({"device": "cpu", "precision": "fp8"})


@pytest.mark.parametrize(
    ("block", "named", "suggested"),
    [
        ({"device": "cpu", "num_worker": 2}, "runtime", "num_workers"),
        ({"device": "cpu", "dask": {"n_worker": 2}}, "runtime.dask", "n_workers"),
    ],
)
def test_a_misspelt_runtime_key_is_an_error_not_a_default(block, named, suggested):
    from podium.core.device import resolve_runtime

    with pytest.raises(ParameterError, match=rf"`{named}`.*did you mean '{suggested}'") as caught:
        resolve_runtime(block)
    assert "conf/base/parameters.yml" in str(caught.value)  # where runtime lives


def test_the_projects_runtime_blocks_are_all_known_keys():
    from pathlib import Path

    import yaml

    from podium.core.device import check_runtime_keys

    root = Path(__file__).resolve().parents[2]
    for env in ("base", "full"):
        check_runtime_keys(
            yaml.safe_load((root / "conf" / env / "parameters.yml").read_text())["runtime"]
        )
