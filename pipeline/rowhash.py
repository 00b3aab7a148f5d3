"""One 64-bit hash per table row: the exact-copy checks (privacy, generation) and the streamed
ingest's split and sample. Kept free of heavy imports: ingest's memory bound depends on it."""

from __future__ import annotations

import numpy as np
import pandas as pd


def row_hashes(df: pd.DataFrame, columns: list[str], key: str | None = None) -> np.ndarray:
    """One 64-bit hash per row over ``columns`` (nulls hash alike, so they match each other);
    ``key`` (16 characters) seeds it (default: pandas' fixed key)."""
    cols = {}
    for c in columns:
        # Normalise dtypes so that 3 (int64) and 3 (Int64) or 'a' (object/string) hash the same.
        s = df[c]
        if pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_float_dtype(s.dtype):
            cols[c] = s.astype("float64")
        elif pd.api.types.is_bool_dtype(s.dtype):
            cols[c] = s.astype(object)
        else:
            cols[c] = s.astype(object).where(s.notna(), None)
    frame = pd.DataFrame(cols, index=df.index)  # built once (setting columns one by one copies blocks)
    if key is None:
        return pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return pd.util.hash_pandas_object(frame, index=False, hash_key=key).to_numpy()
