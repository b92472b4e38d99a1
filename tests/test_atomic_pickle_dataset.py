"""AtomicPickleDataset: a failed or killed save never leaves a file that looks finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from kedro.io.core import DatasetError
from kedro_datasets.partitions import PartitionedDataset

from podium.datasets import AtomicPickleDataset
from podium.datasets.atomic import PARTIAL_MARK


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot be pickled")


def test_a_failed_save_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "record.joblib"
    dataset = AtomicPickleDataset(filepath=str(path), backend="joblib")
    dataset.save({"crops": np.arange(10)})
    with pytest.raises(DatasetError, match="record.joblib"):
        # the array is written before the failing object: a plain save would leave it half
        dataset.save({"crops": np.zeros(1_000_000), "bad": _Unpicklable()})
    np.testing.assert_array_equal(dataset.load()["crops"], np.arange(10))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.joblib"]


def test_a_killed_save_is_invisible_to_a_partitioned_dataset(tmp_path):
    """SIGKILL in the middle of writing a partition: the folder lists only whole files."""
    folder = tmp_path / "faces"
    script = textwrap.dedent(
        f"""
        import numpy as np, os, signal
        from podium.datasets import AtomicPickleDataset

        class KillWhilePickled:
            def __reduce__(self):
                os.kill(os.getpid(), signal.SIGKILL)

        AtomicPickleDataset(filepath={str(folder / "a.joblib")!r}, backend="joblib").save(1)
        AtomicPickleDataset(filepath={str(folder / "b.joblib")!r}, backend="joblib").save(
            [np.ones(500_000), KillWhilePickled()]
        )
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False)
    assert done.returncode == -signal.SIGKILL
    names = sorted(os.listdir(folder))
    assert names[0] == "a.joblib" and len(names) == 2 and PARTIAL_MARK in names[1]
    partitions = PartitionedDataset(
        path=str(folder),
        dataset={"type": "pickle.PickleDataset", "backend": "joblib"},
        filename_suffix=".joblib",
    ).load()
    assert list(partitions) == ["a"] and partitions["a"]() == 1
