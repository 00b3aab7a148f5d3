"""One handler per modality, so that no stage has an image twin of its table code.

A handler is a module of this package (``table``, ``image``) that registers itself
(``registry.register_modality``; the registry finds it by listing the package) and provides:

- ``MODALITY`` (its name: ``datasets.<name>.modality``, the metric suites registered for it in
  ``pipeline.metrics``) and ``UNIT`` (what its rows are called: rows, images);
- ingest: ``source_parts(source)`` (the files the source is read from; ``read_parts(parts, source,
  ds, dataset, folder)`` reads several as one), ``read(source, ds, dataset)`` and
  ``read_holdout(path, ds, dataset, first)`` (the rows, typed and checked),
  ``describe_prepared(train, first)`` (what ``schema.json`` adds) and ``ingest_summary``; ingest
  itself splits the holdout and writes, alike for all;
- validate: ``plan_details(first, ds, dataset, cfg, holdout_rows)`` (what the plan shows beyond the
  rows) and ``TIMED_ESTIMATE`` (whether it times the model);
- train: ``training_data(paths, model_cfg, seed, device, max_rows, rank_slice)``: the prepared training
  data as the tensor the models train on, with its codec (the fitted transformer, or the image
  spec) and what ``model.json`` records of it; ``privacy=`` (only passed with ``train.privacy.epsilon``
  set): fit from private estimates, or refuse in one line;
- generate: ``plan_generation(g, seed, loaded, paths)`` (a ``GenerationPlan``, with every check
  of the settings done before any worker starts), ``shard_table(loaded, job, g, stats)`` (one
  shard's rows as an Arrow table: the shard executor's only modality-specific step),
  ``finish_shards(folder, jobs)`` (extras such as the image preview grid),
  ``generation_record(g, plan, stats, loaded)`` (what ``_generated.json`` adds) and
  ``sample_rows(loaded, rows, seed, g, dataset)`` (the Python API's rows under the generate
  settings ``g``, or why not);
- score: ``evidence(cfg, dataset, paths)`` (what its metric suites read: the prepared data, the
  synthetic rows, the settings) and ``report(evidence, metrics, details, drawn)`` (the report files);
- publish and the command line: ``CARD_USE`` (the data card's intended use and known limits;
  tables also ``CARD_USE_DP``, for a release trained under differential privacy),
  ``DEFAULT_MODEL`` (what an ad-hoc source trains; None: params' ``model.name``) and ``UNSCORED``
  (prefixes of the threshold keys it has no scores for: an ad-hoc source drops those thresholds).

The shared types are in ``base.py``. The modality is read once, from the prepared data's
``schema.json`` (``modality_of``), or from a trained model (``LoadedModel.modality``).
"""

from pipeline.modalities.base import GenerationPlan, SourceRows, TrainingData, bounded, bounded_positions
from pipeline.modalities.registry import modalities, modality_named, modality_of, register_modality

__all__ = ["GenerationPlan", "SourceRows", "TrainingData", "bounded", "bounded_positions", "modalities",
           "modality_named", "modality_of", "register_modality"]
