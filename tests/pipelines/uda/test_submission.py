"""The competition's run-length encoding and submission table."""

from __future__ import annotations

import numpy as np
import pytest

from podium.layouts.uda import NUM_CLASSES, UdaLayoutError
from podium.pipelines.uda.submission import rle_decode, rle_encode, submission_table


def test_rle_follows_the_competition_format():
    mask = np.array([[0, 1, 1], [1, 0, 0]], dtype=bool)  # flat: 0 1 1 1 0 0
    assert rle_encode(mask) == "2 3"
    assert rle_encode(np.array([[1, 0], [0, 1]])) == "1 1 4 1"
    assert rle_encode(np.zeros((3, 4))) == "-1"
    assert rle_encode(np.ones((2, 2))) == "1 4"


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trips_exactly(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 40)), int(rng.integers(1, 60)))
    mask = rng.random(shape) < rng.random()
    mask[0, 0], mask[-1, -1] = rng.random() < 0.5, True  # runs touching both ends
    np.testing.assert_array_equal(rle_decode(rle_encode(mask), shape), mask)
    empty = np.zeros(shape, bool)
    np.testing.assert_array_equal(rle_decode(rle_encode(empty), shape), empty)


def test_rle_decode_rejects_malformed_strings():
    with pytest.raises(ValueError, match="odd number"):
        rle_decode("1 2 3", (2, 2))
    with pytest.raises(ValueError, match="outside"):
        rle_decode("3 5", (2, 2))


def test_submission_rows_follow_the_template_and_decode_to_the_class_maps():
    maps = [np.array([[0, 1], [11, 1]], np.uint8), np.full((2, 2), 3, np.uint8)]
    template = [f"T{i}_class_{k}" for i in (1, 0) for k in range(NUM_CLASSES)]
    table = submission_table(["T0", "T1"], maps, template)
    assert table["id"].tolist() == template
    rows = table.set_index("id")["mask_rle"]
    for i, class_map in enumerate(maps):
        for k in range(NUM_CLASSES):
            np.testing.assert_array_equal(
                rle_decode(rows[f"T{i}_class_{k}"], (2, 2)), class_map == k
            )
    assert rows["T1_class_0"] == "-1"
    with pytest.raises(UdaLayoutError, match="TX_class_0"):
        submission_table(["T0"], maps[:1], ["TX_class_0"])
