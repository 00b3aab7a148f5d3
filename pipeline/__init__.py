"""synthfactory: a batch pipeline that turns real tables into scored, versioned synthetic Parquet.

Stages (one module each): ingest -> train -> generate -> score -> publish.
This package never imports Prefect or DVC; the orchestrators in ``flows/`` and ``dvc.yaml`` wire it.
"""

__version__ = "0.1.0"
