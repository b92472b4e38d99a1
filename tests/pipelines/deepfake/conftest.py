"""Fixtures shared by the deepfake training tests."""

from __future__ import annotations

import pytest

from podium.pipelines.deepfake import train


@pytest.fixture
def training_sets(monkeypatch) -> list:
    """The training Dataset of every fold ``train.fit`` is handed, in order (fit runs as
    it would)."""
    seen: list = []
    real_fit = train.fit

    def spy(network, loader, **kwargs):
        seen.append(loader.dataset)
        return real_fit(network, loader, **kwargs)

    monkeypatch.setattr(train, "fit", spy)
    return seen
