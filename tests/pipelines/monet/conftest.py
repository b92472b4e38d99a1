"""The monet tests run their tiny networks on one thread: on a shared 2-core machine two
threads per process mostly wait for each other (a 0.5 s training took 20 s)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
