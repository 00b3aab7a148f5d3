"""Integrity on read: every reader of a release (``releases show``, ``export``, ``diff``, ``verify``
and the Python catalog) checks it against its manifest and refuses a changed, missing or extra
file, an edited manifest, or a ``latest.json`` naming no version of its dataset, with one line
naming the file; the same in a local folder and in an object store (fsspec's in-memory one)."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import fsspec
import pandas as pd
import pytest

from pipeline import publish
from pipeline.__main__ import main
from pipeline.catalog import Catalog
from pipeline.errors import ReleaseIntegrityError
from pipeline.files import sha256_file
from pipeline.release.layout import DATACARD, LATEST, MANIFEST, latest_version
from pipeline.release.store import release_store
from tests.unit.test_catalog_hostile import FRAME, release


@dataclass
class Releases:
    local: Path  # where they were written (and tampered with)
    root: str    # what the readers are given: the local folder, or its copy in the store


@pytest.fixture(params=["local", "store"])
def releases(request, tmp_path, monkeypatch) -> Callable[[Callable[[Path], None] | None], Releases]:
    """Makes ds@v1, ds@v2 (latest) and other@v1 by hand, tampers with them, and serves them from
    a local root or from an in-memory object store; the current folder is an empty ``work``."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    prefix = f"/integrity-{uuid.uuid4().hex[:12]}"

    def make(tamper: Callable[[Path], None] | None = None) -> Releases:
        local = tmp_path / "releases"
        release(local, "ds", "v1", day=1)
        release(local, "ds", "v2", pd.concat([FRAME, FRAME.head(1)]), day=2)  # 4 rows
        release(local, "other", "v1")
        if tamper is not None:
            tamper(local)
        if request.param == "local":
            return Releases(local, str(local))
        fsspec.filesystem("memory").put(str(local), f"{prefix}/releases", recursive=True)
        return Releases(local, f"memory:/{prefix}/releases")

    yield make
    if fsspec.filesystem("memory").exists(prefix):
        fsspec.filesystem("memory").rm(prefix, recursive=True)


# -- tampering -------------------------------------------------------------------------------------


def change_a_byte(root: Path) -> None:
    part = root / "ds/v2/part-00000.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only a hash tells
    part.write_bytes(bytes(data))


def remove_the_part(root: Path) -> None:
    (root / "ds/v2/part-00000.parquet").unlink()


def add_a_part(root: Path) -> None:
    shutil.copyfile(root / "ds/v2/part-00000.parquet", root / "ds/v2/part-00001.parquet")


def add_a_hidden_file(root: Path) -> None:
    (root / "ds/v2/.DS_Store").write_bytes(b"\0")


def _edit(root: Path, edit: Callable[[dict], None]) -> None:
    path = root / "ds/v2" / MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def edit_the_rows(root: Path) -> None:
    _edit(root, lambda m: m["files"][0].update(rows=5))  # the total still says 4


def edit_a_hash(root: Path) -> None:
    _edit(root, lambda m: m["files"][0].update(sha256="0" * 64))


def drop_a_part_from_the_manifest(root: Path) -> None:
    _edit(root, lambda m: m.update(files=[], rows=0))


def _latest(record: dict) -> Callable[[Path], None]:
    return lambda root: (root / "ds" / LATEST).write_text(json.dumps(record))


def foreign_latest(root: Path) -> None:
    shutil.copyfile(root / "other" / LATEST, root / "ds" / LATEST)  # other's, naming other@v1


def absolute_latest(root: Path) -> None:
    _latest({"dataset": "ds", "version": str(root.parent / "outside" / "v1")})(root)


@dataclass
class Tamper:
    id: str
    apply: Callable[[Path], None]
    named: str                       # the file the line names, under the root
    words: tuple[str, ...]
    ref: str = "ds@v2"               # what the readers are asked for
    sizes_tell: bool = True          # False: only a SHA-256 tells (`show --sizes-only` does not read the parts)


