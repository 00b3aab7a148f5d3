"""Drawing rows and images from a loaded model, from explicit seeds alone.

The sampler that the generate stage, its shard workers (``pipeline.shards``), the Python API
(``pipeline.generate.sample``) and the benchmarks share. Every function depends only on its
arguments (the model, a count, a seed), so shard ``i`` drawn with ``shard_seed(seed, i)`` has the
same rows in any process. No files and no config here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from pipeline.constraints import REDRAWS, kept, parse_all, repair
from pipeline.errors import ConditionError
from pipeline.ids import fresh_ids
from pipeline.links import apply_links
from pipeline.models.image import ImageSpec
from pipeline.rowhash import row_hashes
from pipeline.schema import BOOLEAN_SPELLINGS, TableSchema, read_bool

if TYPE_CHECKING:  # sampling needs no pydantic: it runs on a bare GPU box (benchmarks/gpu_check.py)
    from pipeline.models.saved import LoadedModel
    from pipeline.protection import Protection

# The stream of a draw's seed that value protection's redraws come from: a draw's own bytes stay
# the same whether protection is on or off.
_PROTECTION_STREAM = 1


def shard_seed(seed: int, shard: int) -> int:
    """A seed for shard ``shard`` that depends on nothing else (63-bit, via SeedSequence)."""
    return int(np.random.SeedSequence([seed, shard]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _draw(loaded: LoadedModel, n: int, seed: int, condition: tuple[int, int] | None,
          protection: Protection | None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """``n`` rows of the modelled columns, and (with ``protection``) what it changed in them."""
    device = next(loaded.model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    raw = loaded.model.sample(n, gen, condition).float().cpu().numpy()
    frame = loaded.transformer.inverse_transform(raw, np.random.default_rng(seed))
    links, dtypes = loaded.schema.links, {c.name: c.dtype for c in loaded.schema.columns}
    frame = apply_links(frame, links, dtypes) if links else frame
    if protection is None:
        return frame, None
    frame, marks = protection.apply(frame, np.random.default_rng([seed, _PROTECTION_STREAM]))
    # Again after protection: a redrawn category sets the columns it determines (a linked column's
    # value is rare only where its determining one is, so protection left no other link broken).
    return (apply_links(frame, links, dtypes) if links else frame), marks


def _matches(frame: pd.DataFrame, conditions: dict[str, Any]) -> np.ndarray:
    keep = np.ones(len(frame), dtype=bool)
    for col, value in conditions.items():
        s = frame[col]
        keep &= s.isna().to_numpy() if value is None else (s.astype(str) == str(value)).to_numpy()
    return keep


def sample_frame(loaded: LoadedModel, n: int, seed: int, start: int = 0,
                 conditions: dict[str, Any] | None = None, exclude: np.ndarray | None = None,
                 max_tries: int = 100, stats: dict[str, int] | None = None,
                 protection: Protection | None = None) -> pd.DataFrame:
    """``n`` synthetic rows in the source's column order and dtypes, from ``seed`` alone.

    ``conditions`` ({column: value}, categorical or boolean columns) fixes values: a conditional
    model is steered to the first one, and rows that miss any are rejected and redrawn, so every
    returned row honours all of them. ``exclude`` (row hashes of the modeled columns, as
    ``pipeline.metrics.privacy.row_hashes`` makes them) rejects and redraws rows equal to any of
    those rows: the training rows, so that no released row copies one. The schema's constraints
    (``ship_date >= order_date``, ``pipeline.constraints``) hold in every row: rows that break one
    are redrawn in the first ``REDRAWS`` draws and repaired in later ones. ``stats`` (if given)
    counts the rows ``drawn`` and ``rejected_copies`` and, with constraints, the rows
    ``constraint_rows_redrawn`` (rejected for breaking one) and ``constraint_rows_repaired`` (of
    those returned). ``protection`` (``pipeline.protection``) is applied to every draw, so the
    conditions, the constraints and the copy check see protected rows; a condition on a value it
    withholds is refused; ``stats`` gets its counts of the rows returned.
    """
    stats = stats if stats is not None else {}
    stats.setdefault("drawn", 0)
    stats.setdefault("rejected_copies", 0)
    rules = parse_all(loaded.schema.constraints)
    conditions = {col: condition_value(loaded, col, v) for col, v in (conditions or {}).items()}
    for col, value in conditions.items() if protection else ():
        protection.check_condition(col, value)
    if not conditions and exclude is None and not rules:
        frame, marks = _draw(loaded, n, seed, None, protection)
        stats["drawn"] += n
    else:
        group = condition_group(loaded, conditions) if conditions else None
        modeled = [c.name for c in loaded.schema.modeled]
        grids = {name: loaded.transformer.grid(name) for r in rules for name in (r.left, r.right)}
        frozen = {link[end] for link in loaded.schema.links for end in ("from", "to")}  # a repair keeps links
        parts, fixed_parts, mark_parts = [], [], []
        have, loose, total, batch = 0, 0, 0, max(n, 256) if conditions else n
        for attempt in range(max_tries):
            # Without conditions the first draw is the unfiltered one, so filtering only removes rows.
            rows, marks = _draw(loaded, batch, seed if not conditions and attempt == 0 else shard_seed(seed, attempt),
                                group, protection)
            ok = _matches(rows, conditions or {})
            fixed = np.zeros(len(rows), dtype=bool)
            if rules:
                if attempt >= REDRAWS:  # redrawn long enough: what still breaks one is repaired
                    fixed = repair(rows, rules, grids, frozen)
                loose += int(ok.sum())
                good = kept(rows, rules)
                stats["constraint_rows_redrawn"] = stats.get("constraint_rows_redrawn", 0) + int((ok & ~good).sum())
                ok &= good
            if exclude is not None:  # after a repair, which may make a row a copy
                copies = np.isin(row_hashes(rows, modeled), exclude)
                stats["rejected_copies"] += int((copies & ok).sum())
                ok &= ~copies
            parts.append(rows[ok])
            fixed_parts.append(fixed[ok])
            if marks is not None:
                mark_parts.append(marks[ok])
            have, total = have + int(ok.sum()), total + batch
            stats["drawn"] += batch
            if have >= n:
                break
            # Draw enough for the rest at the acceptance rate seen so far, at most 4 shards' worth
            # (the rate before constraints once the next draw repairs instead of redrawing).
            rate = max(loose if rules and attempt + 1 >= REDRAWS else have, 1) / total
            batch = int(min(max((n - have) / rate * 1.2, 256), 4 * max(n, 256)))
        if have < n:
            what = " and ".join([f"met {conditions}"] * bool(conditions)
                                + ["differed from every training row"] * (exclude is not None)
                                + [f"kept the constraints {loaded.schema.constraints}"] * bool(rules))
            raise ConditionError(f"only {have} of {n} rows {what} after {max_tries} draws: "
                                 "the model rarely makes such rows")
        frame = pd.concat(parts, ignore_index=True).iloc[:n].reset_index(drop=True)
        marks = np.concatenate(mark_parts)[:n] if mark_parts else None
        if rules:
            stats["constraint_rows_repaired"] = (stats.get("constraint_rows_repaired", 0)
                                                 + int(np.concatenate(fixed_parts)[:n].sum()))
    if marks is not None:
        protection.count(marks, stats)
    schema: TableSchema = loaded.schema
    out = {}
    for i, col in enumerate(schema.columns):
        # IDs: fresh values in the real ones' format, none a real one (pipeline.ids), from the seed.
        out[col.name] = (fresh_ids(col, start, n, np.random.default_rng([seed, i])) if col.kind == "id"
                         else frame[col.name])
    return pd.DataFrame(out)


def condition_value(loaded: LoadedModel, col: str, value: Any) -> Any:
    """A condition's value as the column holds it: a boolean column's read as ingest reads a
    declared one (``--condition returned=true``, ``TRUE``, ``1``, ``yes``)."""
    if value is None or col not in loaded.schema.names or loaded.schema[col].kind != "boolean":
        return value
    parsed = read_bool(value)
    if parsed is None:
        raise ConditionError(f"condition on '{col}': {value!r} is not a boolean value; use {BOOLEAN_SPELLINGS}")
    return parsed


def condition_group(loaded: LoadedModel, conditions: dict[str, Any]) -> tuple[int, int]:
    """Check the conditions against the schema; the first one as (group index, slot) for the model."""
    first = None
    for col, value in conditions.items():
        if col not in loaded.schema.names:
            raise ConditionError(f"condition on '{col}': no such column")
        value = condition_value(loaded, col, value)
        try:
            span, slot = loaded.transformer.category_slot(col, value)
        except ValueError as exc:
            raise ConditionError(f"condition on '{col}': {exc}") from None
        if first is None:
            first = (loaded.model.layout.groups.index(span), slot)
    return first


# ---------------------------------------------------------------------------------------------
# Images


def label_plan(spec: ImageSpec, counts: np.ndarray, rows: int | None, mix: dict[int, float],
               per_label: int | None, seed: int) -> np.ndarray:
    """The label index of every image to make, in output order: exact counts for the mix (the
    training counts when ``mix`` is empty), by largest remainder, in a seeded order. It depends on
    nothing but its arguments, so any shard can be made alone."""
    if mix:
        unknown = sorted(set(mix) - set(spec.labels))
        if unknown:
            raise ConditionError(f"generate.labels: label {unknown[0]} is not one the model knows ({spec.labels})")
        weights = np.array([float(mix.get(v, 0.0)) for v in spec.labels])
        if (weights < 0).any() or weights.sum() <= 0:
            raise ConditionError(f"generate.labels: shares must be >= 0 and not all 0 (got {mix})")
    else:
        weights = np.asarray(counts, dtype=float)
    if per_label is not None:
        exact = np.where(weights > 0, per_label, 0)
    else:
        quota = weights / weights.sum() * rows
        exact = np.floor(quota).astype(np.int64)
        short = rows - int(exact.sum())
        exact[np.argsort(-(quota - exact), kind="stable")[:short]] += 1
    plan = np.repeat(np.arange(len(spec.labels)), exact)
    return plan[np.random.default_rng(seed).permutation(len(plan))]


def sample_images(loaded: LoadedModel, labels: np.ndarray, seed: int) -> np.ndarray:
    """[n, H, W] uint8 images for label indices ``labels``, from ``seed`` alone."""
    from pipeline.models.image import to_uint8

    device = next(loaded.model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    out = [to_uint8(loaded.model.sample(torch.from_numpy(labels[i:i + 4096]).to(device), gen))
           for i in range(0, len(labels), 4096)]
    return np.concatenate(out) if out else np.zeros((0, loaded.spec.height, loaded.spec.width), np.uint8)

