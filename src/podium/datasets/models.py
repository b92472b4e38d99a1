"""Trained weights of several models (folds, seeds, backbones) as one safetensors file.

``{"effnet/fold0": state_dict, "effnet/fold1": state_dict}`` is stored flat, each tensor
under ``"<model>::<parameter>"``: safetensors holds tensors only, so loading it runs no
pickled code (nothing like ``torch.load`` of an arbitrary file), and it can be versioned
like any Kedro dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from kedro.io.core import DatasetError

from podium.core.checkpoints import load_state_dict, save_state_dict
from podium.datasets.local import LocalVersionedDataset

SEPARATOR = "::"
StateDicts = Mapping[str, Mapping[str, torch.Tensor]]


class SafetensorsModelsDataset(LocalVersionedDataset):
    def load(self) -> dict[str, dict[str, torch.Tensor]]:
        flat = load_state_dict(Path(self._get_load_path()))
        models: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in flat.items():
            model, parameter = key.split(SEPARATOR, 1)
            models.setdefault(model, {})[parameter] = tensor
        return models

    def save(self, data: StateDicts) -> None:
        flat = {}
        for model, state in data.items():
            if SEPARATOR in model:
                raise DatasetError(f"Model name {model!r} may not contain {SEPARATOR!r}.")
            flat.update({f"{model}{SEPARATOR}{name}": t for name, t in state.items()})
        save_state_dict(Path(self._get_save_path()), flat, metadata={"models": ",".join(data)})
