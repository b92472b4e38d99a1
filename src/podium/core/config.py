"""Validation of configuration values with errors that say where and how to fix them.

Every building block validates its parameters through these helpers so a typo in a
YAML file stops the run at once with the parameter path, the bad value, what is
allowed and where to change it, instead of failing deep inside torch or timm.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

#: Above this many allowed values the message lists close matches instead of all of them.
MAX_LISTED_CHOICES = 30
#: How many close matches to suggest for a long list of allowed values.
MAX_SUGGESTIONS = 5
#: Parameter blocks of conf/base/parameters.yml, shared by every pipeline.
SHARED_BLOCKS = ("runtime",)


class ParameterError(ValueError):
    """A configuration value is invalid; the message names the parameter and the fix."""

    def __init__(self, parameter: str, message: str, *, where: str | None = None) -> None:
        self.parameter = parameter
        self.problem = message
        self.where = where or parameter_file(parameter)
        super().__init__(
            f"Invalid parameter `{parameter}`: {message}\n"
            f"Fix: set `{parameter}` in {self.where} (or override it with --params)."
        )


def soft_merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` merged into ``base`` key by key, as settings.py's soft merge gives
    parameters (``--params``, conf/full over conf/base): a nested mapping is merged, any
    other value replaces. Neither argument is changed; untouched sub-blocks are shared."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = soft_merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def parameter_file(parameter: str) -> str:
    """The conventional parameters file for a dotted path: its first segment names the
    pipeline; the ``runtime`` block, shared by all, lives in parameters.yml."""
    head = parameter.split(".", 1)[0].split("[", 1)[0]
    if head in SHARED_BLOCKS:
        return "conf/base/parameters.yml"
    if "." in parameter and head.isidentifier():
        return f"conf/base/parameters_{head}.yml"
    return "conf/base/parameters_<pipeline>.yml"


def describe_choices(value: Any, allowed: list[str], noun: str) -> str:
    """Sorted list of allowed values, or close matches and a count when the list is long."""
    matches = difflib.get_close_matches(str(value), allowed, n=MAX_SUGGESTIONS, cutoff=0.6)
    if len(allowed) <= MAX_LISTED_CHOICES:
        text = f"allowed {noun}: {', '.join(sorted(allowed))}"
        if matches:
            text = f"did you mean {matches[0]!r}? {text}"
        return text
    if matches:
        return f"did you mean one of: {', '.join(matches)}? ({len(allowed)} allowed {noun})"
    return (
        f"no close match among {len(allowed)} allowed {noun}, e.g. {', '.join(sorted(allowed)[:5])}"
    )


def check_choice(
    parameter: str,
    value: T,
    allowed: Iterable[str],
    *,
    hint: str | None = None,
    where: str | None = None,
) -> T:
    """Return ``value`` if it is one of ``allowed``, else raise a ParameterError naming it.

    ``hint`` is appended to the message (e.g. "see timm.list_models()"); ``where`` overrides
    the parameters file named in the fix.
    """
    allowed_list = [str(a) for a in allowed]
    if isinstance(value, str) and value in allowed_list:
        return value
    message = f"{value!r} is not allowed; {describe_choices(value, allowed_list, 'values')}"
    if hint:
        message = f"{message} ({hint})"
    raise ParameterError(parameter, message, where=where)


def check_keys(
    parameter: str,
    given: Mapping[str, Any],
    allowed: Iterable[str],
    *,
    required: Iterable[str] = (),
    hint: str | None = None,
    where: str | None = None,
) -> Mapping[str, Any]:
    """Return ``given`` if all its keys are allowed and all ``required`` keys are present.

    Unknown keys usually are typos (``lr`` for ``learning_rate``) that would otherwise be
    silently ignored, so they are an error with a close-match suggestion.
    """
    if not isinstance(given, Mapping):
        raise ParameterError(
            parameter, f"expected a mapping, got {type(given).__name__}", where=where
        )
    allowed_list = [str(a) for a in allowed]
    unknown = [k for k in given if k not in allowed_list]
    if unknown:
        details = "; ".join(
            f"{k!r}: {describe_choices(k, allowed_list, 'keys')}" for k in sorted(map(str, unknown))
        )
        suffix = f" ({hint})" if hint else ""
        raise ParameterError(parameter, f"unknown key(s) {details}{suffix}", where=where)
    missing = sorted(k for k in required if k not in given)
    if missing:
        raise ParameterError(
            parameter, f"missing required key(s): {', '.join(missing)}", where=where
        )
    return given


def check_range(
    parameter: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    where: str | None = None,
) -> float:
    """Return ``value`` if ``low <= value <= high`` (bounds optional), else raise ParameterError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(parameter, f"expected a number, got {value!r}", where=where)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ParameterError(parameter, f"{value!r} is outside {bounds}", where=where)
    return value


def check_int(
    parameter: str, value: Any, *, low: int | None = None, where: str | None = None
) -> int:
    """Return ``value`` as an int if it is an integer (not a bool) ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise ParameterError(parameter, f"expected an integer, got {value!r}", where=where)
    check_range(parameter, int(value), low=low, where=where)
    return int(value)


def check_size(
    parameter: str, value: Any, *, minimum: int = 1, where: str | None = None
) -> tuple[int, int]:
    """An image size given as one integer (square) or ``[height, width]``, as ``(h, w)``."""
    is_int = lambda v: not isinstance(v, bool) and hasattr(v, "__index__")  # noqa: E731
    if is_int(value):
        size = (int(value), int(value))
    elif (
        not isinstance(value, str | bytes)
        and hasattr(value, "__len__")
        and len(value) == 2
        and all(is_int(v) for v in value)
    ):
        size = (int(value[0]), int(value[1]))
    else:
        raise ParameterError(
            parameter, f"expected an integer or [height, width], got {value!r}", where=where
        )
    if min(size) < minimum:
        raise ParameterError(
            parameter, f"sides must be >= {minimum} pixels, got {value!r}", where=where
        )
    return size
