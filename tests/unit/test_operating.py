"""What the person running the pipeline sees: progress off a terminal at a steady cadence, JSON log
lines, the thread count, ad-hoc datasets remembered by name, ``--version``."""

from __future__ import annotations

import json
import logging
import time

import pytest
import yaml

from pipeline import progress
from pipeline.progress import Progress
from pipeline.runtime import thread_limits, usable_cores
from pipeline.stages import run_stage


@pytest.fixture
def cadence():
    """Progress lines every ``seconds`` for the test; the progress settings and the pipeline
    logger's level restored (``main`` undoes its own logging setup)."""
    pipeline_level = logging.getLogger("pipeline").level
    saved = dict(progress._settings)
    yield progress.set_cadence
    progress._settings.update(saved)
    logging.getLogger("pipeline").setLevel(pipeline_level)


def _lines(caplog, stage: str | None = None) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "pipeline.progress" and (stage is None or r.stage == stage)]


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_off_a_terminal_a_line_comes_at_the_cadence_not_at_every_step(caplog, cadence):
    caplog.set_level(logging.INFO, logger="pipeline")
    cadence(0.2)
    with Progress("train", 30, "epoch") as bar:
        for _ in range(30):  # 30 steps over ~1.2 s: about 6 lines, not 30
            time.sleep(0.04)
            bar.advance(1, rows=100, loss=0.5)
    lines = _lines(caplog)
    assert 3 <= len(lines) <= 10, [r.getMessage() for r in lines]
    last = lines[-1]
    assert last.getMessage().startswith("train: 30/30 epochs done") and last.fields["done"] == 30
    middle = lines[0].fields
    assert middle["total"] == 30 and middle["loss"] == 0.5 and middle["rows_per_s"] > 0 and "eta_s" in middle


def test_a_step_longer_than_the_cadence_still_gets_lines(caplog, cadence):
    """An MNIST epoch on a busy box took minutes without a line: the heartbeat says it is running."""
    caplog.set_level(logging.INFO, logger="pipeline")
    cadence(0.1)
    with Progress("score", 2, "metric family") as bar:
        bar.now("detection")
        time.sleep(0.55)
        bar.advance(1)
        bar.now("utility")
        bar.advance(1)
    beats = [r.getMessage() for r in _lines(caplog) if "now detection" in r.getMessage()]
    assert len(beats) >= 3, beats
    assert "0/2 metric families (0%)" in beats[0]


def test_a_long_epoch_off_a_terminal_says_how_far_into_it_the_work_is(caplog, cadence):
    """Issue 31: off a terminal the heartbeat said only that an epoch or shard was running; its
    lines now say how far into it the work is (reported with ``within``) and give an ETA from it."""
    caplog.set_level(logging.INFO, logger="pipeline")
    cadence(0.1)
    with Progress("train", 2, "epoch") as bar:
        for step in range(6):  # the first epoch: 6 steps over ~0.6 s, no epoch done yet
            time.sleep(0.1)
            progress.within(step + 1, 6, "step")  # what the loop (bar.within) and a model's sampling call
        bar.advance(1)
    inside = [r for r in _lines(caplog) if "epoch 1: " in r.getMessage()]
    assert len(inside) >= 2, [r.getMessage() for r in _lines(caplog)]
    last = inside[-1]
    assert last.fields["within_total"] == 6 and last.fields["within_unit"] == "step" and "eta_s" in last.fields
    assert "/6 steps (" in last.getMessage() and "first step running" not in last.getMessage()
    progress.within(1, 2, "step")  # outside any loop: nothing, no error


def test_a_rate_is_never_printed_as_zero():
    """Issue 31: "(0 rows/s)" for a few rows over a long time; nothing for a time too short to measure."""
    assert progress.rate_text(10, 40.0, "rows") == "0.25 rows/s"
    assert progress.rate_text(123_456, 2.0, "rows") == "61,728 rows/s"
    assert progress.rate_text(5, 0.001, "rows") is None and progress.rate_text(0, 5.0, "rows") is None


def test_the_data_card_rounds_seconds():
    """Issue 31: "847.6970 s" in the data card."""
    from pipeline.datacard import release_summary, render_datacard

    manifest = {"dataset": "adult", "version": "v1", "training": {"epochs": 250, "seconds": 847.697, "device": "cpu"}}
    assert "250 epochs in 848 s on cpu" in render_datacard(manifest, {})
    assert "(848 s on cpu)" in release_summary(manifest)
    manifest["training"]["seconds"] = 3.24
    assert "in 3.2 s on" in render_datacard(manifest, {})


def test_listeners_hear_each_steps_fraction(cadence):
    heard = []
    with progress.listening(lambda stage, fraction: heard.append(fraction)):
        with Progress("generate", 4, "shard") as bar:
            for _ in range(4):
                bar.advance(1)
    assert heard == [0.25, 0.5, 0.75, 1.0]


