"""Checked file readers: every problem is a DataError naming the file, column and first bad row.

Row numbers are 1-based data rows (the header, if any, is not counted).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.prepared import DataError


def read_table(
    path: str | os.PathLike[str],
    sep: str = ",",
    header: bool = True,
    names: list[str] | None = None,
    encoding: str = "utf-8",
    compression: str | None = "infer",
) -> pd.DataFrame:
    """Read a CSV/TSV (or parquet by suffix) as strings-or-numbers; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, None, "file not found")
    if p.stat().st_size == 0:
        raise DataError(p, None, "file is empty")
    try:
        if p.suffix == ".parquet":
            frame = pd.read_parquet(p)
        else:
            frame = pd.read_csv(
                p,
                sep=sep,
                header=0 if header else None,
                names=names,
                encoding=encoding,
                compression=compression,
                engine="python" if len(sep) > 1 else "c",
                dtype=str,
                keep_default_na=False,
            )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(p, None, f"cannot be parsed: {err}") from err
    if len(frame) == 0:
        raise DataError(p, None, "has a header but no rows")
    return frame


def require_columns(frame: pd.DataFrame, path: str | os.PathLike[str], columns: list[str]) -> None:
    for column in columns:
        if column not in frame.columns:
            raise DataError(path, column, f"column missing; the file has {list(frame.columns)}")


def numeric_column(
    frame: pd.DataFrame, path: str | os.PathLike[str], column: str, allow_missing: bool = False
) -> np.ndarray:
    """float64 values of ``column``; a non-number or (unless allowed) an empty cell is an error."""
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.to_numpy(np.float64)
        bad_text = np.zeros(len(raw), dtype=bool)
    else:
        text = raw.astype(str).str.strip()
        values = pd.to_numeric(text.where(text != "", None), errors="coerce").to_numpy(np.float64)
        bad_text = (text != "").to_numpy() & np.isnan(values)
    if bad_text.any():
        row = int(np.flatnonzero(bad_text)[0])
        raise DataError(path, column, f"row {row + 1}: {raw.iloc[row]!r} is not a number")
    if not allow_missing and np.isnan(values).any():
        row = int(np.flatnonzero(np.isnan(values))[0])
        raise DataError(path, column, f"row {row + 1}: missing value (NaN)")
    return values


def id_column(frame: pd.DataFrame, path: str | os.PathLike[str], column: str) -> np.ndarray:
    """Stripped string ids of ``column``; an empty or missing (NaN/None) cell is an error."""
    raw = frame[column]
    text = raw.astype(str).str.strip()
    bad = (raw.isna() | (text == "")).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(path, column, f"row {row + 1}: missing value (NaN)")
    return text.to_numpy()


def timestamp_column(frame: pd.DataFrame, path: str | os.PathLike[str], column: str) -> np.ndarray:
    """int64 unix seconds from numbers (seconds) or datetime strings (naive ones read as UTC).

    The column's kind is what most of its cells are (numbers or datetime strings); the first
    cell that is not of that kind (including an empty one) is reported as the bad row.
    """
    raw = frame[column]
    text = raw.astype(str).str.strip()
    as_number = pd.to_numeric(text.where(text != "", None), errors="coerce")
    is_number = as_number.notna().to_numpy()
    if is_number.all():
        return np.floor(as_number.to_numpy(np.float64)).astype(np.int64)
    parsed = None
    if 2 * int(is_number.sum()) > is_number.shape[0]:
        bad = ~is_number  # a column of numbers with a few bad cells
    else:
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
        bad = parsed.isna().to_numpy()
    if parsed is None or bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(path, column, f"row {row + 1}: timestamp {raw.iloc[row]!r} does not parse")
    # whole seconds since the epoch, whatever the datetime resolution (pandas 3 uses us)
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.to_numpy(np.int64)
