"""Trust at the boundaries: names confined to their roots, manifests that describe what made the
rows, one-line errors, crash leftovers removed."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import generate, ingest, publish, score, shards, train
from pipeline.__main__ import main
from pipeline.artifacts import StagePaths
from pipeline.config import Threshold
from pipeline.errors import BadNameError, InputDataError, ReleaseError
from pipeline.files import atomic_dir, remove_leftovers
from pipeline.names import check_name, name_from_file
from pipeline.release.contents import params_hash
from pipeline.release.layout import MANIFEST
from tests.conftest import REPO, tiny_config, tiny_frame


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A params file whose folders all live in tmp_path/run, a good CSV beside it, cwd = tmp_path/run."""
    run = tmp_path / "run"
    run.mkdir()
    tiny_frame(120).to_csv(run / "good.csv", index=False)
    (run / "params.yaml").write_text((REPO / "params.yaml").read_text().replace(
        "data/adult/", str(REPO / "data/adult") + "/").replace("data/mnist/", str(REPO / "data/mnist") + "/"))
    monkeypatch.chdir(run)
    return run


@pytest.mark.parametrize("name, words", [
    ("../evil2", "--name '../evil2' has '/'"),
    ("/some/abs/path", "--name '/some/abs/path' has '/'"),
    (".hidden", "--name '.hidden' must start with a letter or a digit"),
    ("a/b", "--name 'a/b' has '/'"),
    ("x" * 300, "is 300 characters long (at most 100)"),
    ("", "--name '' is empty"),
    ("a..b", "must not hold '..'"),
    ("tips; rm -rf ~", "has ';'"),
    ("$(touch pwned)", "has '$'"),
    ("new\nline", "has '\\n'"),
])
def test_bad_names_are_refused_before_anything_is_written(sandbox, capsys, name, words):
    before = _files(sandbox.parent)
    rc = main(["run", "--source", "good.csv", "--name", name, "--params", "params.yaml"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and err.startswith("error: ") and words in err
    assert _files(sandbox.parent) == before  # nothing written, inside or outside


def test_names_from_files_follow_the_rule():
    assert name_from_file("my data (1)") == "my_data_1"
    assert name_from_file("..") == "dataset" and name_from_file(".hidden") == "hidden"
    assert check_name(name_from_file("x" * 300)) == "x" * 100
    with pytest.raises(BadNameError):
        StagePaths.of("work", "../up")


def test_run_without_name_never_takes_over_a_configured_dataset(sandbox, capsys):
    (sandbox / "adult.csv").write_bytes((sandbox / "good.csv").read_bytes())
    before = _files(sandbox.parent)
    assert main(["run", "--source", "adult.csv", "--params", "params.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "its name 'adult' is a dataset in params.yaml" in err and "choose another --name" in err
    assert main(["run", "--source", "good.csv", "--name", "mnist", "--params", "params.yaml"]) == 2
    assert "--name mnist is a dataset in params.yaml" in capsys.readouterr().err
    assert _files(sandbox.parent) == before


def test_unwritable_release_root_fails_before_any_stage(sandbox, capsys):
    (sandbox / "blocker").write_text("a file where a folder should be")
    rc = main(["run", "--source", "good.csv", "--name", "good", "--params", "params.yaml",
               "--set", "publish.release_root=blocker/releases"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: publish.release_root: blocker/releases cannot be a folder")
    assert not (sandbox / "work").exists() and not (sandbox / "metrics").exists()


def test_set_errors_are_labelled_set_and_params_directory_is_one_line(sandbox, capsys):
    assert main(["train", "--dataset", "adult", "--params", "params.yaml", "--set", "train.epochs=many"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --set: train.epochs")
    assert main(["train", "--dataset", "adult", "--params", str(sandbox)]) == 2
    assert "is a directory, not a params file" in capsys.readouterr().err


@pytest.fixture
def trained(tmp_path, tiny_source):
    cfg = tiny_config(tmp_path, tiny_source)
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    return cfg


def test_generate_before_train_and_foreign_model_files_are_one_line_errors(tmp_path, tiny_source):
    cfg = tiny_config(tmp_path, tiny_source)
    ingest.run(cfg, "tiny")
    with pytest.raises(InputDataError, match="no trained model: run the train stage first"):
        generate.run(cfg, "tiny")
    train.run(cfg, "tiny")
    model_pt = StagePaths.of(cfg.work_dir, "tiny").model / "model.pt"

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    with open(model_pt, "wb") as f:
        pickle.dump({"w": Evil()}, f)
    with pytest.raises(InputDataError) as err:
        generate.run(cfg, "tiny")
    msg = str(err.value)
    assert "refused: unpickling could run code" in msg and "re-run the train stage" in msg
    assert "weights_only" not in msg and not (Path.cwd() / "pwned").exists()
    model_pt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InputDataError, match="truncated or not a torch file"):
        generate.run(cfg, "tiny")


def test_stale_temporaries_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    folder = tmp_path / "work" / "ds"
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    from pipeline.files import _OWNER

    stale = [folder / f".synthetic.{_OWNER}-{dead_pid}.abc_1.tmp", folder / f".prepared.old-{_OWNER}-{dead_pid}",
             folder / "score" / f".details.json.{_OWNER}-{dead_pid}.k2.tmp"]
    live = [folder / f".synthetic.{_OWNER}-{os.getpid()}.zz.tmp", folder / f".synthetic.otherhost-{dead_pid}.q.tmp"]
    for p in stale + live:
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.mkdir() if "synthetic" in p.name or "prepared" in p.name else p.write_text("x"))
    keep = [folder / "part-00000.parquet", folder / "old-notes.txt"]
    for p in keep:
        p.write_text("data")
    assert sorted(remove_leftovers(folder)) == sorted(stale)
    assert all(p.exists() for p in live + keep) and not any(p.exists() for p in stale)


@pytest.mark.slow  # a subprocess, killed
def test_killed_generate_leaves_a_temporary_that_the_next_run_removes(trained, tmp_path):
    cfg = trained
    paths = StagePaths.of(cfg.work_dir, "tiny")
    # A generate killed mid-way (os._exit: no cleanup runs) leaves its temporary folder behind.
    code = ("import os, sys; from pipeline import generate; from tests.conftest import tiny_config; "
            "from pathlib import Path; import pipeline.shards as s\n"
            "orig = s.write_parquet\n"
            "def die(*a, **k):\n    orig(*a, **k); os._exit(9)\n"
            "s.write_parquet = die\n"
            f"cfg = tiny_config(Path({str(tmp_path)!r}), Path({str(cfg.datasets['tiny'].source)!r}))\n"
            "generate.run(cfg, 'tiny')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 9, out.stderr
    left = [p for p in paths.root.iterdir() if p.name.startswith(".synthetic.") and p.name.endswith(".tmp")]
    assert len(left) == 1 and not paths.synthetic.exists()
    assert main(["generate", "--dataset", "tiny", "--params", _params_of(cfg, tmp_path), "-q"]) == 0
    assert not left[0].exists() and paths.synthetic.exists()


def _params_of(cfg, tmp_path: Path) -> str:
    import yaml

    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(cfg.to_dict()))
    return str(p)


def test_manifest_describes_the_settings_that_made_the_rows(scored_tiny, tmp_path):
    """Train and generate with one set of settings, publish with another: the manifest records the
    first, section by section, and the publisher's own only where it is the publisher's business."""
    cfg = scored_tiny
    made_by = cfg.to_dict()
    publisher = tiny_config(tmp_path, Path(cfg.datasets["tiny"].source), seed=99, **{"train.epochs": 100,
                            "generate.rows_per_shard": 7})
    res = publish.run(publisher, "tiny")
    m = json.loads((res.path / MANIFEST).read_text())
    # train.privacy off is recorded by its absence (model.json, the lineage: the bytes of before it existed)
    assert "privacy" not in m["params"]["train"] and made_by["train"]["privacy"]["epsilon"] is None
    made_by["train"].pop("privacy")
    for key in ("bounds", "categories"):  # likewise unset bounds and categories (ingest's record as before)
        assert made_by["datasets"]["tiny"].pop(key) == {}
    assert m["params"]["train"] == made_by["train"] and m["params"]["train"]["epochs"] == 2
    assert m["params"]["generate"] == made_by["generate"] and m["params"]["model"]["name"] == "ctgan"
    assert m["params"]["score"] == made_by["score"] and m["params"]["datasets"] == {"tiny": made_by["datasets"]["tiny"]}
    assert m["seed"] == 7 and m["seeds"] == {"ingest": 7, "train": 7, "generate": 7, "score": 7}
    assert m["training"]["epochs"] == 2 and "params_from_publisher" not in m
    assert m["params_hash"] == params_hash(m["params"])
    assert m["gate"]["changed_at_publish"] == []


@pytest.mark.slow  # a few seconds: keeps the fast tier under a minute
def test_gate_relaxed_at_publish_is_recorded_and_the_report_says_so(trained, tmp_path):
    cfg = trained
    cfg.score.thresholds = {"quality.overall": Threshold(min=0.9999)}
    cfg.score.report = True
    generate.run(cfg, "tiny")
    assert not score.run(cfg, "tiny").passed
    relaxed = tiny_config(tmp_path, Path(cfg.datasets["tiny"].source))
    relaxed.score.thresholds = {"quality.overall": Threshold(min=0.1)}
    res = publish.run(relaxed, "tiny")
    m = json.loads((res.path / MANIFEST).read_text())
    assert m["gate"]["passed"] and m["metrics"]["gate.passed"]
    assert m["gate"]["changed_at_publish"] == [{"metric": "quality.overall", "from": {"min": 0.9999, "max": None},
                                               "to": {"min": 0.1, "max": None}}]
    assert m["gate"]["changed_by"]["user"] is not None
    md = (res.path / "_report.md").read_text()
    html = (res.path / "_report.html").read_text()
    card = (res.path / "_DATACARD.md").read_text()
    for text in (md, html):
        assert "FAILED" not in text and "quality.overall: ≥ 0.9999 → ≥ 0.1" in text
    assert "**Gate: passed**" in md and "gate passed" in html
    assert "Quality gate: **passed**" in card and "`quality.overall`: ≥ 0.9999 → ≥ 0.1" in card
    # The score stage's own verdict, under its own thresholds, is left as it was.
    assert json.loads(StagePaths.of(cfg.work_dir, "tiny").details.read_text())["gate"]["passed"] is False


def test_corrupt_stage_records_are_one_line_errors(scored_tiny):
    cfg = scored_tiny
    gen = StagePaths.of(cfg.work_dir, "tiny").synthetic / "_generated.json"
    gen.write_text("{not json")
    with pytest.raises(InputDataError, match=r"_generated.json: not valid JSON .*re-run the generate stage"):
        publish.run(cfg, "tiny")
    gen.unlink()
    with pytest.raises(InputDataError, match="_generated.json: not found: run the generate stage first"):
        publish.run(cfg, "tiny")
    assert not (Path(cfg.publish.release_root) / "tiny").exists() or not publish.list_versions(
        Path(cfg.publish.release_root) / "tiny")


def test_atomic_dir_temporaries_name_their_maker(tmp_path):
    from pipeline.files import _OWNER

    with atomic_dir(tmp_path / "out") as tmp:
        assert tmp.name.startswith(f".out.{_OWNER}-{os.getpid()}.") and tmp.name.endswith(".tmp")


def test_generate_failing_mid_shard_keeps_the_previous_rows_and_leaves_nothing(trained, monkeypatch):
    cfg = trained
    cfg.generate.rows = 250  # three shards of 100
    generate.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    before = {p.name: p.read_bytes() for p in paths.synthetic.iterdir()}
    original = shards.write_parquet

    def fail_on_second_shard(table, path, *a, **k):
        if Path(path).name == "part-00001.parquet":
            raise OSError("injected: disk full")
        return original(table, path, *a, **k)

    monkeypatch.setattr(shards, "write_parquet", fail_on_second_shard)
    cfg.seed = 8
    with pytest.raises(OSError, match="injected"):
        generate.run(cfg, "tiny")
    assert {p.name: p.read_bytes() for p in paths.synthetic.iterdir()} == before
    assert not [p for p in paths.root.iterdir() if p.name.endswith(".tmp")]


def test_a_corrupt_latest_json_stops_publish_with_one_line(scored_tiny):
    cfg = scored_tiny
    publish.run(cfg, "tiny")
    latest = Path(cfg.publish.release_root) / "tiny" / "latest.json"
    for text, words in (("{oops", "unreadable"), ('{"version": "../../etc"}', "has '/'"),
                        ('{"version": "v99"}', "its version 'v99' does not exist")):
        latest.write_text(text)
        with pytest.raises(ReleaseError, match=f"latest.json: .*{words}.*repair it or delete it"):
            publish.run(cfg, "tiny")
