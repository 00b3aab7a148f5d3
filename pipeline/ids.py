"""Identifier columns: what generation needs to know of the real IDs, and fresh IDs made from it.

An ``id`` column is not learned by the model: generation makes fresh values, and none may be a
real one. ``id_stats`` (at ingest, into schema.json) records the real values' format
(``ORD-00102326``: the text ``ORD-`` and an 8-digit counter; UUIDs; e-mail addresses) with the
counter's largest real value, and, for a key that repeats across rows (a customer id on orders),
how many keys have 1, 2, ... rows. ``fresh_ids`` makes values in that format whose counter lies
above every real one, so none can equal a real ID, and draws keys with the real rows-per-key
counts. No real ID is stored. Old schemas without a format keep ``syn-<n>`` text.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

LEARN_VALUES = 10_000  # distinct values the format is read from (the counter's maximum: all of them)
MAX_CHOICES = 32  # a varying letters part with at most this many spellings is drawn from them
_TOKEN = re.compile(r"\d+|[A-Za-z]+|[^A-Za-z\d]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
EMAIL_DOMAIN = "example.invalid"  # reserved (RFC 2606): no real mailbox


def looks_like_id_values(values: pd.Series) -> bool:
    """Text whose values are all UUIDs or e-mail addresses (a sample of them is read)."""
    text = values.dropna().astype(str).head(1_000)
    return bool(len(text)) and any(text.str.fullmatch(p.pattern).all() for p in (_UUID, _EMAIL))


def id_stats(series: pd.Series) -> dict[str, Any]:
    """What schema.json keeps of an ID column: ``max`` (integers: fresh ones start above it),
    ``format`` (text: see ``learn_format``; none when the values share no format) and ``per_key``
    ([[rows, keys], ...] when a value repeats)."""
    values = series.dropna()
    stats: dict[str, Any] = {}
    if pd.api.types.is_integer_dtype(series.dtype):
        stats["max"] = int(values.max())
    else:
        fmt = learn_format(values.astype(str))
        if fmt is not None:
            stats["format"] = fmt
    counts = values.value_counts(sort=False)
    if len(counts) and counts.max() > 1:
        per_key = counts.value_counts().sort_index()
        stats["per_key"] = [[int(rows), int(keys)] for rows, keys in per_key.items()]
    return stats


def learn_format(values: pd.Series) -> dict[str, Any] | None:
    """The format shared by text IDs, or None when they share none.

    ``{"type": "uuid"}``, ``{"type": "email"}`` or ``{"type": "pattern", "parts": [...], "counter":
    i, "min": a, "max": b}``: the parts in order, each ``["text", s]`` (the same in every value),
    ``["digits", lo, hi]``, ``["hex", lo, hi, upper]`` or ``["letters", lo, hi, case, choices]``
    (widths ``lo`` to ``hi``); part ``counter`` (the last varying digits or hex part) numbers fresh
    IDs outside ``a .. b``, the range it spans in the real values (``counter_number``)."""
    distinct = pd.Series(values.unique())
    if not len(distinct):
        return None
    sample = distinct.head(LEARN_VALUES)
    if sample.str.fullmatch(_UUID.pattern).all():
        return {"type": "uuid", "upper": bool(sample.str.contains("[A-F]").any())}
    if sample.str.fullmatch(_EMAIL.pattern).all():
        return {"type": "email"}
    parts = _token_parts(sample)
    if parts is None:  # hex digests ('3fa9c0', 'a3f90c'): the same width, no fixed layout of letters
        width = sample.str.len()
        if not (sample.str.fullmatch(_HEX.pattern).all() and width.nunique() == 1):
            return None
        parts = [["hex", int(width.iloc[0]), int(width.iloc[0]), bool(sample.str.contains("[A-F]").any())]]
    counter = max((i for i, p in enumerate(parts) if p[0] in ("digits", "hex")), default=None)
    if counter is None:
        return None
    found = counter_values(distinct, parts, counter)
    return {"type": "pattern", "parts": parts, "counter": counter,
            "min": int(found.min()) if len(found) else 0, "max": int(found.max()) if len(found) else -1}


def _token_parts(sample: pd.Series) -> list | None:
    """The parts every value splits into (runs of digits, of letters, of anything else), or None."""
    tokens = [_TOKEN.findall(v) for v in sample]
    if len({len(t) for t in tokens}) != 1:
        return None
    parts = []
    for column in zip(*tokens):
        kinds = {_token_kind(t) for t in column}
        if len(kinds) != 1:
            return None
        kind, spellings, widths = kinds.pop(), set(column), [len(t) for t in column]
        if len(spellings) == 1:
            parts.append(["text", column[0]])
        elif kind == "digits":
            parts.append(["digits", min(widths), max(widths)])
        elif kind == "letters":
            case = ("upper" if all(t.isupper() for t in column) else
                    "lower" if all(t.islower() for t in column) else "mixed")
            parts.append(["letters", min(widths), max(widths), case,
                          sorted(spellings) if len(spellings) <= MAX_CHOICES else []])
        else:
            return None  # varying punctuation: no one format
    return parts


def counter_values(values: pd.Series, parts: list, counter: int) -> pd.Series:
    """The counter of every value in the format's shape with any widths (those that are not drop
    out): fresh counters above all of them cannot make a real value, even one wider than the rest."""
    loose = {"digits": r"\d+", "hex": "[0-9a-fA-F]+", "letters": "[A-Za-z]+"}
    regex = "".join(f"({loose[p[0]]})" if i == counter else re.escape(p[1]) if p[0] == "text" else loose[p[0]]
                    for i, p in enumerate(parts))
    found = values.astype(str).str.extract(f"^{regex}$", expand=False).dropna()
    base = 16 if parts[counter][0] == "hex" else 10
    return found.map(lambda s: int(s, base))


def _token_kind(token: str) -> str:
    return "digits" if token.isdigit() else "letters" if token.isalpha() and token.isascii() else "other"


def key_of_rows(per_key: list | None, start: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """The key number of each of rows ``start .. start+n``: the row's own number for a unique ID;
    for a repeating one, keys drawn with the real rows-per-key counts, their rows in a seeded order.
    A shard's keys are numbered within its own rows' range, so shards never share a key."""
    if not per_key or n == 0:
        return np.arange(start, start + n, dtype=np.int64)
    rows, keys = np.array(per_key, dtype=np.int64).T
    counts = rng.choice(rows, size=n, p=keys / keys.sum())  # n keys always cover n rows
    ends = np.cumsum(counts)
    used = int(np.searchsorted(ends, n)) + 1
    counts = counts[:used]
    counts[-1] -= int(ends[used - 1]) - n
    return start + rng.permutation(np.repeat(np.arange(used, dtype=np.int64), counts))


def format_ids(fmt: dict[str, Any] | None, keys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Text IDs for distinct key numbers ``keys``, in ``fmt`` (``syn-<key>`` without one)."""
    kind = (fmt or {}).get("type")
    if kind == "uuid":
        raw = rng.integers(0, 256, size=(len(keys), 16), dtype=np.uint8)
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
        text = [b.tobytes().hex() for b in raw]
        out = [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in text]
        return np.array([v.upper() for v in out] if fmt.get("upper") else out, dtype=object)
    if kind == "email":
        return np.array([f"user{k + 1}@{EMAIL_DOMAIN}" for k in keys], dtype=object)
    if kind != "pattern":
        return np.array([f"syn-{k:09d}" for k in keys], dtype=object)
    pieces = []
    for i, part in enumerate(fmt["parts"]):
        if i == fmt["counter"]:
            number = [counter_number(fmt, k) for k in keys.tolist()]
            if part[0] == "hex":
                width, upper = part[1], part[3]
                pieces.append([(f"{v:X}" if upper else f"{v:x}").zfill(width) for v in number])
            else:
                pieces.append([str(v).zfill(part[1]) for v in number])
        elif part[0] == "text":
            pieces.append([part[1]] * len(keys))
        else:
            pieces.append(_random_part(part, len(keys), rng))
    return np.array(["".join(p) for p in zip(*pieces)], dtype=object)


