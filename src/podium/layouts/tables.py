"""Reading the competitions' csv files with errors that name the file and the fix."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd


def read_csv_with_columns(
    path: Path, required: Iterable[str], error: type[Exception] = ValueError
) -> pd.DataFrame:
    """``path`` as strings (no NaN for empty cells), header names stripped.

    Raises ``error`` naming the file when it cannot be parsed or lacks a required column,
    with the header it must have: the real files are edited by hand more often than not.
    """
    required = tuple(required)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise error(
            f"{path}: cannot be parsed as csv ({exc}); fix: restore it from the original data "
            f"(it must have the columns {', '.join(required)})"
        ) from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        found = ", ".join(repr(c) for c in table.columns) or "none"
        raise error(
            f"{path}: missing required column(s) {', '.join(repr(c) for c in missing)} "
            f"(found {found}); fix: the file must have a header row with the columns "
            f"{', '.join(required)} as in the competition's {path.name}"
        )
    return table
