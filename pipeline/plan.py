"""What a run will do, checked before it spends an hour on it (``python -m pipeline validate``).

``plan`` resolves the config for one dataset, reads its source (and holdout) exactly as ingest will
(so any problem with the file is the same one-line error, now), and describes: the columns with
their kinds, nulls and distinct values, the target and its utility task, the value links kept, the
model and the rows to generate, the gate, and an estimate of the time and memory. Nothing is
written and nothing is trained: the time estimate is a few timed optimiser steps and one timed
sampling batch of the configured model on a sample of the rows, scaled to the run.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import Config
from pipeline.files import free_mb
from pipeline.modalities import modality_named
from pipeline.schema import TableSchema
from pipeline.settings import epochs_for
from pipeline.sources import total_rows
from pipeline.stores import is_url, local_copy, location
from pipeline.streamed import streamed_rows

ESTIMATE_ROWS = 5_000  # rows the transformer is fitted on for the estimate
TIMED_STEPS = 3  # optimiser steps timed per phase (after one untimed warm-up step)
# What scoring and its report load beyond torch and pandas (scikit-learn's models, matplotlib, the
# privacy distances' working set): measured on the default Adult run (peak RSS 1,044 MB, the data
# and model terms below 694 MB of it).
SCORE_LIBRARIES_MB = 350
# What a generate process holds beyond its imports before any row (the model and transformer, the
# allocator's and thread pools' first allocations): 130-200 MB measured (issue 31).
GENERATE_FIXED_MB = 150
LEADING_ROWS = 100_000  # rows of a streamed source that validate types (ingest: ingest.sample_rows)


def plan(cfg: Config, dataset: str, estimate: bool = True) -> dict[str, Any]:
    """The resolved run of ``dataset``: source, schema, target, model, generation, gate, estimate."""
    cfg = cfg.for_dataset(dataset)
    ds = cfg.dataset(dataset)
    handler = modality_named(ds.modality)
    source = location(ds.source)
    with tempfile.TemporaryDirectory(prefix="validate-") as tmp:
        parts = handler.source_parts(source)
        big = streamed_rows(cfg, ds, parts, Path(tmp))
        holdout_rows = None
        if big is not None:  # streamed by ingest: the kinds shown are those of the leading rows
            first = _leading(parts, source, ds, dataset, min(cfg.ingest.sample_rows, LEADING_ROWS), Path(tmp))
            if ds.holdout_source:
                holdout_rows = total_rows(handler.source_parts(ds.holdout_source), ds, Path(tmp))
        elif parts != [source]:  # a folder or glob
            first = handler.read_parts(parts, source, ds, dataset, Path(tmp))
        else:
            with local_copy(source, tmp) as path:
                first = handler.read(path, ds, dataset)
        if ds.holdout_source and holdout_rows is None:
            with local_copy(location(ds.holdout_source), tmp) as path:
                holdout_rows = len(handler.read_holdout(path, ds, dataset, first).frame)
    rows = big if big is not None else len(first.frame)
    if holdout_rows is None:  # split off by ingest
        holdout_rows = int(round(rows * cfg.ingest.holdout_fraction))
        train_rows = rows - holdout_rows
    else:
        train_rows = rows
    g = cfg.generate
    out: dict[str, Any] = {
        "dataset": dataset, "modality": ds.modality, "source": str(ds.source),
        "rows": {"source": rows, "train": train_rows, "holdout": holdout_rows,
                 "holdout_from": ds.holdout_source or f"source, ingest.holdout_fraction {cfg.ingest.holdout_fraction}",
                 "generate": g.rows or train_rows},
        "model": {"name": cfg.model.name, "batch_size": cfg.train.batch_size,
                  "device": cfg.train.device, "budget_seconds": cfg.train.budget_seconds,
                  "lr_decay": cfg.train.lr_decay,
                  **({"candidates": list(cfg.model.auto.candidates)} if cfg.model.name == "auto" else {})},
        "generate": {"rows": g.rows or train_rows, "shards": math.ceil((g.rows or train_rows) / g.rows_per_shard),
                     "workers": g.workers, "conditions": dict(g.conditions or {})},
        "gate": {k: {b: v for b, v in t.model_dump().items() if v is not None}
                 for k, t in cfg.score.thresholds.items()},
        "release_root": str(cfg.publish.release_root),
        "seed": cfg.seed,
        "threads": cfg.runtime.threads or None,
    }
    out.update(handler.plan_details(first, ds, dataset, cfg, holdout_rows))
    trains_on = min(train_rows, cfg.train.max_rows or train_rows)
    if big is not None:
        trains_on = min(trains_on, cfg.ingest.sample_rows)
        out["streamed"] = {"rows": big, "files": len(parts), "batch_rows": cfg.ingest.batch_rows,
                           "sample_rows": cfg.ingest.sample_rows,
                           "kinds_from": f"the first {len(first.frame):,} rows here (ingest: a seeded sample of "
                                         f"{cfg.ingest.sample_rows:,} rows)"}
    epochs = epochs_for(cfg.train.epochs, cfg.train.min_steps, max(1, trains_on // cfg.train.batch_size),
                        _recipe(cfg))
    out["model"].update(epochs=epochs, decay_epochs=cfg.train.lr_decay * epochs)
    if trains_on < train_rows:
        out["model"]["trains_on_rows"] = trains_on  # a seeded sample (train.max_rows, ingest.sample_rows)
    if cfg.train.privacy.epsilon is not None:
        out["dp"] = _dp_plan(cfg, trains_on, epochs, getattr(first, "schema", None), dataset)
    if estimate and handler.TIMED_ESTIMATE:
        out["estimate"] = _estimate(cfg, first, trains_on, out["generate"]["rows"], epochs)
        out["estimate"]["disk_free_mb"] = None if is_url(cfg.work_dir) else free_mb(cfg.work_dir)
    return out


def _recipe(cfg: Config) -> tuple[int, int] | None:
    """``model.name``'s own ``train.epochs: auto`` recipe, if it has one (``auto``: its candidates', each)."""
    from pipeline.models.registry import AUTO, model_class

    if cfg.model.name == AUTO:
        return None
    return model_class(cfg.model.name).auto_recipe(cfg.model.settings(), cfg.train.settings())


def _dp_plan(cfg: Config, rows: int, epochs: int, schema, dataset: str) -> dict[str, Any]:
    """What a DP run will spend and how (``train.privacy``): the budget's parts, the DP-SGD steps
    and the noise multiplier the accountant finds for them (None when the budget is too small),
    with the histograms the transformer's private fit will make of ``schema``'s columns."""
    from pipeline.models.private_stats import Privacy, statistics_plan
    from pipeline.training.loop import batch_plan
    from pipeline.training.private import budget, noise_multiplier

    b = budget(cfg.train.privacy, rows)
    column = {}
    if isinstance(schema, TableSchema):  # the columns the private fit will make histograms of
        ds = cfg.dataset(dataset)
        stats = statistics_plan(schema, Privacy(b.preprocessing_epsilon, b.preprocessing_delta, 0, dict(ds.bounds),
                                                dataset, dict(ds.categories)))
        b = b.with_statistics({"laplace_epsilons": stats.laplace_epsilons, "threshold_delta": stats.threshold_delta})
        column = {"column_epsilon": stats.column_epsilon}
    batch, per_epoch = batch_plan(cfg.train.batch_size, 1, 1, rows)  # as the loop plans it
    steps, rate = epochs * per_epoch, batch / rows
    try:
        noise = noise_multiplier(b, rate, steps, cfg.train.privacy.accountant)
    except ValueError:
        noise = None
    return {**b.record(), **column, "steps": steps, "sample_rate": rate, "noise_multiplier": noise,
            "accountant": cfg.train.privacy.accountant, "max_grad_norm": cfg.train.privacy.max_grad_norm}


def _leading(parts: list, source, ds, dataset: str, rows: int, folder: Path):
    """The first ``rows`` rows of a streamed source, typed as ingest types a sample."""
    from pipeline.modalities.base import SourceRows
    from pipeline.sources import batches, partition_root
    from pipeline.typed import prepare

    frames, got = [], 0
    for _, raw in batches(parts, partition_root(source), ds, rows, folder, dataset):
        frames.append(raw.iloc[:rows - got])
        got += len(frames[-1])
        if got >= rows:
            break
    raw = pd.concat(frames, ignore_index=True)
    raw.attrs = frames[0].attrs
    frame, schema = prepare(raw, source, ds, dataset=dataset)
    return SourceRows(frame, "", schema, list(raw.columns))


def _estimate(cfg: Config, first, train_rows: int, generate_rows: int, epochs: int) -> dict[str, Any]:
    """Seconds and memory of train and generate, from timed steps of the configured model."""
    import torch

    from pipeline.models import AUTO
    from pipeline.training.loop import make_optimizers, pick_device
    from pipeline.training.setup import build_model, transform_table

    imports_mb = _baseline_mb()  # what a stage process starts from (generate's baseline)
    device = pick_device(cfg.train.device)
    model_cfg, train_cfg = cfg.model.settings(), cfg.train.settings()
    frame = first.frame.sample(n=min(len(first.frame), ESTIMATE_ROWS), random_state=cfg.seed)
    transformer, tensor = transform_table(frame, first.schema, model_cfg, cfg.seed, device)
    names = list(cfg.model.auto.candidates) if cfg.model.name == AUTO else [cfg.model.name]
    batch = max(2, min(cfg.train.batch_size, train_rows))
    epoch_seconds, rows_per_s, params, sampling_mb = 0.0, math.inf, 0, 0.0
    shard = min(generate_rows, cfg.generate.rows_per_shard)
    torch.manual_seed(cfg.seed)
    for name in names:
        model = build_model(model_cfg, train_cfg, transformer, name=name).to(device)
        multiple = model.batch_multiple
        b = max(multiple, batch // multiple * multiple)
        model.prepare(tensor)
        opts = make_optimizers(model, train_cfg)
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        model.train()

        def step() -> None:
            real = tensor[torch.randint(0, tensor.shape[0], (b,), device=device, generator=gen)]
            for phase, opt in opts.items():
                opt.zero_grad(set_to_none=True)
                loss, _ = model.loss(phase, real)
                loss.backward()
                opt.step()
                model.after_step(phase)

        step()  # warm-up: first-call allocations
        t = time.perf_counter()
        for _ in range(TIMED_STEPS):
            step()
        per_step = (time.perf_counter() - t) / TIMED_STEPS
        epoch_seconds += per_step * max(1, train_rows // b)
        model.finish()
        model.eval()
        n = min(2_000, generate_rows)
        t = time.perf_counter()
        with torch.no_grad():
            model.sample(n, torch.Generator(device=device).manual_seed(cfg.seed))
        rows_per_s = min(rows_per_s, n / max(time.perf_counter() - t, 1e-9))
        params = max(params, sum(p.numel() for p in model.parameters()))
        sampling_mb = max(sampling_mb, _sampling_mb(model, transformer, shard))
    train_s = epoch_seconds * epochs
    if cfg.train.budget_seconds:
        train_s = min(train_s, cfg.train.budget_seconds)
    width = tensor.shape[1]
    frame_mb = first.frame.memory_usage(deep=True).sum() / 2**20
    per_row_mb = frame_mb / max(1, len(first.frame))
    base = _baseline_mb()
    mb = {  # the largest things each stage holds at once, beyond the interpreter with torch and pandas
        "ingest": 2.5 * frame_mb,
        "train": frame_mb + train_rows * width * 4 * 2 / 2**20 + params * 4 * 5 / 2**20,
        # from the imports, not from this process now (it holds the estimate's models and data too)
        "generate": imports_mb - base + GENERATE_FIXED_MB + sampling_mb + shard * (width * 4 * 2 / 2**20
                                                                                   + per_row_mb * 3),
        "score": per_row_mb * (train_rows * 2 + generate_rows) + SCORE_LIBRARIES_MB,
    }
    return {
        "train_s": round(train_s, 3),
        "epoch_s": round(epoch_seconds, 4),
        "generate_s": round(generate_rows / rows_per_s, 3),
        "sample_rows_per_s": round(rows_per_s),
        "features": int(width),
        "parameters": int(params),
        "memory_mb": {k: round(v + base) for k, v in mb.items()},
        "peak_memory_mb": round(max(mb.values()) + base),
        "disk_mb": round(per_row_mb * (train_rows * 2 + generate_rows * 2) / 3, 1),  # Parquet ~1/3 of memory
        "device": str(device),
        "note": "timed on a sample of the rows; the score stage is not included",
    }


def _sampling_mb(model, transformer, shard_rows: int) -> float:
    """What sampling holds at once for a shard: the rows one sampling call makes (the shard, or the
    model's ``rows_at_once`` of it) times, for each row, the features several times over (inputs,
    outputs, one-hot blocks padded to the widest column's categories, their logits and noise) and
    the network's widest layer twice. Checked against generate's peak RSS on 2 CPU cores (issue 31;
    the estimate in all, then measured): a 16,000-row shard of 530 features 1,043 MB, 662-983 MB
    over four runs; Adult's 32,561 rows of 110 features 1,055 MB, 868 MB (the former estimate: 749
    and 679 MB)."""
    import torch

    at_once = min(shard_rows, getattr(model, "rows_at_once", None) or shard_rows)
    groups = [span.width for span in transformer.spans if span.activation == "softmax"]
    padded = len(groups) * max(groups, default=0)
    widest = max((m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)), default=0)
    return at_once * 4 * (6 * transformer.width + 3 * padded + 2 * widest) / 2**20


def _baseline_mb() -> float:
    """This process's resident memory now (torch, pandas and the rest imported): what every stage
    starts from. 300 MB where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 300.0