TAMPERS = [
    Tamper("changed-byte", change_a_byte, "ds/v2/part-00000.parquet",
           ("does not match the manifest", "SHA-256", "changed since it was published"), sizes_tell=False),
    Tamper("removed-part", remove_the_part, "ds/v2/part-00000.parquet", ("missing", "the manifest lists it")),
    Tamper("extra-part", add_a_part, "ds/v2/part-00001.parquet", ("is not in the release's manifest", "remove it")),
    Tamper("extra-hidden-file", add_a_hidden_file, "ds/v2/.DS_Store", ("is not in the release's manifest",)),
    Tamper("edited-rows", edit_the_rows, "ds/v2/_manifest.json", ("its 'rows' (4) are not the 5 rows",)),
    Tamper("edited-hash", edit_a_hash, "ds/v2/part-00000.parquet", ("does not match the manifest", "SHA-256"),
           sizes_tell=False),
    Tamper("part-dropped-from-manifest", drop_a_part_from_the_manifest, "ds/v2/part-00000.parquet",
           ("is not in the release's manifest",)),
    Tamper("foreign-latest", foreign_latest, "ds/latest.json", ("names dataset 'other', not 'ds'",), ref="ds"),
    Tamper("latest-climbs-out", _latest({"dataset": "ds", "version": "../../outside/v1"}), "ds/latest.json",
           ("its version '../../outside/v1' is no version name", "'/'"), ref="ds"),
    Tamper("latest-absolute", absolute_latest, "ds/latest.json", ("is no version name", "'/'"), ref="ds"),
    Tamper("latest-names-no-version", _latest({"dataset": "ds", "version": "v9"}), "ds/latest.json",
           ("its version 'v9' does not exist",), ref="ds"),
    Tamper("latest-names-another-manifest",
           _latest({"dataset": "ds", "version": "v2", "manifest": "v1/_manifest.json"}), "ds/latest.json",
           ("its manifest 'v1/_manifest.json' is not its version's",), ref="ds"),
]

# Each reader: the arguments after `releases --root ROOT`, or a catalog call, given the reference.
CLI = {
    "show": lambda ref: ["show", ref],
    "show-json": lambda ref: ["show", ref, "--json"],
    "show-sizes-only": lambda ref: ["show", ref, "--sizes-only"],
    "export": lambda ref: ["export", ref, "--to", "out.parquet"],
    "diff": lambda ref: ["diff", "ds@v1", ref],
    "verify": lambda ref: ["verify", ref],
}
API = {
    "load": lambda cat, ref: cat.load(ref, columns=["age"]),
    "export-api": lambda cat, ref: cat.export(ref, "out.csv"),
    "diff-api": lambda cat, ref: cat.diff(ref, "ds@v1"),
    "verify-api": lambda cat, ref: cat.verify(ref),
    "dataset-verify": lambda cat, ref: cat.dataset(ref, verify=True),
}


@pytest.mark.parametrize("tamper", TAMPERS, ids=[t.id for t in TAMPERS])
def test_every_reader_refuses_a_tampered_release_with_one_line(tamper, releases, capsys):
    r = releases(tamper.apply)
    shown = f"{r.root}/{tamper.named}"
    for reader in [*CLI, *API]:
        if not tamper.sizes_tell and reader == "show-sizes-only":  # the manifest and a listing: a hash tells
            assert main(["releases", "--root", r.root, *CLI[reader](tamper.ref)]) == 0
            out = capsys.readouterr().out
            assert out.endswith("checked  each file's size as the manifest lists, nothing else in the release "
                                "(--sizes-only: SHA-256 not checked)\n"), out
            continue
        if reader in CLI:
            rc = main(["releases", "--root", r.root, *CLI[reader](tamper.ref)])
            out, err = capsys.readouterr()
            assert rc == 2 and out == "", (reader, rc, out, err)
            assert err.startswith("error: ") and err.count("\n") == 1, (reader, err)
            message = err
        else:
            with pytest.raises(ReleaseIntegrityError) as caught:
                API[reader](Catalog(r.root), tamper.ref)
            message = str(caught.value)
            assert "\n" not in message, (reader, message)
        assert shown in message and all(w in message for w in tamper.words), (reader, shown, tamper.words, message)
        assert list(Path.cwd().iterdir()) == [], reader  # an export wrote nothing, not even a temporary


def test_every_reader_serves_an_untouched_release(releases, capsys):
    r = releases()
    for reader in [*CLI, *API]:
        if reader in CLI:
            assert main(["releases", "--root", r.root, *CLI[reader]("ds")]) == 0, capsys.readouterr().err
        else:
            API[reader](Catalog(r.root), "ds")
        out = capsys.readouterr().out
        if reader == "verify":
            size = (r.local / "ds/v2/part-00000.parquet").stat().st_size
            assert out == f"ds@v2: ok: 1 files, {size:,} bytes, 4 rows, each file's size and SHA-256 as its " \
                          "manifest lists, nothing else in the release\n"
        if reader == "show":
            assert out.endswith("checked  1 files: each one's size and SHA-256 as the manifest lists, nothing else "
                                "in the release\n"), out
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["out.csv", "out.parquet"]


def test_the_publisher_refuses_a_bad_latest_json_as_the_catalog_does(releases):
    """``latest.json`` is checked by one function (``layout.check_latest``): the publisher (and
    prune) and the catalog refuse it with the same line."""
    for tamper in [t for t in TAMPERS if t.named.endswith(LATEST)]:
        r = releases(tamper.apply)
        with pytest.raises(ReleaseIntegrityError) as by_catalog:
            Catalog(r.root).resolve("ds")
        with pytest.raises(ReleaseIntegrityError) as by_publisher:
            latest_version(release_store(r.root, "ds").root)
        assert str(by_publisher.value) == str(by_catalog.value), tamper.id
        assert str(by_catalog.value).startswith(f"{r.root}/ds/latest.json: "), tamper.id
        shutil.rmtree(r.local)
        if r.root.startswith("memory:"):
            fsspec.filesystem("memory").rm(r.root.removeprefix("memory:/"), recursive=True)


