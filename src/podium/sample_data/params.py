"""Value types the sample generators' parameter models share (see podium.core.params).

Each generator's model lives next to it (``DeepfakeSampleParams`` in
:mod:`podium.sample_data.deepfake`, ...): a generator is a building block, called with a plain
dict from a notebook or a test as readily as by the ``sample_data`` pipeline.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, Strict


def between(low: float, high: float, kind: type = float) -> Any:
    """A number (``kind``: float or int, strict) in [low, high]."""
    return Annotated[kind, Strict(), Field(ge=low, le=high)]


def _ordered(pair: tuple) -> tuple:
    low, high = pair
    if low > high:
        raise ValueError(f"a [low, high] range needs low <= high, got [{low}, {high}]")
    return pair


def span(low: float, high: float, kind: type = float) -> Any:
    """A range written ``[low, high]``, both ends in [low, high] and its low <= its high."""
    end = between(low, high, kind)
    return Annotated[tuple[end, end], AfterValidator(_ordered)]