def _privacy_line(pv: dict[str, Any]) -> str:
    """``privacy families: privacy, membership; attacks membership on one seeded split: ...`` (or why not judged)."""
    line = "  privacy families: " + (", ".join(pv["suites"]) or "none")
    if pv["attacks"]:
        attacks = ", ".join(pv["attacks"])
        if "why_not" in pv:
            return line + f"; attacks {attacks} not judged: {pv['why_not']}"
        r = pv["rows"]
        line += (f"; attacks {attacks} on one seeded split: {r['members']:,} training members, {r['non_members']:,} "
                 f"unseen non-members, {r['reference']:,} reference and {r['synthetic']:,} synthetic rows")
    return line


def render(p: dict[str, Any]) -> str:
    """The plan as a person reads it."""
    r, m = p["rows"], p["model"]
    lines = [f"dataset {p['dataset']} ({p['modality']}): {p['source']}",
             f"  rows: {r['source']:,} in the source; train {r['train']:,}, holdout {r['holdout']:,} "
             f"(from {r['holdout_from']})"]
    if "streamed" in p:
        st = p["streamed"]
        lines.append(f"  streamed: {st['rows']:,} rows in {st['files']} file(s), more than ingest.stream_rows; read in "
                     f"batches of {st['batch_rows']:,}; training and scoring read a seeded sample of "
                     f"{st['sample_rows']:,} rows; kinds below from {st['kinds_from']}")
    if "columns" in p:
        lines.append(f"  columns ({len(p['columns'])}):")
        width = max(len(c["name"]) for c in p["columns"])
        for c in p["columns"]:
            lines.append(f"    {c['name']:<{width}}  {c['kind']:<11}  nulls {c['nulls']:>8,}  "
                         f"distinct {c['distinct']:>8,}")
        if p.get("links"):
            lines.append("  links kept in every row: " + ", ".join(p["links"]))
        if p.get("constraints"):
            lines.append("  constraints kept in every row: " + ", ".join(p["constraints"]))
        t = p.get("target")
        lines.append("  target: none (no utility score)" if t is None else
                     f"  target: {t['column']} ({t['kind']}), task {t['task']}"
                     + ("" if t["utility_judged"] else f"; utility not judged: {t['why_not']}"))
        if p.get("privacy"):
            lines.append(_privacy_line(p["privacy"]))
    lines.append(f"  model: {m['name']}" + (f" (candidates {', '.join(m['candidates'])})" if "candidates" in m else "")
                 + f", {m['epochs']} epochs of batch {m['batch_size']} on {m['device']}"
                 + (f" over a sample of {m['trains_on_rows']:,} rows" if m.get("trains_on_rows") else "")
                 + (", constant learning rates" if not m.get("lr_decay") else
                    f", learning rates falling to zero over the last {m['lr_decay']:.0%} of the epochs the budget "
                    "leaves" if m.get("budget_seconds") else
                    f", learning rates falling to zero over the last {m['decay_epochs']:g} epochs")
                 + (f", budget {m['budget_seconds']:.0f}s" if m.get("budget_seconds") else ""))
    if p.get("dp"):
        d = p["dp"]
        each = f", {d['column_epsilon']:.3g} a column" if d.get("column_epsilon") else ""
        parts = (f"the histograms {d['preprocessing_epsilon']:.3g} on their own{each}, one Renyi-DP account with "
                 "DP-SGD" if d.get("joint") else
                 f"preprocessing {d['preprocessing_epsilon']:.3g}{each}, DP-SGD {d['sgd_epsilon']:.3g}")
        lines.append(f"  differential privacy: epsilon {d['epsilon']:g}, delta {d['delta']:.3g} ({parts}); "
                     f"DP-SGD {d['steps']:,} steps "
                     f"at sampling rate {d['sample_rate']:.4g}, rows clipped to {d['max_grad_norm']:g}, " +
                     (f"noise multiplier {d['noise_multiplier']:.3f} ({d['accountant']} accountant)"
                      if d["noise_multiplier"] is not None else "budget too small for these steps: train refuses"))
    gen = p["generate"]
    lines.append(f"  generate: {gen['rows']:,} rows in {gen['shards']} shard(s), {gen['workers']} worker(s)"
                 + (f", conditions {gen['conditions']}" if gen["conditions"] else ""))
    gate = [f"{k} {'>=' if b == 'min' else '<='} {v}" for k, t in p["gate"].items() for b, v in t.items()]
    lines.append("  gate: " + ("; ".join(gate) if gate else "none (every release passes)"))
    lines.append(f"  releases to: {p['release_root']}; seed {p['seed']}")
    e = p.get("estimate")
    if e:
        lines.append(f"  estimate: train {e['train_s']:,.0f}s ({e['epoch_s']:.2f}s an epoch, {e['features']} features, "
                     f"{e['parameters']:,} parameters on {e['device']}), generate {e['generate_s']:,.0f}s "
                     f"({e['sample_rows_per_s']:,} rows/s); scoring not included")
        lines.append(f"  memory: peak about {e['peak_memory_mb']:,.0f} MB ("
                     + ", ".join(f"{k} {v:,.0f}" for k, v in e["memory_mb"].items()) + "); disk about "
                     f"{e['disk_mb']:,.0f} MB" + (f" of {e['disk_free_mb']:,.0f} MB free" if e.get("disk_free_mb")
                                                  is not None else ""))
    return "\n".join(lines)
