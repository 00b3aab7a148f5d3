"""Privacy: how many synthetic rows copy a training row exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd


def row_hashes(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One 64-bit hash per row over ``columns`` (nulls hash alike, so they match each other)."""
    frame = df[columns].copy()
    for c in columns:
        # Normalise dtypes so that 3 (int64) and 3 (Int64) or 'a' (object/string) hash the same.
        s = frame[c]
        if pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_float_dtype(s.dtype):
            frame[c] = s.astype("float64")
        elif pd.api.types.is_bool_dtype(s.dtype):
            frame[c] = s.astype(object)
        else:
            frame[c] = s.astype(object).where(s.notna(), None)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def exact_match_rate(train: pd.DataFrame, other: pd.DataFrame, columns: list[str]) -> float:
    """Share of rows of ``other`` that equal some training row on every one of ``columns``."""
    if len(other) == 0:
        return float("nan")
    return float(np.isin(row_hashes(other, columns), row_hashes(train, columns)).mean())