def test_verify_reports_every_problem_in_one_line(releases, capsys):
    r = releases(lambda root: (change_a_byte(root), add_a_part(root), add_a_hidden_file(root)))
    assert main(["releases", "--root", r.root, "verify", "ds@v2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ds@v2 failed verification (3 problems): ") and err.count("\n") == 1, err
    for name in ("part-00000.parquet: does not match", "part-00001.parquet: is not in", ".DS_Store: is not in"):
        assert f"{r.root}/ds/v2/{name}" in err, (name, err)
    assert main(["releases", "--root", r.root, "verify", "ds@v1"]) == 0  # the other version is untouched


def test_a_manifest_edited_consistently_is_told_by_the_parts(releases, capsys):
    """Rows edited in the entry and the total: sizes and hashes still match, the parts' footers do
    not; a reader that decodes the parts refuses it, and verify."""
    r = releases(lambda root: _edit(root, lambda m: (m["files"][0].update(rows=5), m.update(rows=5))))
    assert main(["releases", "--root", r.root, "show", "ds@v2"]) == 0  # sizes and hashes cannot tell
    capsys.readouterr()
    for read in (lambda c: c.load("ds@v2"), lambda c: c.verify("ds@v2")):
        with pytest.raises(ReleaseIntegrityError) as caught:
            read(Catalog(r.root))
        assert f"{r.root}/ds/v2/_manifest.json: " in str(caught.value)
        assert "lists 5 rows for part-00000.parquet, which holds 4" in str(caught.value)


def test_a_release_from_before_report_files_has_its_reports_checked_for_presence(releases, capsys):
    """Manifests written before ``report_files`` list their reports by name only: a report is then
    checked for presence (and nothing beside it), not for its size or hash."""
    def card(root: Path) -> None:
        (root / "ds/v2" / DATACARD).write_text("# ds\n")
        _edit(root, lambda m: m.update(reports=[DATACARD]))

    r = releases(card)
    cat = Catalog(r.root)
    assert cat.read_text("ds@v2", DATACARD) == "# ds\n" and cat.verify("ds@v2")["files"] == 2
    (r.local / "ds/v2" / DATACARD).unlink()
    if r.root.startswith("memory:"):
        fsspec.filesystem("memory").rm(f"{r.root.removeprefix('memory:/')}/ds/v2/{DATACARD}")
    for read in (lambda: cat.read_text("ds@v2", DATACARD), lambda: cat.load("ds@v2"), lambda: cat.verify("ds@v2")):
        with pytest.raises(ReleaseIntegrityError, match=f"{r.root}/ds/v2/{DATACARD}: missing"):
            read()


# -- a real release: its data card and reports, its lineage -----------------------------------------


def test_a_published_release_verifies_and_its_data_card_is_checked(scored_tiny, capsys):
    cfg = scored_tiny
    publish.run(cfg, "tiny", version="v1")
    root = cfg.publish.release_root
    folder = Path(root) / "tiny" / "v1"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert [r["path"] for r in manifest["report_files"]] == manifest["reports"] == [DATACARD]
    assert manifest["report_files"][0]["sha256"] == sha256_file(folder / DATACARD)
    cat = Catalog(root)
    assert cat.verify("tiny")["files"] == 4 and "quality" in cat.read_text("tiny", DATACARD)
    assert main(["releases", "--root", root, "verify", "tiny"]) == 0
    assert capsys.readouterr().out.startswith("tiny@v1: ok: 4 files, ")

    # A data card edited in place (same size): reading it, and verify, refuse it.
    card = (folder / DATACARD).read_text()
    (folder / DATACARD).write_text(card.replace("Intended use", "Intended USE"))
    for read in (lambda: cat.read_text("tiny", DATACARD), lambda: cat.verify("tiny")):
        with pytest.raises(ReleaseIntegrityError, match=f"{folder / DATACARD}: does not match the manifest"):
            read()
    (folder / DATACARD).write_text(card)

    # The manifest's lineage and params against the parts' metadata and the params' hash.
    original = (folder / MANIFEST).read_text()
    for edit, words in ((lambda m: m.update(model_hash="f" * 64), "its 'model_hash' is not the one in part-00000"),
                        (lambda m: m["params"]["train"].update(epochs=500), "its 'params' are not the ones")):
        m = json.loads(original)
        edit(m)
        (folder / MANIFEST).write_text(json.dumps(m))
        assert len(cat.load("tiny")) == 250  # what a read checks still holds: only verify tells
        with pytest.raises(ReleaseIntegrityError, match=f"{folder / MANIFEST}: {words}"):
            cat.verify("tiny")
    (folder / MANIFEST).write_text(original)
    assert cat.verify("tiny")["rows"] == 250