def counter_number(fmt: dict[str, Any], key: int) -> int:
    """The counter of fresh ID number ``key``: above every real one while it fits the widest real
    width, then below every real one, then above again, wider: never a real counter. (A Python int:
    a counter may pass 64 bits.)"""
    part = fmt["parts"][fmt["counter"]]
    top = (16 if part[0] == "hex" else 10) ** part[2] - 1  # the largest counter of the widest width
    above, below = max(0, top - fmt["max"]), fmt.get("min", 0)
    if key < above:
        return fmt["max"] + 1 + key
    if key < above + below:
        return fmt["min"] - 1 - (key - above)
    return max(fmt["max"], top) + 1 + key - above - below


def _random_part(part: list, n: int, rng: np.random.Generator) -> list[str]:
    """A part that is not the counter, drawn in its shape: its spellings, or random characters."""
    if part[0] == "letters" and part[4]:
        return list(np.asarray(part[4], dtype=object)[rng.integers(0, len(part[4]), n)])
    if part[0] == "digits":
        alphabet = "0123456789"
    elif part[0] == "hex":
        alphabet = "0123456789ABCDEF" if part[3] else "0123456789abcdef"
    else:
        alphabet = {"upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "lower": "abcdefghijklmnopqrstuvwxyz"}.get(
            part[3], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    widths = rng.integers(part[1], part[2] + 1, n)
    chars = np.array(list(alphabet))[rng.integers(0, len(alphabet), (n, int(part[2])))]
    return ["".join(row[:w]) for row, w in zip(chars, widths)]


def fresh_ids(col, start: int, n: int, rng: np.random.Generator) -> pd.Series:
    """IDs for rows ``start .. start+n`` of the whole output, none a real one: integers above every
    real ID, or text in the real values' format (``syn-<n>`` without one). A repeating key repeats
    (``per_key``); nulls come at the real rate."""
    stats = col.stats or {}
    keys = key_of_rows(stats.get("per_key"), start, n, rng)
    if col.dtype.lower().startswith(("int", "uint")):
        values = pd.Series(keys + 1 + int(stats.get("max", 0)), dtype=col.dtype)
    else:
        distinct, where = np.unique(keys, return_inverse=True)
        values = pd.Series(format_ids(stats.get("format"), distinct, rng)[where], dtype=object)
    if col.null_rate:  # None: a private model's schema, which keeps no rate
        if values.dtype.kind in "iu":  # int64 -> Int64: a plain integer column cannot hold a null
            values = values.astype(values.dtype.name.capitalize().replace("Uint", "UInt"))
        values = values.mask(rng.random(n) < col.null_rate)
    return values


def cover(stats: dict[str, Any], values: pd.Series) -> None:
    """Raise the largest real ID in ``stats`` (``id_stats``) to cover ``values`` too (a separate
    holdout's), so that no fresh ID equals one of them either."""
    values = values.dropna()
    fmt = stats.get("format") or {}
    if "max" in stats and len(values) and pd.api.types.is_integer_dtype(values.dtype):
        stats["max"] = max(stats["max"], int(values.max()))
    elif fmt.get("type") == "pattern":
        found = counter_values(values, fmt["parts"], fmt["counter"])
        if len(found):
            fmt["min"], fmt["max"] = min(fmt.get("min", 0), int(found.min())), max(fmt["max"], int(found.max()))
