"""Keep torch's global determinism flags as each test found them."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_determinism_flags():
    """Tests call seed_everything(deterministic=...): leave torch's global flags as found."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.deterministic = cudnn
