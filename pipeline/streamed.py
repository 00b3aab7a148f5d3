"""Ingest of a table too big for one frame: its files read in record batches, twice, never whole.

A table source's files (one file, a folder, a glob, partitions: ``pipeline.sources.source_parts``)
are read into one frame up to ``ingest.stream_rows`` rows. Above that, ``run`` streams them:

1. **Pass 1** hashes every raw row (``row_hashes`` under a key made from the seed). The hash decides
   the holdout (a row is held out when a mix of it falls below ``holdout_fraction``), so the split
   depends on the rows alone, not on how the files are cut or batched, and duplicate rows fall on
   the same side. A second mix of it is each row's priority: the ``ingest.sample_rows`` training
   rows (and holdout rows) of lowest priority are a uniform seeded sample, kept in source order.
2. The kinds are inferred and the value links found on a seeded ``INFER_ROWS`` of that sample, which
   is then typed whole (``pipeline.typed.prepare``, as for a small table).
3. **Pass 2** casts each batch to the schema (``pipeline.typed.cast_batch``: a value that does not
   fit the kind inferred from the sample is one error naming the file and column), writes it as
   shards (``prepared/train/``, ``prepared/holdout/``), and counts exactly: rows, nulls, min, max,
   mean, and the values of categorical, boolean and integer columns. A link contradicted by any
   row is dropped.

``prepared/train.parquet`` and ``holdout.parquet`` hold the samples: what training (the transformer's
quantile knots and the model), generation's copy check and scoring read, so every stage after
ingest holds at most ``sample_rows`` real rows whatever the source's size. The knots are quantiles
of the uniform sample, so by the Dvoretzky-Kiefer-Wolfowitz inequality each knot's rank in the whole
training split is within ``quantile_rank_error`` (recorded in ``schema.json``) of its level with
probability 99.9%. Peak memory grows with ``batch_rows`` and ``sample_rows``, not with the source.
"""

from __future__ import annotations

import hashlib
import logging
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import cancel
from pipeline.errors import InputDataError
from pipeline.ids import counter_values
from pipeline.schema import DISCRETE_KINDS, TableSchema
from pipeline.sources import batches, partition_root, source_hash, source_parts, total_rows
from pipeline.stores import is_url, local_path, location, one_line, open_store
from pipeline.typed import cast_batch, conform, prepare

log = logging.getLogger(__name__)

COUNT_CAP = 100_000  # distinct values counted exactly per column; past it n_unique is the sample's
CONFIDENCE = 0.999  # of the stated quantile rank error
SAMPLE_ROW_GROUP = 65_536  # rows per row group of the training sample's file
INFER_ROWS = 100_000  # rows of the sample (its lowest priorities) the kinds and links are found on
CHANGED = "changed while it was being read; run ingest again"


# ---------------------------------------------------------------------------------------------
# When a source is streamed


def streamed_rows(cfg, ds, parts: list, folder: Path) -> int | None:
    """The source's row count when it is to be streamed (more than ``ingest.stream_rows``), else None.
    A lone file that cannot be counted is left to the whole-frame reader, whose errors name why."""
    if not parts or (len(parts) == 1 and not is_url(parts[0])
                     and not (Path(parts[0]).is_file() and Path(parts[0]).stat().st_size > 0)):
        return None
    try:
        rows = total_rows(parts, ds, folder)
    except (InputDataError, OSError, EOFError, ValueError):
        if len(parts) == 1:
            return None
        raise
    return rows if rows > cfg.ingest.stream_rows else None


# ---------------------------------------------------------------------------------------------
# Hashes, the split and the sample


def _hash_key(seed: int) -> str:
    """The 16-character key of pandas' row hash, from the seed."""
    return hashlib.blake2b(f"synthfactory-rows:{seed}".encode(), digest_size=8).hexdigest()


