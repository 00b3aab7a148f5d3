"""Releases: what the publish stage writes and the catalog reads.

Layout::

    <release_root>/<dataset>/<version>/part-00000.parquet ...   lineage in each file's metadata
    <release_root>/<dataset>/<version>/_manifest.json           rows, schema, checksums, lineage, scores
    <release_root>/<dataset>/<version>/_report.html, _report.md  the quality report (when scored with one)
    <release_root>/<dataset>/<version>/_DATACARD.md             source, recipe, scores, intended use, limits
    <release_root>/<dataset>/latest.json                        {"version": ...}, moved last

The manifest's leading underscore keeps the version folder a clean Parquet dataset: pandas,
pyarrow and Spark skip ``_``-files, so ``pd.read_parquet(<version folder>)`` just works (DuckDB
reads what a glob names, ``_``-files too: ``'<version folder>/*.parquet'``).

- ``layout``: the one reader of that layout (versions in order, ``latest``, manifests), for the
  publisher and the catalog (``pipeline.catalog``) alike;
- ``store``: where a release root lives (a local folder, or an object store through
  ``pipeline.stores.StorePath``), one class per kind with the same methods: lock, stage, commit,
  point latest, prune; chosen once by ``release_store``;
- ``contract``: the schema contract between a release and the one before it;
- ``contents``: what a release holds (the shards with their lineage, the data card, the reports,
  the manifest), written into the staging folder;
- ``integrity``: a release judged against its manifest (the manifest's consistency, the version
  folder's listing, each file's size and SHA-256, the parts' rows and lineage), for every reader.
"""