@pytest.mark.slow  # four stages: ~10 s
def test_train_generate_and_score_report_progress_with_their_figures(tiny_cfg, caplog, cadence):
    caplog.set_level(logging.INFO, logger="pipeline")
    tiny_cfg.runtime.progress_seconds = 0.001  # a line at every step
    tiny_cfg.generate.rows = 250  # 3 shards of 100
    for stage in ("ingest", "train", "generate", "score"):
        run_stage(stage, tiny_cfg, "tiny")
    train = _lines(caplog, "train")
    assert [r.fields["done"] for r in train if "done" in r.getMessage().split(",")[0]][-1] == 2
    assert all(r.dataset == "tiny" for r in train)
    assert any("generator_loss" in r.fields or "loss" in " ".join(r.fields) for r in train)
    generate = _lines(caplog, "generate")
    assert generate[-1].fields["done"] == 3 and generate[-1].fields["unit"] == "shard"
    assert generate[-1].fields["rows_per_s"] > 0
    families = [r.fields["family"] for r in caplog.records if r.name == "pipeline.score" and "family" in
                getattr(r, "fields", {})]
    assert families == ["fidelity", "heldout", "precision_recall", "coverage", "detection", "utility", "privacy",
                        "membership", "anonymity", "dp"]
    done = [r.getMessage() for r in caplog.records if r.name == "pipeline" and r.getMessage().endswith("s")
            and " done in " in r.getMessage()]
    assert [m.split()[0] for m in done] == ["ingest", "train", "generate", "score"]


def test_json_logs_parse_line_by_line_with_dataset_stage_and_numbers(tmp_path, tiny_source, cadence):
    from pipeline.__main__ import main
    from tests.conftest import tiny_config

    cfg = tiny_config(tmp_path, tiny_source)
    params = tmp_path / "params.yaml"
    tree = cfg.to_dict()
    tree["runtime"]["progress_seconds"] = 0.001
    params.write_text(yaml.safe_dump(tree))
    log_file = tmp_path / "logs" / "run.jsonl"
    for stage in ("ingest", "train"):
        assert main([stage, "--dataset", "tiny", "--params", str(params), "--log-format", "json",
                     "--log-file", str(log_file)]) == 0
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]  # every line parses
    assert {"time", "level", "logger", "dataset", "stage", "message"} <= set(lines[0])
    epochs = [x for x in lines if x["logger"] == "pipeline.progress" and x["stage"] == "train"]
    assert epochs and all(x["dataset"] == "tiny" and isinstance(x["done"], int) for x in epochs)
    assert isinstance(epochs[-1]["elapsed_s"], float) and epochs[-1]["total"] == 2
    assert any(x["stage"] == "ingest" and x["message"].startswith("ingest tiny") for x in lines)
    # An error is a JSON line too.
    assert main(["score", "--dataset", "nosuch", "--params", str(params), "--log-format", "json",
                 "--log-file", str(log_file)]) == 2
    last = json.loads(log_file.read_text().splitlines()[-1])
    assert last["level"] == "ERROR" and "'nosuch' is not in params" in last["message"]


def test_usable_cores_follow_the_cgroup_quota(tmp_path):
    assert usable_cores(tmp_path) >= 1  # no cgroup files: the affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert usable_cores(tmp_path) == min(2, usable_cores(tmp_path / "none"))
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert usable_cores(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == usable_cores(tmp_path / "none")


def test_thread_limits_cap_torch_and_the_openmp_pools():
    import torch
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    try:
        with thread_limits(1):
            assert torch.get_num_threads() == 1
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    finally:
        torch.set_num_threads(before)


def test_an_older_params_key_says_where_it_moved(tmp_path, tiny_source):
    from pipeline.errors import ConfigError
    from tests.conftest import tiny_config

    with pytest.raises(ConfigError, match=r"train.threads: unknown key \(moved to runtime.threads\)"):
        tiny_config(tmp_path, tiny_source, **{"train.threads": 2})


def test_version(capsys):
    from pipeline.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("synthfactory 0.")


def _params_file(tmp_path, tiny_source, **overrides):
    from tests.conftest import tiny_config

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path, tiny_source, **overrides).to_dict()))
    return path