def _mix(h: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``h ^ salt``: independent uniform 64-bit values from one row hash."""
    with np.errstate(over="ignore"):
        z = h ^ np.uint64(salt * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def split_and_priority(raw: pd.DataFrame, seed: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(held out?, sampling priority) of each raw row, from its values alone."""
    from pipeline.rowhash import row_hashes

    h = row_hashes(raw, list(raw.columns), key=_hash_key(seed))
    bound = np.uint64(min(int(fraction * 2.0**64), 2**64 - 1))
    return _mix(h, 1) < bound, _mix(h, 2)


class BottomK:
    """The ``k`` rows of lowest priority among all offered (ties by position): a uniform sample
    that is the same whatever the batches, returned in source order."""

    def __init__(self, k: int):
        self.k = k
        self.frames: list[pd.DataFrame] = []
        self.prio: list[np.ndarray] = []
        self.pos: list[np.ndarray] = []
        self.held = 0
        self.bound: int | None = None  # the k-th lowest priority so far (once k are held)

    def offer(self, frame: pd.DataFrame, prio: np.ndarray, pos: np.ndarray) -> None:
        if self.bound is not None:
            keep = prio <= self.bound
            frame, prio, pos = frame[keep], prio[keep], pos[keep]
        if len(frame):
            self.frames.append(frame.reset_index(drop=True))
            self.prio.append(prio)
            self.pos.append(pos)
            self.held += len(frame)
        if self.held > 2 * self.k:
            self._compact()

    def _compact(self) -> None:
        frame = pd.concat(self.frames, ignore_index=True)
        prio, pos = np.concatenate(self.prio), np.concatenate(self.pos)
        if len(frame) > self.k:
            pick = np.lexsort((pos, prio))[:self.k]
            frame, prio, pos = frame.iloc[pick].reset_index(drop=True), prio[pick], pos[pick]
            self.bound = int(prio.max())
        self.frames, self.prio, self.pos, self.held = [frame], [prio], [pos], len(frame)

    def frame(self, like: pd.DataFrame) -> pd.DataFrame:
        if not self.frames:
            return like.iloc[:0].copy()
        self._compact()
        order = np.argsort(self.pos[0], kind="stable")
        self.prio, self.pos = [self.prio[0][order]], [self.pos[0][order]]
        self.frames = [self.frames[0].iloc[order].reset_index(drop=True)]
        return self.frames[0]

    def lowest(self, n: int) -> np.ndarray:
        """Positions, in ``frame()``'s order, of its ``n`` rows of lowest priority (a seeded
        subsample of the sample), ascending."""
        prio = self.prio[0] if self.prio else np.zeros(0, np.uint64)
        return np.sort(np.lexsort((self.pos[0], prio))[:n]) if len(prio) else np.zeros(0, np.int64)


def quantile_rank_error(m: int, confidence: float = CONFIDENCE) -> float:
    """DKW: sup |F_sample - F| <= eps with probability ``confidence`` for a sample of ``m`` rows."""
    return math.sqrt(math.log(2.0 / (1.0 - confidence)) / (2.0 * m)) if m else 1.0


# ---------------------------------------------------------------------------------------------
# Pass 2: exact statistics


class ColumnCounts:
    """Exact statistics of the typed columns, merged batch by batch: what ``schema.describe``
    computes on a whole frame."""

    def __init__(self, schema: TableSchema):
        self.schema = schema
        self.rows = 0
        self.nulls = {c.name: 0 for c in schema.columns}
        self.lo: dict[str, object] = {}
        self.hi: dict[str, object] = {}
        self.sum = {c.name: 0.0 for c in schema.columns}
        self.count = {c.name: 0 for c in schema.columns}
        # A repeating ID's keys too: its rows-per-key counts (ids.id_stats) over every row.
        self.values: dict[str, dict | None] = {c.name: {} for c in schema.columns
                                               if c.kind in (*DISCRETE_KINDS, "integer") or "per_key" in c.stats}

    def add(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        for col in self.schema.columns:
            s = frame[col.name]
            v = s.dropna()
            self.nulls[col.name] += len(s) - len(v)
            if not len(v):
                continue
            if col.kind in ("continuous", "integer", "datetime") or (col.kind == "id" and
                                                                     pd.api.types.is_integer_dtype(s.dtype)):
                lo, hi = v.min(), v.max()
                self.lo[col.name] = lo if col.name not in self.lo else min(self.lo[col.name], lo)
                self.hi[col.name] = hi if col.name not in self.hi else max(self.hi[col.name], hi)
                if col.kind in ("continuous", "integer"):
                    self.sum[col.name] += float(v.astype(float).sum())
                    self.count[col.name] += len(v)
            elif col.kind == "id" and col.stats.get("format", {}).get("type") == "pattern":
                # The counter's range over every row: fresh IDs lie outside it (ids.counter_number).
                fmt = col.stats["format"]
                found = counter_values(v, fmt["parts"], fmt["counter"])
                if len(found):
                    self.lo[col.name] = min(self.lo.get(col.name, fmt["min"]), int(found.min()))
                    self.hi[col.name] = max(self.hi.get(col.name, fmt["max"]), int(found.max()))
            counts = self.values.get(col.name)
            if counts is not None:
                for value, n in v.value_counts(sort=False).items():
                    counts[value] = counts.get(value, 0) + int(n)
                if len(counts) > COUNT_CAP:
                    self.values[col.name] = None  # n_unique: the sample's (a lower bound)

    def apply(self) -> None:
        """Put the exact figures into the schema's columns (as ``describe`` words them)."""
        for col in self.schema.columns:
            name = col.name
            col.null_rate = self.nulls[name] / self.rows if self.rows else 0.0
            counts = self.values.get(name)
            if counts is not None:
                col.n_unique = len(counts)
            if col.kind in ("continuous", "integer") and name in self.lo:
                col.stats = {"min": float(self.lo[name]), "max": float(self.hi[name]),
                             "mean": self.sum[name] / self.count[name]}
            elif col.kind == "datetime" and name in self.lo:
                col.stats = {**col.stats, "min": str(self.lo[name]), "max": str(self.hi[name])}
            elif col.kind == "id":
                if counts is not None and "per_key" in col.stats:
                    per_key = pd.Series(counts).value_counts().sort_index()
                    col.stats["per_key"] = [[int(r), int(k)] for r, k in per_key.items()]
                if name in self.hi and "format" in col.stats:
                    col.stats["format"].update(min=int(self.lo[name]), max=int(self.hi[name]))
                elif name in self.hi:
                    col.stats = {**col.stats, "max": int(self.hi[name])}
            elif col.kind in DISCRETE_KINDS and counts is not None:
                top = pd.Series(counts).sort_values(ascending=False, kind="stable").head(5)
                col.stats = {"top": {str(k): int(c) for k, c in top.items()}}


def write_prepared_shard(frame: pd.DataFrame, schema: TableSchema, folder: Path, index: int) -> None:
    table = pa.Table.from_pandas(frame, schema=schema.arrow(), preserve_index=False)
    pq.write_table(table, folder / f"part-{index:05d}.parquet")


# ---------------------------------------------------------------------------------------------
# The streamed ingest


def fingerprint(parts: list) -> list[tuple | None]:
    """What tells that the source's files are still the ones read, without reading them again: a
    local file's size, modification time and inode (a file replaced by a rename is another inode);
    an object's size, ETag, version and modification time as its store reports them. None: gone."""
    prints: list[tuple | None] = []
    for part in parts:
        if not is_url(part):
            try:
                st = local_path(part).stat()
            except FileNotFoundError:
                prints.append(None)
                continue
            prints.append((st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev))
            continue
        try:
            fs, path = open_store(str(part))
            info = fs.info(path)
        except FileNotFoundError:
            prints.append(None)
            continue
        except Exception as exc:  # the store's own errors (credentials, network)
            raise InputDataError(part, f"cannot be read: {one_line(exc)}") from exc
        # s3: ETag, LastModified, VersionId; gcs: etag, generation, updated; azure: etag, last_modified
        prints.append(tuple(str(info.get(k)) for k in ("size", "ETag", "etag", "md5Hash", "VersionId", "generation",
                                                       "mtime", "LastModified", "last_modified", "updated", "created")))
    return prints


@contextmanager
def unchanged(parts: list) -> Iterator[Callable[[], None]]:
    """Guard a block that reads ``parts`` several times (pass 1, pass 2, the hash): yields a check to
    call between reads, and checks again at the end and on any error. A file replaced meanwhile
    would give rows and statistics of two different files and a ``source_hash`` of bytes never
    ingested: it is one InputDataError naming the file, and the caller writes nothing."""
    before = fingerprint(parts)

    def check() -> None:
        for part, was, now in zip(parts, before, fingerprint(parts)):
            if now != was:
                raise InputDataError(part, CHANGED)

    try:
        yield check
    except Exception as exc:
        if not (isinstance(exc, InputDataError) and exc.reason == CHANGED):
            check()  # a change explains a failed read (a batch too many, a cast) better than its error
        raise
    check()


def run(cfg, dataset: str, parts: list, rows: int, tmp: Path, folder: Path) -> dict:
    """Stream the source ``parts`` (``rows`` in all, an upper bound for CSV) into the prepared folder
    ``tmp``; returns what ``schema.json`` records beyond the common keys, with the row counts, and
    ``hashes``: (``source_hash``, ``holdout_hash``) of the bytes read (the source unchanged from
    before pass 1 to after the hash, else one InputDataError)."""
    ds = cfg.dataset(dataset)
    hold_parts = source_parts(ds.holdout_source) if ds.holdout_source else []
    with unchanged(parts + hold_parts) as check:
        got = _stream(cfg, dataset, parts, hold_parts, rows, tmp, folder, check)
        got["hashes"] = (source_hash(parts, folder), source_hash(hold_parts, folder) if hold_parts else None)
    return got


def _stream(cfg, dataset: str, parts: list, hold_parts: list, rows: int, tmp: Path, folder: Path,
            check: Callable[[], None]) -> dict:
    """``run``'s two passes; ``check`` raises if a source file changed since pass 1 began."""
    from pipeline.progress import Progress

    ds, ic, seed = cfg.dataset(dataset), cfg.ingest, cfg.seed
    source = location(ds.source)  # a URL as written (errors name it), else a Path
    root = partition_root(source)
    hold_rows = total_rows(hold_parts, ds, folder) if hold_parts else 0
    fraction = 0.0 if hold_parts else ic.holdout_fraction
    train_keep, hold_keep = BottomK(ic.sample_rows), BottomK(ic.sample_rows)
    held: list[np.ndarray] = []  # pass 1's split, one packed array per batch, for pass 2
    sizes: list[int] = []  # pass 1's batch lengths: pass 2 must see the same batches
    first = None
    with Progress("ingest", 2 * rows + hold_rows, "row") as bar:
        bar.now("pass 1 of 2: hashing rows, drawing the sample")
        pos = 0
        for _, raw in batches(parts, root, ds, ic.batch_rows, folder, dataset):
            if first is None:
                first = raw.iloc[:0].copy()
                first.attrs = dict(raw.attrs)
            dropped = [c for c in ds.drop_columns if c in raw.columns]
            hashed = raw.drop(columns=dropped) if dropped else raw
            hold, prio = split_and_priority(hashed, seed, fraction)
            at = np.arange(pos, pos + len(raw))
            train_keep.offer(raw[~hold], prio[~hold], at[~hold])
            hold_keep.offer(raw[hold], prio[hold], at[hold])
            held.append(np.packbits(hold))
            sizes.append(len(raw))
            pos += len(raw)
            bar.advance(len(raw), rows=len(raw))
            cancel.check()
        if first is None:
            raise InputDataError(source, "has no rows")
        raw_sample = train_keep.frame(first)
        if len(raw_sample) < 2:
            raise InputDataError(source, f"only {len(raw_sample)} training rows: too few to train on")
        raw_sample.attrs = first.attrs
        sample, schema = prepare(raw_sample, source, ds, infer_on=train_keep.lowest(INFER_ROWS)
                                 if len(raw_sample) > INFER_ROWS else None, dataset=dataset)
        check()
        bar.now("pass 2 of 2: typing, counting, writing shards")
        counts = ColumnCounts(schema)
        links = list(schema.links)
        (tmp / "train").mkdir()
        (tmp / "holdout").mkdir()
        train_rows = holdout_rows = shard = 0
        for i, (part, raw) in enumerate(batches(parts, root, ds, ic.batch_rows, folder, dataset)):
            if i >= len(sizes) or len(raw) != sizes[i]:
                check()
                raise InputDataError(part, CHANGED)
            hold = np.unpackbits(held[i], count=len(raw)).astype(bool)
            frame = cast_batch(raw, schema, ds, part, dataset, len(sample))
            counts.add(frame)
            links = [k for k in links if not _broken(k, frame, part)]
            for rows_of, where in ((~hold, "train"), (hold, "holdout")):
                if rows_of.any():
                    write_prepared_shard(frame[rows_of].reset_index(drop=True), schema, tmp / where, shard)
            shard += 1
            train_rows += int((~hold).sum())
            holdout_rows += int(hold.sum())
            bar.advance(len(raw), rows=len(raw))
            cancel.check()
        if shard != len(sizes):
            check()
            raise InputDataError(source, CHANGED)
        if hold_parts:  # a separate holdout source: streamed too, sampled the same way
            pos = 0
            for part, raw in batches(hold_parts, partition_root(ds.holdout_source), ds, ic.batch_rows, folder, dataset):
                frame = cast_batch(raw, schema, ds, part, dataset, len(sample))
                _, prio = split_and_priority(frame, seed, 0.0)
                hold_keep.offer(frame, prio, np.arange(pos, pos + len(raw)))
                write_prepared_shard(frame, schema, tmp / "holdout", shard)
                shard += 1
                pos += len(raw)
                holdout_rows += len(raw)
                bar.advance(len(raw), rows=len(raw))
                cancel.check()
    counts.apply()
    schema.links = links
    holdout = hold_keep.frame(sample.iloc[:0] if hold_parts else first)
    if not hold_parts:
        holdout = conform(holdout, source, schema, ds) if len(holdout) else sample.iloc[:0].copy()
    # Row groups of SAMPLE_ROW_GROUP rows: a torchrun rank reads only the groups that hold its share.
    sample.to_parquet(tmp / "train.parquet", index=False, row_group_size=SAMPLE_ROW_GROUP)
    holdout.to_parquet(tmp / "holdout.parquet", index=False)
    return {"rows": train_rows, "holdout_rows": holdout_rows, "schema": schema, "streamed": {
        "files": len(parts), "batch_rows": ic.batch_rows, "shards": shard,
        "sample_rows": len(sample), "holdout_sample_rows": len(holdout),
        "split": "by a seeded hash of each row's values" if not hold_parts else "holdout_source",
        "quantile_rank_error": round(quantile_rank_error(len(sample)), 6), "confidence": CONFIDENCE}}


def _broken(link: dict, frame: pd.DataFrame, part: str) -> bool:
    from pipeline.links import contradicted

    if contradicted(frame, link):
        log.info("link %s -> %s does not hold in every row (%s): not kept", link["from"], link["to"], part)
        return True
    return False
