"""What checking a release against its manifest costs its readers, on a big release.

    python benchmarks/release_verify.py [--rows 2000000] [--file-rows 100000] [--folder /tmp/release_verify]
                                        [--repeat 3] [--s3] [--keep]

Makes a release of N Adult-shaped rows without training (``big_table.make_source``'s rows: Adult
resampled, numbers jittered), written as publish writes one: parts of ``--file-rows`` rows
(``generate.rows_per_shard``'s default) with their lineage, zstd, each part's rows, size and
SHA-256 in the manifest, a data card with its size and hash. Then times, warm (the files in the
page cache), the median of ``--repeat`` runs:

- ``sha256``: hashing every file's bytes, alone (hashlib, read from disk): the floor of a full check;
- ``load``: ``Catalog.load`` (every part read once, its size and SHA-256 checked, decoded from
  memory) against ``load_unchecked``, pyarrow's dataset over the same files without any check (what
  ``load`` did before reads were checked); ``load_column`` / ``load_column_unchecked`` the same for
  one column (``load(columns=["age"])`` against ``dataset().to_table(columns=["age"])``, pushed down);
- ``show``, ``show_sizes_only``, ``verify``: ``python -m pipeline releases show|show --sizes-only|
  verify``, each a whole process (its start and imports included): ``show`` checks every file's
  size and SHA-256, ``--sizes-only`` reads the manifest and one listing, ``verify`` adds the parts'
  footers (rows, lineage).

With ``--s3`` the release is uploaded to an S3-compatible server (moto's, on a free loopback port:
the dev extra) and every reader reads it from there: each hash then costs a download of the file.

Prints a table and, last, one JSON line of the seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.big_table import make_source  # noqa: E402
from pipeline.catalog import Catalog  # noqa: E402
from pipeline.files import sha256_file, write_parquet  # noqa: E402
from pipeline.release.integrity import params_hash  # noqa: E402


def make_release(root: Path, rows: int, file_rows: int) -> Path:
    """``root/big/v1`` as publish writes it (parts with lineage, data card, manifest last) and
    ``root/big/latest.json``."""
    source = root.parent / "source"
    make_source(source, rows, file_rows)
    version = root / "big" / "v1"
    version.mkdir(parents=True)
    lineage = {"dataset": "big", "version": "v1", "params": {}, "params_hash": params_hash({})}
    files, schema = [], None
    for i, part in enumerate(sorted(source.glob("*.parquet"))):
        table = pq.read_table(part)
        name = f"part-{i:05d}.parquet"
        write_parquet(table, version / name, lineage=lineage)
        files.append({"path": name, "rows": table.num_rows, "bytes": (version / name).stat().st_size,
                      "sha256": sha256_file(version / name)})
        schema = schema or [{"name": f.name, "kind": "integer" if pa.types.is_integer(f.type) else "categorical",
                             "dtype": str(f.type)} for f in table.schema]
    shutil.rmtree(source)
    card = version / "_DATACARD.md"
    card.write_text("# big\n\nA benchmark release.\n" * 100)
    manifest = {**lineage, "created_at": "2026-01-01T00:00:00+00:00", "rows": sum(f["rows"] for f in files),
                "schema": schema, "files": files, "reports": [card.name], "metrics": {},
                "report_files": [{"path": card.name, "bytes": card.stat().st_size, "sha256": sha256_file(card)}]}
    (version / "_manifest.json").write_text(json.dumps(manifest))
    (root / "big" / "latest.json").write_text(json.dumps({"dataset": "big", "version": "v1"}))
    return version


def timed(fn, repeat: int) -> float:
    """The median wall seconds of ``repeat`` calls of ``fn``."""
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


@contextlib.contextmanager
def s3_copy(local: Path):
    """``local`` uploaded to a moto S3 server started here; yields its URL (the AWS environment
    points at the server while it runs, for this process and the CLI's)."""
    import logging

    import fsspec
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir("bench")
        fs.put(str(local), "bench/releases", recursive=True)
        yield "s3://bench/releases"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def cli(root: Path | str, *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "pipeline", "releases", "--root", str(root), *args],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        raise SystemExit(f"releases {' '.join(args)} failed: {out.stderr.strip()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--file-rows", type=int, default=100_000)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/release_verify"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--s3", action="store_true", help="read the release from a moto S3 server on loopback")
    ap.add_argument("--keep", action="store_true", help="keep the release")
    args = ap.parse_args()

    root = args.folder / "releases"
    shutil.rmtree(args.folder, ignore_errors=True)
    version = make_release(root, args.rows, args.file_rows)
    paths = sorted(version.glob("part-*.parquet"))
    size = sum(p.stat().st_size for p in version.iterdir())
    print(f"release: {args.rows:,} rows in {len(paths)} parts, {size / 2**20:.1f} MiB", flush=True)

    with s3_copy(root) if args.s3 else contextlib.nullcontext(str(root)) as where:
        cat = Catalog(where)
        cat.load("big")  # warm: the page cache and pyarrow's first use
        files = cat.files("big")
        out = {
            "sha256": timed(lambda: [hashlib.sha256(p.read_bytes()).hexdigest() for p in version.iterdir()],
                            args.repeat),
            "load": timed(lambda: cat.load("big"), args.repeat),
            "load_unchecked": timed(lambda: pads.dataset(files, format="parquet", filesystem=cat.fs).to_table()
                                    .to_pandas(), args.repeat),
            "load_column": timed(lambda: cat.load("big", columns=["age"]), args.repeat),
            "load_column_unchecked": timed(lambda: cat.dataset("big").to_table(columns=["age"]).to_pandas(),
                                           args.repeat),
            "show": timed(lambda: cli(where, "show", "big"), args.repeat),
            "show_sizes_only": timed(lambda: cli(where, "show", "big", "--sizes-only"), args.repeat),
            "verify": timed(lambda: cli(where, "verify", "big"), args.repeat),
        }
    for key, seconds in out.items():
        print(f"{key:<22} {seconds:7.3f} s", flush=True)
    if not args.keep:
        shutil.rmtree(args.folder, ignore_errors=True)
    print(json.dumps({"rows": args.rows, "parts": len(paths), "mib": round(size / 2**20, 1), "s3": args.s3,
                      "seconds": {k: round(v, 3) for k, v in out.items()}}))


if __name__ == "__main__":
    main()
