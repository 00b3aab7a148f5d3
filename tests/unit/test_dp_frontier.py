"""benchmarks/dp_frontier.py's own logic, without training any model: the epsilons it reads, the
peers' command lines (the same epsilon and delta for every side), the mean ± sd summary its JSON line
carries, and the one-line refusals; plus, where dpmm's environment exists, AIM's side end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
try:
    import dp_frontier
finally:
    sys.path.remove(str(REPO / "benchmarks"))


def test_epsilons_are_positive_numbers_or_off():
    assert dp_frontier.epsilon_of("off") is None and dp_frontier.epsilon_of("3") == 3.0
    assert dp_frontier.epsilon_of("0.5") == 0.5
    for bad in ("0", "-1", "inf", "nan", "three"):
        with pytest.raises(SystemExit, match=f"--epsilons '{bad}': expected a positive number or off"):
            dp_frontier.epsilon_of(bad)


def test_arguments_are_refused_in_one_line():
    with pytest.raises(SystemExit, match="--epsilons 'x'"):
        dp_frontier.parse_args(["--epsilons", "1", "x"])
    with pytest.raises(SystemExit, match="--delta 1.0: expected a number between 0 and 1"):
        dp_frontier.parse_args(["--delta", "1"])
    with pytest.raises(SystemExit, match="--peer-preprocessing-share 0.0"):
        dp_frontier.parse_args(["--peer-preprocessing-share", "0"])
    args = dp_frontier.parse_args(["--epsilons", "3", "3", "off", "--sides", "aim", "ours", "aim"])
    assert args.epsilons == ["3", "off"] and args.sides == ["aim", "ours"]
    assert dp_frontier.parse_args([]).epsilons == ["1", "3", "10", "off"]


@pytest.mark.parametrize("side, flag", [("mostly", "--mostly-python"), ("aim", "--dpmm-python")])
def test_a_missing_peer_python_is_refused_in_one_line_before_any_run(tmp_path, side, flag):
    missing = tmp_path / "nope" / "python"
    with pytest.raises(SystemExit) as err:
        dp_frontier.main(["--sides", side, flag, str(missing), "--quick"])
    message = str(err.value)
    assert message.startswith(f"{flag} {missing}: not found;") and "\n" not in message
    assert f"leave {side} out of --sides" in message
    # A Python without the package: the same one line, naming the module.
    with pytest.raises(SystemExit, match=f"{flag} {sys.executable}: cannot import "):
        dp_frontier.check_python(side, sys.executable)


def test_every_side_gets_the_same_epsilon_and_delta():
    args = dp_frontier.parse_args(["--delta", "1e-6", "--mostly-python", "/m/python", "--dpmm-python", "/d/python"])
    files = {"train": Path("t.parquet"), "out": Path("o.parquet"), "workspace": Path("ws")}
    mostly = dp_frontier.peer_command("mostly", 3.0, args, files, 100, 7, 2)
    aim = dp_frontier.peer_command("aim", 3.0, args, files, 100, 7, 2)
    assert mostly[0] == "/m/python" and aim[0] == "/d/python"
    opt = {cmd[0]: dict(zip(cmd[2::2], cmd[3::2])) for cmd in (mostly, aim)}
    assert opt["/m/python"]["--max-epsilon"] == opt["/d/python"]["--epsilon"] == "3.0"
    assert opt["/m/python"]["--delta"] == opt["/d/python"]["--delta"] == "1e-06"
    assert float(opt["/m/python"]["--value-protection-epsilon"]) == pytest.approx(0.3)  # 0.1 of epsilon
    assert opt["/d/python"]["--preprocessing-share"] == "0.1" and opt["/d/python"]["--iters"] == "1000"
    assert opt["/m/python"]["--seed"] == opt["/d/python"]["--seed"] == "7"
    plain = dp_frontier.peer_command("mostly", None, args, files, 100, 7, 2)  # off: the engine without DP
    assert "--max-epsilon" not in plain and "--value-protection-epsilon" not in plain
    quick = dp_frontier.parse_args(["--quick", "--dpmm-python", "/d/python"])
    q = dp_frontier.peer_command("aim", 1.0, quick, files, 100, 0, 2)
    assert q[q.index("--max-model-size") + 1] == "1.0" and q[q.index("--iters") + 1] == "20" and "--public-bounds" in q
    assert "--public-bounds" not in aim  # dpmm estimates the bounds privately unless told


def test_summary_gives_mean_and_sd_per_epsilon_and_side_in_order():
    run = {"train_s": 10.0, "epsilon_spent": 2.9, "shapes": 0.9, "trends": 0.8, "tstr": None, "detection_auc": 0.6,
           "mia_auc": 0.51}
    runs = [{"3": {"aim": run, "ours": run, "mostly": {**run, "train_s": 4.0}}, "off": {"ours": run}},
            {"3": {"ours": {**run, "train_s": 14.0}, "mostly": {**run, "train_s": 6.0}},
             "off": {"ours": {**run, "epsilon_spent": None}}}]
    result = dp_frontier.summarize(runs)
    assert list(result) == ["3", "off"] and list(result["3"]) == ["ours", "mostly", "aim"]
    assert result["3"]["ours"]["train_s"] == [12.0, round(np.std([10, 14], ddof=1), 4)]
    assert result["3"]["mostly"]["train_s"][0] == 5.0
    assert result["3"]["aim"]["train_s"] == [10.0, 0.0]  # one seed: no spread
    assert result["3"]["ours"]["tstr"] == [None, None]  # not scored: no number made up
    assert result["off"]["ours"]["epsilon_spent"] == [2.9, 0.0]  # the seed that reported one
    assert set(result["3"]["ours"]) == set(dp_frontier.COLUMNS) and "mia_auc" in dp_frontier.COLUMNS
    lines = dp_frontier.table_lines(result)
    assert len(lines) == 5 and "n/a" in lines[1] and "12.0 ± 2.8" in lines[1] and "0.510 ± 0.000" in lines[1]
    assert lines[4].startswith("off      ours")


def test_mia_auc_is_the_key_the_privacy_suite_writes():
    from pipeline.metrics.membership import KEYS

    assert dp_frontier.METRICS["mia_auc"] == KEYS["auc"]


DPMM_PYTHON = os.environ.get("DPMM_PYTHON") or dp_frontier.PEERS["aim"]["default"]


@pytest.mark.slow
@pytest.mark.skipif(not Path(DPMM_PYTHON).is_file(), reason=f"no dpmm environment at {DPMM_PYTHON} (set DPMM_PYTHON)")
def test_aims_side_runs_at_quick_size_and_ends_with_its_json_line(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/dp_frontier.py"), "--quick", "--sides", "aim",
                          "--epsilons", "3", "off", "--seeds", "0", "--dpmm-python", DPMM_PYTHON],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rows"] == dp_frontier.QUICK_ROWS and res["quick"] and list(res["results"]) == ["3"]  # no AIM at off
    aim = res["results"]["3"]["aim"]
    assert aim["epsilon_spent"][0] == pytest.approx(3.0)
    for key in ("shapes", "trends", "tstr", "detection_auc", "mia_auc"):
        assert 0 <= aim[key][0] <= 1, key


def test_ours_declares_what_params_declares_and_the_categories_are_the_domain_aim_is_given():
    """By default ours is the default DP run: params.yaml's Adult column kinds, bounds and categories; the lists
    are the values Adult's training rows hold (the domain ``_dpmm_runner.py`` hands AIM from them).
    ``--our-bounds estimated`` / ``--our-categories private`` leave each out; ``--our-bounds rows`` declares the
    rows' min and max it is handed (AIM's public bounds); --quick keeps its own bounds."""
    import pandas as pd

    rows = {"age": [17.0, 90.0], "capital-loss": [0.0, 4356.0]}
    got = dp_frontier.our_public(dp_frontier.parse_args([]), rows)
    assert got["bounds"]["age"] == [17, 90] and got["bounds"]["fnlwgt"] == [1, None]
    train = pd.read_parquet(dp_frontier.DATASETS["adult"]["source"])
    text = [c for c in train.columns if train[c].dtype == object]
    assert sorted(got["categories"]) == sorted(text)
    assert all(set(got["categories"][c]) == set(train[c].dropna()) for c in text)
    # The kinds params declares are the ones ingest infers from the rows (so declaring them left the
    # default run's bytes as they were), and ours declares them.
    from pipeline.schema import infer_kind

    assert got["column_types"] == {c: infer_kind(train[c]) for c in train.columns}
    assert dp_frontier.our_public(dp_frontier.parse_args(["--our-bounds", "estimated", "--our-categories",
                                                          "private"]), rows) == {"column_types": got["column_types"]}
    assert dp_frontier.our_public(dp_frontier.parse_args(["--our-bounds", "rows"]), rows)["bounds"] == rows
    assert "bounds" not in dp_frontier.our_public(dp_frontier.parse_args(["--quick"]), rows)


def test_keep_work_runs_a_seed_in_a_kept_folder_and_refuses_a_used_one(tmp_path):
    with dp_frontier.seed_folder(3, str(tmp_path / "keep")) as folder:
        assert Path(folder) == tmp_path / "keep" / "seed-3"
        (Path(folder) / "work").mkdir()
    assert (tmp_path / "keep" / "seed-3" / "work").is_dir()  # kept
    with pytest.raises(SystemExit, match=r"--keep-work .*seed-3 is not empty; name another folder"):
        dp_frontier.seed_folder(3, str(tmp_path / "keep"))
    with dp_frontier.seed_folder(3, None) as folder:
        assert Path(folder).is_dir()
    assert not Path(folder).exists()  # a temporary one goes