def test_validate_prints_the_plan_of_a_good_source(tmp_path, tiny_source, capsys, cadence):
    from pipeline.__main__ import main

    params = _params_file(tmp_path, tiny_source, **{"score.thresholds": {"quality.overall": {"min": 0.7}}})
    assert main(["validate", "--dataset", "tiny", "--params", str(params), "--json", "-q"]) == 0
    plan = json.loads(capsys.readouterr().out)
    kinds = {c["name"]: (c["kind"], c["nulls"] > 0) for c in plan["columns"]}
    assert kinds["city"] == ("categorical", True) and kinds["user_id"][0] == "id" and kinds["age"][0] == "integer"
    assert plan["target"] == {"column": "income", "kind": "categorical", "task": "classification",
                              "utility_judged": True}
    assert plan["rows"] == {"source": 240, "train": 192, "holdout": 48, "generate": 192,
                            "holdout_from": "source, ingest.holdout_fraction 0.2"}
    assert plan["gate"] == {"quality.overall": {"min": 0.7}} and plan["model"]["name"] == "ctgan"
    est = plan["estimate"]
    assert est["train_s"] > 0 and est["sample_rows_per_s"] > 0 and est["peak_memory_mb"] > 100 and est["features"] > 8
    assert not (tmp_path / "work").exists()  # nothing written, nothing trained
    assert main(["validate", "--dataset", "tiny", "--params", str(params), "--no-estimate", "-q"]) == 0
    text = capsys.readouterr().out
    assert "target: income (categorical), task classification" in text and text.endswith("ok: the run can start\n")


def test_validate_fails_a_bad_source_in_one_line_with_exit_2(tmp_path, tiny_source, capsys, cadence):
    from pipeline.__main__ import main

    params = _params_file(tmp_path, tiny_source, **{"datasets.tiny.target": "salary"})
    assert main(["validate", "--dataset", "tiny", "--params", str(params), "--no-estimate", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "salary" in err and "target column not found" in err and "\n" not in err
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    assert main(["validate", "--source", str(bad), "--params", str(params), "--no-estimate", "-q"]) == 2
    assert "bad.csv" in capsys.readouterr().err


@pytest.mark.slow  # three full runs of a tiny table: ~10 s
def test_an_ad_hoc_dataset_is_remembered_for_stage_commands(tmp_path, tiny_source, capsys, cadence):
    from pipeline.__main__ import main

    params = _params_file(tmp_path, tiny_source)
    csv = tmp_path / "shop.csv"
    from tests.conftest import tiny_frame

    tiny_frame(200, seed=3).to_csv(csv, index=False)
    common = ["--params", str(params), "-q", "--set", "train.epochs=1"]
    assert main(["run", "--source", str(csv), "--name", "shop", "--target", "income", *common]) == 0
    entry = json.loads((tmp_path / "work" / "shop" / "dataset.json").read_text())["entry"]
    assert entry["source"] == str(csv) and entry["target"] == "income"
    # Each stage by name, as for a dataset in params.
    for stage in ("score", "publish"):
        assert main([stage, "--dataset", "shop", *common]) == 0
    assert main(["run", "--dataset", "shop", *common]) == 0
    # A name in params is refused unless --force.
    assert main(["run", "--source", str(csv), "--name", "tiny", *common]) == 2
    assert "add --force" in capsys.readouterr().err
    assert main(["score", "--dataset", "nothing", *common]) == 2


@pytest.mark.slow  # ~1 s: an interrupted training run
def test_ctrl_c_in_train_is_one_line_naming_the_resume_command_and_exit_130(tmp_path, tiny_source, capsys, cadence,
                                                                              monkeypatch):
    """Issue 31: Ctrl-C printed a traceback with no hint of ``--resume``."""
    from pipeline import train
    from pipeline.__main__ import main

    params = _params_file(tmp_path, tiny_source)
    common = ["--dataset", "tiny", "--params", str(params), "-q", "--set", "train.epochs=4"]
    assert main(["ingest", *common]) == 0
    write_log = train._write_log

    def interrupted_after_epoch_2(paths, history):  # after the epoch's checkpoint, as a Ctrl-C may come
        write_log(paths, history)
        if len(history) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "_write_log", interrupted_after_epoch_2)
    monkeypatch.setattr(train, "LOG_SECONDS", 0.0)  # the log after every epoch, so that epoch 2 is interrupted
    assert main(["train", *common]) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    again = f"python -m pipeline train --dataset tiny --resume --params {params} --set train.epochs=4"
    assert err == f"cancelled by SIGINT: train of tiny stopped with 2 epochs checkpointed; continue with: {again}"
    monkeypatch.undo()
    assert main([*again.split()[3:], "-q"]) == 0  # the command it names continues the run
    assert len((tmp_path / "work" / "tiny" / "train_log.csv").read_text().splitlines()) == 1 + 4
    monkeypatch.setattr("pipeline.__main__.run_stage", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["generate", *common]) == 130
    assert capsys.readouterr().err.strip() == ("cancelled by SIGINT: generate of tiny stopped; run it again with: "
                                               f"python -m pipeline generate --dataset tiny --params {params} "
                                               "--set train.epochs=4")
