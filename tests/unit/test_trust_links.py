"""Trust at the boundaries (issue 32): nothing planted in a shared folder (a symbolic link, a FIFO,
a folder, another dataset's release) makes the pipeline write through it, replace it or serve it;
and a CSV export does not hand a spreadsheet formulas to run. Each refusal is one clear line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline import publish
from pipeline.__main__ import main
from pipeline.catalog import Catalog, neutralised
from pipeline.errors import PipelineError, ReleaseError
from pipeline.files import dataset_run_lock
from pipeline.release.store import LocalFolder
from tests.unit.test_catalog_hostile import release

PRECIOUS = b"someone else's file\n"


@pytest.fixture
def precious(tmp_path) -> Path:
    """A file outside every folder the pipeline owns: a planted link points here."""
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir()
    path.write_bytes(PRECIOUS)
    return path


def one_line_cli(capsys, *args: str) -> str:
    """Run the CLI, expecting the one-line error (exit 2); returns that line."""
    rc = main(list(args))
    out, err = capsys.readouterr()
    assert rc == 2 and out == "", (rc, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def one_line(caught: pytest.ExceptionInfo, *words: str) -> None:
    message = str(caught.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)


# -- finding 2: locks --------------------------------------------------------------------------------


def test_a_publish_lock_that_is_a_link_is_refused_and_its_target_kept(tiny_cfg, precious, monkeypatch):
    root = Path(tiny_cfg.publish.release_root) / "tiny"
    root.mkdir(parents=True)
    (root / ".lock").symlink_to(precious)
    # The lock is taken before any scored work is read further: no need for a trained model here.
    monkeypatch.setattr(publish, "read_scored_work", lambda *a: None)
    with pytest.raises(ReleaseError) as caught:
        publish.run(tiny_cfg, "tiny")
    one_line(caught, str(root / ".lock"), "symbolic link", "remove it")
    assert precious.read_bytes() == PRECIOUS and (root / ".lock").is_symlink()


def test_a_publish_lock_is_never_truncated_and_must_be_a_regular_file(tmp_path):
    root = tmp_path / "releases" / "ds"
    root.mkdir(parents=True)
    (root / ".lock").write_bytes(b"left by another host\n")
    with LocalFolder(root).lock():
        pass
    assert (root / ".lock").read_bytes() == b"left by another host\n"

    (root / ".lock").unlink()
    os.mkfifo(root / ".lock")
    with pytest.raises(ReleaseError) as caught, LocalFolder(root).lock():
        pass
    one_line(caught, str(root / ".lock"), "not a regular file", "remove it")


def test_a_run_lock_that_is_a_link_is_refused_and_its_target_kept(tmp_path, precious):
    folder = tmp_path / "work" / "ds"
    folder.mkdir(parents=True)
    (folder / ".run.lock").symlink_to(precious)
    with pytest.raises(PipelineError) as caught, dataset_run_lock(tmp_path / "work", "ds"):
        pass
    one_line(caught, str(folder / ".run.lock"), "symbolic link", "remove it")
    assert precious.read_bytes() == PRECIOUS

    (folder / ".run.lock").unlink()
    (folder / ".run.lock").write_bytes(b"pid 42\n")
    with dataset_run_lock(tmp_path / "work", "ds") as path:
        assert path.read_bytes() == b"pid 42\n"  # opened without truncation


# -- finding 2: export targets -----------------------------------------------------------------------


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "releases"
    release(root, "ds", "v1")
    release(root, "other", "v1")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return root


def plant(kind: str, path: Path, precious: Path) -> None:
    if kind == "link":
        path.symlink_to(precious)
    elif kind == "dangling-link":
        path.symlink_to(path.parent / "nowhere.csv")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(PRECIOUS)


@pytest.mark.parametrize("via", ["api", "cli"])
@pytest.mark.parametrize("kind, words", [
    ("link", ("symbolic link", "never replaces")),
    ("dangling-link", ("symbolic link",)),
    ("fifo", ("not a regular file",)),
    ("folder", ("is a folder",)),
    ("file", ("exists already", "--force")),
])
def test_export_never_replaces_what_is_there(kind, words, via, root, precious, capsys):
    target = Path.cwd() / "out.csv"
    plant(kind, target, precious)
    if via == "cli":
        err = one_line_cli(capsys, "releases", "--root", str(root), "export", "ds@v1", "--to", "out.csv")
        assert all(w in err for w in words), err
    else:
        with pytest.raises(ReleaseError) as caught:
            Catalog(str(root)).export("ds@v1", "out.csv")
        one_line(caught, "'out.csv'", *words)
    assert precious.read_bytes() == PRECIOUS
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["out.csv"]  # no temporary left
    if kind == "file":
        assert target.read_bytes() == PRECIOUS


@pytest.mark.parametrize("kind", ["link", "fifo", "folder", "file"])
def test_export_force_replaces_only_a_regular_file(kind, root, precious, capsys):
    target = Path.cwd() / "out.csv"
    plant(kind, target, precious)
    rc = main(["releases", "--root", str(root), "export", "ds@v1", "--to", "out.csv", "--force"])
    out, err = capsys.readouterr()
    if kind == "file":
        assert rc == 0 and err == "" and "3 rows -> out.csv" in out, (rc, out, err)
        assert not target.is_symlink() and len(pd.read_csv(target)) == 3
    else:
        assert rc == 2 and err.count("\n") == 1, (rc, err)
        assert precious.read_bytes() == PRECIOUS
        with pytest.raises(ReleaseError):
            Catalog(str(root)).export("ds@v1", "out.csv", force=True)


def test_export_to_an_unknown_protocol_is_one_line(root, capsys):
    err = one_line_cli(capsys, "releases", "--root", str(root), "export", "ds@v1", "--to", "foo://x.csv")
    assert "'foo://x.csv'" in err and "foo" in err, err
    with pytest.raises(ReleaseError) as caught:
        Catalog(str(root)).export("ds@v1", "foo://x.csv")
    one_line(caught, "'foo://x.csv'")


# -- finding 3: the catalog stays inside its root ----------------------------------------------------


def link_version(root: Path, outside: Path) -> str:
    release(outside, "ds", "v3", pd.DataFrame({"secret": ["SENTINEL"]}), latest=False)
    (root / "ds" / "v3").symlink_to(outside / "ds" / "v3")
    return "ds/v3"


def link_version_inside(root: Path, outside: Path) -> str:
    (root / "ds" / "v3").symlink_to(root / "ds" / "v1")  # a link is refused even when it stays inside
    return "ds/v3"


def _link_file(root: Path, outside: Path, name: str) -> str:
    """ds@v3 in the root with its file ``name`` a link to the same file of a release outside."""
    release(outside, "ds", "v3", pd.DataFrame({"secret": ["SENTINEL"]}), latest=False)
    release(root, "ds", "v3", latest=False)
    path = root / "ds" / "v3" / name
    path.unlink()
    path.symlink_to(outside / "ds" / "v3" / name)
    return f"ds/v3/{name}"


def link_part(root: Path, outside: Path) -> str:
    return _link_file(root, outside, "part-00000.parquet")


def link_datacard(root: Path, outside: Path) -> str:
    release(root, "ds", "v3", latest=False, reports=["_DATACARD.md"])
    (outside / "card.md").write_text("SENTINEL")
    (root / "ds" / "v3" / "_DATACARD.md").symlink_to(outside / "card.md")
    return "ds/v3/_DATACARD.md"


def link_manifest(root: Path, outside: Path) -> str:
    return _link_file(root, outside, "_manifest.json")


def fifo_part(root: Path, outside: Path) -> str:
    release(root, "ds", "v3", latest=False)
    part = root / "ds" / "v3" / "part-00000.parquet"
    part.unlink()
    os.mkfifo(part)  # reading it would hang
    return "ds/v3/part-00000.parquet"


@pytest.mark.parametrize("plant_in, words", [
    (link_version, ("symbolic link", "remove the link")),
    (link_version_inside, ("symbolic link",)),
    (link_part, ("symbolic link",)),
    (link_datacard, ("symbolic link",)),
    (link_manifest, ("symbolic link",)),
    (fifo_part, ("not a regular file",)),
], ids=lambda v: v.__name__ if callable(v) else None)
def test_the_catalog_refuses_links_out_of_its_root(plant_in, words, root, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    planted = plant_in(root, outside)
    shown = f"{root}/{planted}"
    cat = Catalog(str(root))
    reads = [lambda: cat.load("ds@v3"), lambda: cat.export("ds@v3", "out.csv")]
    if planted.endswith("_DATACARD.md"):
        reads = [lambda: cat.read_text("ds@v3", "_DATACARD.md")]
    elif not planted.endswith(".parquet"):  # the folder or its manifest: nothing of it is read
        reads += [lambda: cat.manifest("ds@v3"), lambda: cat.read_text("ds@v3", "_DATACARD.md")]
    for read in reads:
        with pytest.raises(ReleaseError) as caught:
            read()
        one_line(caught, shown, *words)
    if not planted.endswith(".md"):  # an export reads the manifest and the parts, not the card
        err = one_line_cli(capsys, "releases", "--root", str(root), "export", "ds@v3", "--to", "out.csv")
        assert shown in err, err
        assert not (Path.cwd() / "out.csv").exists()
    if not planted.endswith((".parquet", ".md")):  # `list ds` reads manifests: it shows v3 as broken
        assert main(["releases", "--root", str(root), "list", "ds"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line for line in lines if line.startswith("v3  broken: ") and shown in line], lines
    assert cat.load("ds@v1")["city"].tolist() == ["Paris", "Lyon", "Nice"]  # the rest still served


def test_a_linked_dataset_folder_or_latest_is_refused_and_listed_as_broken(root, tmp_path, capsys):
    outside = tmp_path / "outside"
    release(outside, "evil", "v1", pd.DataFrame({"secret": ["SENTINEL"]}))
    release(outside, "ds", "v1")
    (root / "evil").symlink_to(outside / "evil")
    (root / "other" / "latest.json").unlink()
    (root / "other" / "latest.json").symlink_to(outside / "ds" / "latest.json")
    cat = Catalog(str(root))
    for read, shown in [(lambda: cat.load("evil"), "evil"), (lambda: cat.versions("evil"), "evil"),
                        (lambda: cat.manifest("evil@v1"), "evil"), (lambda: cat.load("other"), "other/latest.json")]:
        with pytest.raises(ReleaseError) as caught:
            read()
        one_line(caught, f"{root}/{shown}", "symbolic link")
    assert main(["releases", "--root", str(root), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ds  latest v1  (1 versions)"
    assert lines[1].startswith("evil  broken: ") and "symbolic link" in lines[1], lines
    assert lines[2].startswith("other  broken: ") and "symbolic link" in lines[2] and len(lines) == 3, lines


@pytest.mark.parametrize("source, named", [("other/v1", "names dataset 'other' and version 'v1'"),
                                           ("ds/v1", "names version 'v1'")])
def test_a_release_copied_in_under_another_name_is_refused(source, named, root, capsys):
    shutil.copytree(root / source, root / "ds" / "v3")
    (root / "ds" / "latest.json").write_text(json.dumps({"dataset": "ds", "version": "v3"}))
    cat = Catalog(str(root))
    for read in (lambda: cat.load("ds"), lambda: cat.manifest("ds@v3"), lambda: cat.export("ds", "out.csv")):
        with pytest.raises(ReleaseError) as caught:
            read()
        one_line(caught, f"{root}/ds/v3/_manifest.json", named, "not ds@v3")
    err = one_line_cli(capsys, "releases", "--root", str(root), "show", "ds")
    assert named in err, err
    assert main(["releases", "--root", str(root), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ds  broken: ") and named in lines[0] and lines[1] == "other  latest v1  (1 versions)"


# -- finding 9 (parts) -------------------------------------------------------------------------------

CELLS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "plain", None, "a=b"]


@pytest.mark.parametrize("keep", [False, True])
def test_csv_export_neutralises_formula_cells(keep, root, capsys):
    n = len(CELLS)
    frame = pd.DataFrame({"text": CELLS, "count": range(-n, 0), "share": [-0.5] * n,
                          "cat": pd.Categorical(["=1+1"] * (n - 1) + ["ok"]), "=col": ["x"] * n})
    release(root, "ds", "v3", frame, latest=False)
    args = ["releases", "--root", str(root), "export", "ds@v3", "--to", "out.csv"]
    assert main(args + (["--keep-formulas"] if keep else [])) == 0, capsys.readouterr()
    got = pd.read_csv("out.csv", dtype=str, keep_default_na=False)
    quote = "" if keep else "'"
    assert list(got.columns) == ["text", "count", "share", "cat", f"{quote}=col"]
    assert got["text"].tolist() == [quote + c if c and c[0] in "=+-@\t" else (c or "") for c in CELLS]
    assert got["count"].tolist() == [str(i) for i in range(-n, 0)]  # numbers are no text cells
    assert got["share"].tolist() == ["-0.5"] * n
    assert got["cat"].tolist() == [f"{quote}=1+1"] * (n - 1) + ["ok"]
    # The API: the same default, the option, and Parquet untouched.
    cat = Catalog(str(root))
    cat.export("ds@v3", "api.csv", neutralise_formulas=not keep)
    assert pd.read_csv("api.csv", dtype=str, keep_default_na=False).equals(got)
    cat.export("ds@v3", "out.parquet")
    assert pd.read_parquet("out.parquet")["text"].tolist() == CELLS
    # A CR: leading, or inside a cell before a formula (CSV writers leave a bare CR unquoted, and a
    # reader that breaks lines there would start a row with the formula).
    assert neutralised(pd.DataFrame({"t": ["\rx", "x\r", "x\r=cmd|' /C calc'!A0", "a\n@b"]}))["t"].tolist() == [
        "'\rx", "x\r", "x\r'=cmd|' /C calc'!A0", "a\n'@b"]


def test_releases_list_marks_a_latest_that_names_a_missing_version(root, capsys):
    (root / "ds" / "latest.json").write_text(json.dumps({"dataset": "ds", "version": "v9"}))
    assert main(["releases", "--root", str(root), "list"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == "" and len(lines) == 2 and lines[1] == "other  latest v1  (1 versions)", (out, err)
    assert lines[0].startswith("ds  broken: ") and "its version 'v9' does not exist" in lines[0]
    assert "ds/latest.json" in lines[0]
    assert main(["releases", "--root", str(root), "list", "ds"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("latest  broken: ") and "its version 'v9' does not exist" in lines[0], lines
    assert lines[1] == "v1           3 rows  quality 0.900" and len(lines) == 2, lines


def test_export_to_a_store_replaces_an_object_only_with_force(root, tmp_path):
    import fsspec

    url = f"memory://trust-{tmp_path.name}/out.csv"
    cat = Catalog(str(root))
    try:
        cat.export("ds@v1", url)
        with pytest.raises(ReleaseError) as caught:
            cat.export("ds@v1", url)
        one_line(caught, repr(url), "exists already", "--force")
        cat.export("ds@v1", url, force=True)
        with fsspec.open(url, "rt") as f:
            assert len(pd.read_csv(f)) == 3
    finally:
        fsspec.filesystem("memory").rm(f"/trust-{tmp_path.name}", recursive=True)
