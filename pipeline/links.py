"""Value links: a column whose value another column fixes in every real row (``education`` ->
``education-num`` in Adult, ``country`` -> ``continent``), found at ingest and kept in every
generated row.

A model learns such a link only approximately, and a synthetic row that breaks it (a ``Bachelors``
with 9 years of education) is both wrong and easy to detect. So ingest records, for each column
that another determines, the value pairs it saw; sampling sets the determined column from the
determining one (``apply_links``). Only categorical, boolean and integer columns take part, and a
determining column needs on average at least ``MIN_ROWS_PER_VALUE`` rows per value, so that a
near-unique column does not "determine" everything by chance. Of two columns that determine each
other, one is kept as the model made it (a categorical one before an integer one, then the first);
chains resolve to the column at their root.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

LINKABLE_KINDS = ("categorical", "boolean", "integer")
MAX_SOURCE_VALUES = 1000
MIN_ROWS_PER_VALUE = 5


def _plain(v: Any) -> Any:
    """A value as JSON keeps it (Python scalars; null as None)."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    return v.item() if isinstance(v, np.generic) else v


def _codes(s: pd.Series) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(s, use_na_sentinel=False)
    return codes.astype(np.int64), len(uniques)


def find_links(frame: pd.DataFrame, columns: list) -> list[dict]:
    """The links among ``columns`` (ColumnSchema of ``frame``'s modelled columns) that hold in every
    row of ``frame``: ``[{"from": A, "to": B, "pairs": [[a, b], ...]}, ...]``, B set from A."""
    cands = [c for c in columns if c.kind in LINKABLE_KINDS]
    if len(frame) == 0 or len(cands) < 2:
        return []
    codes = {c.name: _codes(frame[c.name]) for c in cands}
    n = len(frame)

    def determines(a: str, b: str) -> bool:
        (ca, ka), (cb, kb) = codes[a], codes[b]
        if ka > MAX_SOURCE_VALUES or ka * MIN_ROWS_PER_VALUE > n or kb < 2 or ka < 2:
            return False
        return len(np.unique(ca * kb + cb)) == ka

    names = [c.name for c in cands]
    kind = {c.name: c.kind for c in cands}
    det = {(a, b) for a in names for b in names if a != b and determines(a, b)}
    # Columns that determine each other are one class; its representative is kept as modelled.
    rep: dict[str, str] = {}
    for name in names:
        peers = [m for m in names if m == name or ((name, m) in det and (m, name) in det)]
        rep[name] = min(peers, key=lambda m: (kind[m] != "categorical", names.index(m)))
    # Roots: representatives no column determines strictly (one way only); every other column is
    # strictly determined by some root, so it is set from one.
    strict = {(a, b) for a, b in det if (b, a) not in det}
    roots = [a for a in names if rep[a] == a and not any((r, a) in strict for r in names)]
    links = []
    for b in names:
        if rep[b] != b:
            src = rep[b]
        else:
            sources = [a for a in roots if (a, b) in strict]
            if not sources:
                continue
            src = min(sources, key=lambda a: (codes[a][1], names.index(a)))  # the root with the fewest values
        pairs = frame[[src, b]].drop_duplicates(src)
        links.append({"from": src, "to": b,
                      "pairs": [[_plain(x), _plain(y)] for x, y in zip(pairs[src].astype(object),
                                                                       pairs[b].astype(object))]})
    # A link from a column that is itself set by another comes after that one's.
    derived = {link["to"] for link in links}
    return [k for k in links if k["from"] not in derived] + [k for k in links if k["from"] in derived]


def apply_links(frame: pd.DataFrame, links: list[dict], dtypes: dict[str, str]) -> pd.DataFrame:
    """``frame`` with every linked column set from its determining column where that value was
    seen (a value the source never had keeps the model's), in its dtype ``dtypes[column]``."""
    from pipeline.schema import nullable_dtype

    for link in links:
        lookup = {_key(a): b for a, b in link["pairs"]}
        # Looked up once per distinct value, not per row (this runs on every sampled shard).
        codes, uniques = pd.factorize(frame[link["from"]].astype(object), use_na_sentinel=False)
        mapped = np.array([lookup.get(_key(_plain(v)), _UNSEEN) for v in uniques], dtype=object)
        old = frame[link["to"]].astype(object).to_numpy()
        new = mapped[codes] if len(codes) else np.empty(0, dtype=object)
        unseen = np.fromiter((v is _UNSEEN for v in new), dtype=bool, count=len(new))
        new[unseen] = old[unseen]
        values = pd.Series(new, dtype=object)
        dtype = dtypes[link["to"]]
        frame[link["to"]] = values if dtype == "object" else values.astype(
            nullable_dtype(dtype) if values.isna().any() else dtype)
    return frame


class _Unseen:
    pass


_UNSEEN = _Unseen()


def _key(v: Any) -> Any:
    """A lookup key: booleans and integers from JSON and from pandas compare alike."""
    return ("b", v) if isinstance(v, (bool, np.bool_)) else v


def contradicted(frame: pd.DataFrame, link: dict) -> bool:
    """Whether some row of ``frame`` pairs a value the link knows with another value than the
    link's (a value the link never saw cannot be generated, so it contradicts nothing)."""
    lookup = {_key(a): b for a, b in link["pairs"]}
    seen = frame[[link["from"], link["to"]]].astype(object).drop_duplicates()
    for a, b in zip(seen[link["from"]], seen[link["to"]]):
        want = lookup.get(_key(_plain(a)), _UNSEEN)
        if want is not _UNSEEN and _key(want) != _key(_plain(b)):
            return True
    return False
