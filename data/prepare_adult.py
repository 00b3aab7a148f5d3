"""Rebuild data/adult/*.parquet from the UCI Adult CSV files (run once; the Parquet is committed).

    python data/prepare_adult.py ../shared/data/adult

The CSVs have no header, a space after each comma, '?' for missing values, and test labels that end
in '.'; the Parquet files have named columns, nulls for '?', and the same labels in both splits.
"""

import sys
from pathlib import Path

import pandas as pd

COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
    "income",
]


def convert(src: Path, dst: Path) -> None:
    df = pd.read_csv(src, header=None, names=COLUMNS, skipinitialspace=True, na_values=["?"],
                     keep_default_na=False, comment="|")
    df = df.dropna(how="all")
    df["income"] = df["income"].str.rstrip(".")
    for col in df.columns:
        if df[col].dtype == float and (df[col].dropna() % 1 == 0).all() and not df[col].isna().any():
            df[col] = df[col].astype("int64")
    df.to_parquet(dst, index=False, compression="zstd")
    print(f"{dst}: {len(df)} rows")


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/adult")
    out = Path(__file__).parent / "adult"
    out.mkdir(exist_ok=True)
    convert(root / "adult-train.csv", out / "train.parquet")
    convert(root / "adult-test.csv", out / "test.parquet")
