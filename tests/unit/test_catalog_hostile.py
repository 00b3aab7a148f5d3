"""The catalog against hostile references, roots, manifests and export targets: every case runs
through the Python API and the CLI, must end in the expected output or one clear line (exit 2), and
must never read or write outside its release root (a sentinel release beside it stays unseen)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pytest
from fsspec.implementations.local import LocalFileSystem

from pipeline import catalog as catalog_module
from pipeline.__main__ import main
from pipeline.catalog import Catalog
from pipeline.errors import PipelineError
from pipeline.files import sha256_file, write_parquet
from pipeline.release.integrity import params_hash

FRAME = pd.DataFrame({"age": [30, 40, 50], "city": ["Paris", "Lyon", "Nice"]})
SCHEMA = [{"name": "age", "kind": "numeric", "dtype": "int64"},
          {"name": "city", "kind": "categorical", "dtype": "object"}]


def release(root: Path, dataset: str, version: str, frame: pd.DataFrame = FRAME, *, latest: bool = True,
            day: int = 1, **manifest) -> Path:
    """A release folder written by hand: one Parquet part (with its lineage, as publish writes it),
    its manifest (the part's rows, size and SHA-256) and (optionally) latest.json."""
    folder = root / dataset / version
    folder.mkdir(parents=True)
    lineage = {"dataset": dataset, "version": version, "params_hash": params_hash({})}
    part = folder / "part-00000.parquet"
    write_parquet(pa.Table.from_pandas(frame, preserve_index=False), part, lineage=lineage)
    body = {**lineage, "params": {}, "rows": len(frame), "schema": SCHEMA,
            "files": [{"path": part.name, "rows": len(frame), "bytes": part.stat().st_size,
                       "sha256": sha256_file(part)}], "reports": [],
            "metrics": {"quality.overall": 0.9}, "created_at": f"2026-01-{day:02d}T00:00:00Z", **manifest}
    (folder / "_manifest.json").write_text(json.dumps(body))
    if latest:
        (root / dataset / "latest.json").write_text(json.dumps({"dataset": dataset, "version": version}))
    return folder


@dataclass
class World:
    tmp: Path
    root: Path      # the release root: ds@v1, ds@v2 (latest, 4 rows), other@v1
    outside: Path   # a sentinel release beside the root, never to be reached
    work: Path      # the current folder of every case (relative exports land here)

    @property
    def sentinel_part(self) -> Path:
        return self.outside / "ds" / "v1" / "part-00000.parquet"


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    w = World(tmp_path, tmp_path / "a" / "releases", tmp_path / "outside", tmp_path / "work")
    release(w.outside, "ds", "v1", pd.DataFrame({"secret": ["SENTINEL"]}))
    release(w.root, "ds", "v1", day=1)
    release(w.root, "ds", "v2", pd.concat([FRAME, FRAME.head(1)]), day=2)
    release(w.root, "other", "v1")
    w.work.mkdir()
    monkeypatch.chdir(w.work)
    return w


@pytest.fixture
def touched(monkeypatch) -> list[tuple[str, str]]:
    """(method, normalised path) of every local filesystem call the catalog makes."""
    seen: list[tuple[str, str]] = []
    for method in ("_open", "ls", "info", "exists", "isdir", "isfile"):
        original = getattr(LocalFileSystem, method)

        def spy(self, path, *args, _original=original, _method=method, **kwargs):
            seen.append((_method, os.path.normpath(LocalFileSystem._strip_protocol(str(path)))))
            return _original(self, path, *args, **kwargs)

        monkeypatch.setattr(LocalFileSystem, method, spy)
    return seen


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


# -- the cases -------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    cli: Callable[[World], list[str]]               # arguments after `releases --root ROOT`
    api: Callable[[Catalog, World], object]
    error: tuple[str, ...] | None = None            # words of the one-line error; None: it works
    check_cli: Callable[[str, World], None] | None = None
    check_api: Callable[[object, World], None] | None = None
    setup: Callable[[World, pytest.MonkeyPatch], None] | None = None
    root: Callable[[World], str] = lambda w: str(w.root)
    writes: tuple[str, ...] = ()                    # files (under tmp) a working case may create
    api_error: tuple[str, ...] | None = None        # when the API's words differ from the CLI's
    api_raises: type[BaseException] = PipelineError


def hand(**manifest):
    """A setup that adds ds@v3 (not latest) with the given manifest fields."""
    return lambda w, mp: release(w.root, "ds", "v3", latest=False, day=3, **manifest) and None


def write(rel: str, data: str | bytes):
    def setup(w, mp):
        path = w.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def good_release_plus(*setups):
    def setup(w, mp):
        for s in setups:
            s(w, mp)
    return setup


def not_parquet_listed(w, mp):
    """ds@v1's part replaced by text, its manifest edited to match: what is left is not Parquet."""
    part, path = w.root / "ds/v1/part-00000.parquet", w.root / "ds/v1/_manifest.json"
    part.write_text("not parquet")
    manifest = json.loads(path.read_text())
    manifest["files"][0].update(bytes=part.stat().st_size, sha256=sha256_file(part))
    path.write_text(json.dumps(manifest))


def fail_midway(w, mp):
    (w.work / "out.csv").write_text("old export\n")

    def broken(frame, f, fmt):
        f.write(b"age,city\n30,Par")
        raise OSError("No space left on device")
    mp.setattr(catalog_module, "_write_frame", broken)


def unreadable_root(w, mp):
    patched = LocalFileSystem.ls

    def ls(self, path, *args, **kwargs):
        if os.path.normpath(LocalFileSystem._strip_protocol(str(path))) == str(w.root):
            raise PermissionError(13, "Permission denied", str(w.root))
        return patched(self, path, *args, **kwargs)
    mp.setattr(LocalFileSystem, "ls", ls)


def expect_json_rows(rows: int, version: str):
    def check(out, w):
        m = json.loads(out) if isinstance(out, str) else out
        assert m["rows"] == rows and m["version"] == version
    return check


def read_export(name: str, rows: int):
    def check(_, w):
        path = w.work / name
        frame = pd.read_parquet(path) if name.endswith((".parquet", ".pq")) else pd.read_csv(path)
        assert len(frame) == rows and list(frame.columns) == ["age", "city"]
    return check


CASES = [
    # names that would become paths outside the root
    Case("dataset-climbs-out", lambda w: ["show", "../../outside/ds@v1"],
         lambda c, w: c.manifest("../../outside/ds@v1"),
         ("dataset name", "'../../outside/ds'", "'/'")),
    Case("version-climbs-out", lambda w: ["show", "ds@../../../outside/ds/v1"],
         lambda c, w: c.manifest("ds@../../../outside/ds/v1"), ("version", "'/'")),
    Case("export-climbs-out", lambda w: ["export", "../../outside/ds@v1", "--to", "x.csv"],
         lambda c, w: c.export("../../outside/ds@v1", "x.csv"), ("dataset name", "'/'")),
    Case("absolute-dataset", lambda w: ["show", f"{w.outside / 'ds'}@v1"],
         lambda c, w: c.manifest(f"{w.outside / 'ds'}@v1"),
         ("dataset name", "'/'")),
    Case("dataset-dot-dot", lambda w: ["show", "..@v1"], lambda c, w: c.manifest("..@v1"),
         ("dataset name", "'..'", "must start with a letter or a digit")),
    Case("hidden-staging-version", lambda w: ["show", "ds@.staging-v9-1"], lambda c, w: c.manifest("ds@.staging-v9-1"),
         ("version", "'.staging-v9-1'", "must start with a letter or a digit"),
         setup=lambda w, mp: release(w.root, "ds", ".staging-v9-1", latest=False) and None),
    Case("list-climbs-out", lambda w: ["list", "../outside"], lambda c, w: c.versions("../outside"),
         ("dataset name", "'/'")),
    Case("diff-climbs-out", lambda w: ["diff", "ds@v1", "../../outside/ds@v1"],
         lambda c, w: c.diff("ds@v1", "../../outside/ds@v1"), ("dataset name", "'/'")),
    # odd references
    Case("empty-ref", lambda w: ["show", ""], lambda c, w: c.manifest(""),
         ("reference ''", "dataset name", "is empty")),
    Case("no-dataset", lambda w: ["show", "@v1"], lambda c, w: c.manifest("@v1"),
         ("reference '@v1'", "dataset name", "is empty")),
    Case("no-version", lambda w: ["show", "ds@"], lambda c, w: c.manifest("ds@"),
         ("reference 'ds@'", "version", "is empty")),
    Case("two-ats", lambda w: ["show", "ds@v1@v2"], lambda c, w: c.manifest("ds@v1@v2"), ("version 'v1@v2'", "'@'")),
    Case("newline-in-ref", lambda w: ["show", "ds\n@v1"], lambda c, w: c.manifest("ds\n@v1"),
         ("dataset name", "'\\n'")),
    Case("nul-in-version", lambda w: ["show", "ds@v\x001"], lambda c, w: c.manifest("ds@v\x001"),
         ("version", "'\\x00'")),
    Case("name-too-long", lambda w: ["show", "d" * 101], lambda c, w: c.manifest("d" * 101), ("101 characters long",)),
    Case("unknown-version", lambda w: ["show", "ds@v7"], lambda c, w: c.manifest("ds@v7"),
         ("no version 'v7'", "v1, v2")),
    Case("unknown-dataset", lambda w: ["show", "nope"], lambda c, w: c.manifest("nope"),
         ("no releases of 'nope'", "datasets: ds, other")),
    # manifests that name files outside their folder
    Case("manifest-absolute-file", lambda w: ["export", "ds@v3", "--to", "x.csv"], lambda c, w: c.load("ds@v3"),
         ("ds/v3/_manifest.json", "files entry", "is a path"),
         setup=lambda w, mp: hand(files=[{"path": str(w.sentinel_part)}])(w, mp)),
    Case("manifest-relative-file", lambda w: ["show", "ds@v3"], lambda c, w: c.files("ds@v3"),
         ("ds/v3/_manifest.json", "'../../../outside/ds/v1/part-00000.parquet'", "is a path"),
         setup=hand(files=[{"path": "../../../outside/ds/v1/part-00000.parquet"}])),
    Case("manifest-backslash-file", lambda w: ["show", "ds@v3"], lambda c, w: c.manifest("ds@v3"),
         ("_manifest.json", "is a path"), setup=hand(files=[{"path": "..\\..\\outside\\x.parquet"}])),
    Case("manifest-hidden-file", lambda w: ["show", "ds@v3"], lambda c, w: c.manifest("ds@v3"),
         ("_manifest.json", "'.part.parquet'", "is hidden"), setup=hand(files=[{"path": ".part.parquet"}])),
    Case("manifest-report-escapes", lambda w: ["show", "ds@v3"], lambda c, w: c.read_text("ds@v3", "_DATACARD.md"),
         ("_manifest.json", "reports entry", "is a path"),
         setup=hand(reports=["../../../outside/ds/v1/_manifest.json"])),
    Case("manifest-files-not-a-list", lambda w: ["show", "ds@v3"], lambda c, w: c.manifest("ds@v3"),
         ("_manifest.json: unreadable", "'files'"), setup=hand(files="part-00000.parquet")),
    # corrupt files
    Case("latest-names-outside", lambda w: ["show", "evil"], lambda c, w: c.latest("evil"),
         ("evil/latest.json: its version '../../outside/ds/v1' is no version name", "'/'", "repair it or delete it"),
         setup=good_release_plus(lambda w, mp: release(w.root, "evil", "v1") and None,
                                 write("evil/latest.json", '{"version": "../../outside/ds/v1"}'))),
    Case("latest-not-json", lambda w: ["show", "bad"], lambda c, w: c.latest("bad"),
         ("bad/latest.json: unreadable (not JSON",), setup=write("bad/latest.json", "{oops")),
    Case("latest-without-version", lambda w: ["show", "bad"], lambda c, w: c.manifest("bad"),
         ("bad/latest.json: names no version", "'version' is missing"),
         setup=write("bad/latest.json", '{"dataset": "bad"}')),
    Case("latest-a-list", lambda w: ["show", "bad"], lambda c, w: c.latest("bad"),
         ("bad/latest.json: unreadable", "not an object"), setup=write("bad/latest.json", "[1, 2]")),
    Case("manifest-not-json", lambda w: ["show", "ds@v5"], lambda c, w: c.manifest("ds@v5"),
         ("ds/v5/_manifest.json unreadable: not JSON",), setup=write("ds/v5/_manifest.json", "not json")),
    Case("manifest-not-text", lambda w: ["export", "ds@v5", "--to", "x.csv"], lambda c, w: c.load("ds@v5"),
         ("ds/v5/_manifest.json unreadable", "not UTF-8"), setup=write("ds/v5/_manifest.json", b"\xff\xfe\x00")),
    Case("manifest-a-folder", lambda w: ["show", "ds@v5"], lambda c, w: c.manifest("ds@v5"),
         ("ds/v5/_manifest.json unreadable", "Is a directory"), setup=write("ds/v5/_manifest.json/x", "")),
    Case("part-not-parquet", lambda w: ["export", "ds@v1", "--to", "x.csv"], lambda c, w: c.load("ds@v1"),
         ("ds@v1", "reading its Parquet files failed", "part-00000.parquet"), setup=not_parquet_listed),
    # listing around broken entries
    Case("list-with-a-broken-latest", lambda w: ["list"], lambda c, w: c.datasets(),
         check_cli=lambda out, w: _lines(out, ["bad  broken: ", "bad/latest.json: unreadable (not JSON"],
                                         "ds  latest v2  (2 versions)", "other  latest v1  (1 versions)"),
         check_api=lambda got, w: got == ["bad", "ds", "other"] or pytest.fail(got),
         setup=write("bad/latest.json", "{oops")),
    Case("list-versions-with-a-broken-manifest", lambda w: ["list", "ds"], lambda c, w: c.versions("ds"),
         check_cli=lambda out, w: _lines(out, ["v5  broken: ", "ds/v5/_manifest.json unreadable"],
                                         "v1           3 rows  quality 0.900",
                                         "v2           4 rows  quality 0.900  (latest)"),
         check_api=lambda got, w: got == ["v5", "v1", "v2"] or pytest.fail(got),
         setup=write("ds/v5/_manifest.json", "{")),
    Case("list-versions-with-a-broken-latest", lambda w: ["list", "ds"], lambda c, w: c.versions("ds"),
         check_cli=lambda out, w: _lines(out, ["latest  broken: ", "'version' is missing"],
                                         "v1           3 rows  quality 0.900", "v2           4 rows  quality 0.900"),
         check_api=lambda got, w: got == ["v1", "v2"] or pytest.fail(got),
         setup=write("ds/latest.json", "{}")),
    Case("odd-folder-names-are-skipped", lambda w: ["list"], lambda c, w: (c.datasets(), c.versions("ds")),
         check_cli=lambda out, w: _lines(out, None, "ds  latest v2  (2 versions)", "other  latest v1  (1 versions)"),
         check_api=lambda got, w: got == (["ds", "other"], ["v1", "v2"]) or pytest.fail(got),
         setup=lambda w, mp: (release(w.root, "we ird", "v1"), release(w.root, "_x", "v1"),
                              release(w.root, "ds", "v 8", latest=False)) and None),
    # roots
    Case("root-is-a-file", lambda w: ["show", "ds@v1"], lambda c, w: c.manifest("ds@v1"),
         ("release root", "is not a folder"), root=lambda w: str(w.root / "ds" / "v1" / "part-00000.parquet")),
    Case("root-is-a-file-list", lambda w: ["list"], lambda c, w: c.datasets(),
         ("release root", "is not a folder"), root=lambda w: str(w.root / "ds" / "latest.json")),
    Case("root-missing", lambda w: ["list"], lambda c, w: c.manifest("ds"),
         ("release root", "nowhere does not exist"), api_error=("no releases of 'ds'", "datasets: none"),
         root=lambda w: str(w.tmp / "nowhere")),
    Case("root-empty", lambda w: ["list"], lambda c, w: c.datasets(), ("release root is empty",), root=lambda w: ""),
    Case("root-unknown-protocol", lambda w: ["list"], lambda c, w: c.datasets(),
         ("release root 'nope://x'", "Protocol not known"), root=lambda w: "nope://x"),
    Case("root-unreadable", lambda w: ["list"], lambda c, w: c.datasets(),
         ("cannot list it", "Permission denied"), setup=unreadable_root),
    # diff and export
    Case("diff-two-datasets", lambda w: ["diff", "ds@v1", "other@v1"], lambda c, w: c.diff("ds@v1", "other@v1"),
         ("cannot diff ds@v1 with other@v1", "different datasets")),
    Case("export-unknown-ending", lambda w: ["export", "ds@v1", "--to", "x.xlsx"],
         lambda c, w: c.export("ds@v1", "x.xlsx"),
         ("'x.xlsx'", "--format parquet or --format csv")),
    Case("export-into-missing-folder", lambda w: ["export", "ds@v1", "--to", "missing/x.csv"],
         lambda c, w: c.export("ds@v1", "missing/x.csv"), ("export folder", "missing'", "does not exist")),
    Case("export-onto-a-folder", lambda w: ["export", "ds@v1", "--to", str(w.tmp)],
         lambda c, w: c.export("ds@v1", str(w.tmp)),
         ("--format parquet or --format csv",)),
    Case("export-onto-a-folder-with-format", lambda w: ["export", "ds@v1", "--to", str(w.work), "--format", "csv"],
         lambda c, w: c.export("ds@v1", str(w.work), "csv"), ("is a folder",)),
    Case("export-into-the-release-root",
         lambda w: ["export", "ds@v1", "--to", str(w.root / "ds" / "v2" / "part-00000.parquet")],
         lambda c, w: c.export("ds@v1", str(w.root / "ds" / "v2" / "part-00000.parquet")),
         ("inside the release root",)),
    Case("export-fails-midway", lambda w: ["export", "ds@v1", "--to", "out.csv", "--force"],
         lambda c, w: c.export("ds@v1", "out.csv", force=True),
         ("No space left on device",), setup=fail_midway, api_raises=OSError),
    # what still works
    Case("show-pinned", lambda w: ["show", "ds@v1", "--json"], lambda c, w: c.manifest("ds@v1"),
         check_cli=expect_json_rows(3, "v1"), check_api=expect_json_rows(3, "v1")),
    Case("show-latest", lambda w: ["show", "ds", "--json"], lambda c, w: c.manifest("ds"),
         check_cli=expect_json_rows(4, "v2"), check_api=expect_json_rows(4, "v2")),
    Case("export-csv", lambda w: ["export", "ds@v1", "--to", "out.csv"], lambda c, w: c.export("ds@v1", "out.csv"),
         check_cli=read_export("out.csv", 3), check_api=read_export("out.csv", 3), writes=("work/out.csv",)),
    Case("export-parquet-latest", lambda w: ["export", "ds", "--to", "out.pq"], lambda c, w: c.export("ds", "out.pq"),
         check_cli=read_export("out.pq", 4), check_api=read_export("out.pq", 4), writes=("work/out.pq",)),
    Case("export-csv-gz", lambda w: ["export", "ds@v1", "--to", "out.CSV.GZ"],
         lambda c, w: c.export("ds@v1", "out.CSV.GZ"),
         check_cli=lambda _, w: _gz_rows(w, 3), check_api=lambda _, w: _gz_rows(w, 3), writes=("work/out.CSV.GZ",)),
    Case("export-any-name-with-format", lambda w: ["export", "ds@v1", "--to", "out.data", "--format", "csv"],
         lambda c, w: c.export("ds@v1", "out.data", "csv"),
         check_cli=read_export("out.data", 3), check_api=read_export("out.data", 3), writes=("work/out.data",)),
]


def _lines(out: str, broken: list[str] | None, *exact: str) -> None:
    lines = out.splitlines()
    for line in exact:
        assert line in lines, (line, lines)
    if broken is not None:
        hits = [line for line in lines if all(word in line for word in broken)]
        assert len(hits) == 1 and hits[0].startswith(broken[0]), lines
    assert len(lines) == len(exact) + (broken is not None), lines


def _gz_rows(w: World, rows: int) -> None:
    with gzip.open(w.work / "out.CSV.GZ", "rt") as f:
        assert len(pd.read_csv(f)) == rows


@pytest.mark.parametrize("via", ["api", "cli"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_catalog(case: Case, via: str, world: World, touched, monkeypatch, capsys):
    if case.setup:
        case.setup(world, monkeypatch)
    before = snapshot(world.tmp)
    touched.clear()
    root = case.root(world)

    if via == "cli":
        rc = main(["releases", "--root", root, *case.cli(world)])
        out, err = capsys.readouterr()
        if case.error:
            assert rc == 2 and out == "", (rc, out, err)
            assert err.startswith("error: ") and err.count("\n") == 1, err
            for word in case.error:
                assert word in err, (word, err)
        else:
            assert rc == 0 and err == "", (rc, err)
            if case.check_cli:
                case.check_cli(out, world)
    else:
        api_error = case.api_error or case.error
        if api_error:
            with pytest.raises(case.api_raises) as caught:
                case.api(Catalog(root), world)
            message = str(caught.value)
            assert "\n" not in message, message
            for word in api_error:
                assert word in message, (word, message)
        else:
            got = case.api(Catalog(root), world)
            if case.check_api:
                case.check_api(got, world)

    # Nothing beside the root was touched, nothing outside tmp_path either, and only a working
    # export wrote a file (whole: no partial file next to it).
    reached = [(m, p) for m, p in touched if p == str(world.outside) or p.startswith(str(world.outside) + os.sep)]
    assert not reached, reached
    assert all(p.startswith(str(world.tmp)) for _, p in touched), touched
    after = snapshot(world.tmp)
    assert {k: v for k, v in after.items() if k not in case.writes} == before
    assert set(case.writes) <= set(after)


def test_the_sentinel_is_reachable_by_its_own_root(world, capsys):
    # the guard above is meaningful: the sentinel is a real release that a catalog on its root reads
    assert Catalog(str(world.outside)).load("ds@v1")["secret"].tolist() == ["SENTINEL"]


@pytest.mark.parametrize("name", ["../../../outside/ds/v1/_manifest.json", "/etc/passwd", "C:x", "..", ".hidden", ""])
def test_read_text_takes_only_a_plain_file_name(name, world, touched):
    with pytest.raises(PipelineError, match="release file") as caught:
        Catalog(str(world.root)).read_text("ds@v1", name)
    assert "\n" not in str(caught.value) and not any("outside" in p or p.startswith("/etc") for _, p in touched)
    assert Catalog(str(world.root)).read_text("ds@v1", "_manifest.json").startswith("{")
