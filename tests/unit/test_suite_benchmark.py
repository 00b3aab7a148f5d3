"""benchmarks/suite.py's own logic, without training: the published rows read from a suite
README, the seeded 90/10 split of a file's own lines, and the one-line refusal of a missing
--data folder."""

import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
try:
    import suite
finally:
    sys.path.remove(str(REPO / "benchmarks"))

README = """# Tables

| table | model | shape err % | trend err % | MLE (AUC) | alpha-precision | beta-recall | C2ST | DCR share |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| Adult | TabSyn | 0.79 | 2.05 | .910 | .990 | .480 | .794 | .507 |
| Magic | TabPC | 0.98 | 1.70 | .932 | .995 | n/a | .860 | .530 |

TabPC also reports training seconds on a GPU (Adult: TabDiff 11,605 s, TabSyn 3,083 s, TabPC 272 s).
"""


def test_published_rows_are_read_with_c2st_as_auc_and_the_training_seconds(tmp_path):
    (tmp_path / "README.md").write_text(README)
    rows = suite.published(tmp_path / "README.md")
    assert set(rows) == {"Adult", "Magic"}
    adult = rows["Adult"]["TabSyn"]
    assert adult["shapes"] == 0.79 and adult["trends_all"] == 2.05 and adult["tstr"] == 0.91
    assert adult["detection_auc"] == pytest.approx(1 - 0.794 / 2) and adult["dcr_share"] == 0.507
    assert adult["train_s"] == 3083.0  # TabDiff's and TabPC's seconds name models without a row here
    assert rows["Magic"]["TabPC"]["beta_recall"] is None and rows["Magic"]["TabPC"]["train_s"] is None


def test_a_readme_without_the_table_or_a_column_is_one_line(tmp_path):
    (tmp_path / "README.md").write_text("# nothing here\n")
    with pytest.raises(SystemExit, match="no table of published rows"):
        suite.published(tmp_path / "README.md")
    (tmp_path / "README.md").write_text(README.replace("| DCR share |", "| other |", 1))
    with pytest.raises(SystemExit, match="no column for dcr_share"):
        suite.published(tmp_path / "README.md")


def test_the_split_keeps_the_files_bytes_and_header_and_is_fixed(tmp_path):
    lines = [f"{i};x{i};TRUE\r\n".encode() for i in range(50)]
    src = tmp_path / "s.csv"
    src.write_bytes(b"a;b;c\r\n" + b"".join(lines) + b"\r\n")  # a blank last line is left out
    train, test = suite.split_lines(src, tmp_path / "one", header=True)
    got_train, got_test = train.read_bytes().splitlines(keepends=True), test.read_bytes().splitlines(keepends=True)
    assert got_train[0] == got_test[0] == b"a;b;c\r\n"
    assert len(got_test) == 1 + 5 and len(got_train) == 1 + 45
    assert sorted(got_train[1:] + got_test[1:]) == sorted(lines)  # every row once, as written
    assert got_train[1:] == sorted(got_train[1:], key=lines.index)  # in the file's order
    again = suite.split_lines(src, tmp_path / "two", header=True)
    assert [p.read_bytes() for p in again] == [train.read_bytes(), test.read_bytes()]
    headerless = tmp_path / "h.data"
    headerless.write_bytes(b"".join(lines).rstrip(b"\r\n"))  # no line ending at the end
    train, test = suite.split_lines(headerless, tmp_path / "three", header=False)
    assert sorted(train.read_bytes().splitlines() + test.read_bytes().splitlines()) == sorted(
        line.rstrip() for line in lines)


def test_a_missing_data_folder_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"--data .*nope: no suite/README.md there; pass --data"):
        suite.main(["--tables", "magic", "--data", str(tmp_path / "nope")])
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "README.md").write_text(README)
    with pytest.raises(SystemExit, match="suite/magic04.data not found"):
        suite.main(["--tables", "magic", "--data", str(tmp_path)])


def test_the_unprotected_pass_runs_unless_protection_is_off_already(tmp_path, monkeypatch, capsys):
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "README.md").write_text(README)
    (tmp_path / "suite" / "magic04.data").write_text("1,g\n")
    asked = []

    def run_one(table, model, seed, args, overrides, unprotected=False):
        asked.append(unprotected)
        figures = {k: 0.5 for k in suite.METRICS} | {"train_s": 1.0, "epochs": 1, "stage_s": {"train": 1.0}}
        return {model: figures, **({model + suite.UNPROTECTED: {**figures, "stage_s": {}}} if unprotected else {})}

    monkeypatch.setattr(suite, "run_one", run_one)
    base = ["--tables", "magic", "--models", "tvae", "--seeds", "0", "--data", str(tmp_path)]
    suite.main(base)
    assert asked == [True] and "ours tvae unprotected" in capsys.readouterr().out
    suite.main([*base, "--set", "generate.value_protection=false"])  # every run unprotected: no second pass
    suite.main([*base, "--protection", "default"])
    assert asked == [True, False, False]


def test_the_papers_train_on_real_line_is_read_beside_their_mle(tmp_path):
    (tmp_path / "README.md").write_text(README + "\nTrain-on-real MLE in the papers: Adult .927, Magic .946.\n")
    rows = suite.published(tmp_path / "README.md")
    assert rows["Adult"]["TabSyn"]["tstr_xgb"] == 0.91  # their MLE is their XGBoost protocol's TSTR
    assert rows["Adult"]["TabSyn"]["trtr_xgb"] == 0.927 and rows["Magic"]["TabPC"]["trtr_xgb"] == 0.946
    (tmp_path / "README.md").write_text(README)
    assert suite.published(tmp_path / "README.md")["Adult"]["TabSyn"]["trtr_xgb"] is None


def test_papers_mle_without_its_python_is_one_line_before_anything_runs(tmp_path, monkeypatch):
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "README.md").write_text(README)
    (tmp_path / "suite" / "magic04.data").write_text("1,g\n")
    monkeypatch.setattr(suite, "run_one", lambda *a, **k: pytest.fail("ran without the xgboost Python"))
    with pytest.raises(SystemExit, match=r"--xgb-python .*nope: not found; make it with `python3.11 -m venv"):
        suite.main(["--tables", "magic", "--seeds", "0", "--data", str(tmp_path), "--papers-mle",
                    "--xgb-python", str(tmp_path / "nope")])


def test_papers_mle_passes_the_target_seed_and_threads_and_reads_the_auc(tmp_path, monkeypatch):
    fake = tmp_path / "runner.py"
    fake.write_text("import json, sys\nprint('fitting')\nprint(json.dumps({'auc': 0.75, 'argv': sys.argv[1:]}))\n")
    args = type("Args", (), {"xgb_python": sys.executable})()
    monkeypatch.setattr(suite, "MLE_RUNNER", fake)
    assert suite.papers_mle(tmp_path / "a.parquet", tmp_path / "b.parquet", "magic", 2, args,
                            {"runtime.threads": 1}) == 0.75
    fake.write_text("import sys\nsys.exit('boom: no xgboost here')\n")
    with pytest.raises(SystemExit, match=r"magic seed 2: _mle_runner.py failed \(exit 1\): boom: no xgboost here"):
        suite.papers_mle(tmp_path / "a.parquet", tmp_path / "b.parquet", "magic", 2, args, {})


def _tabsyn_split(frame, categorical):
    """TabSyn's train_val_test_split as its process_dataset.py writes it (the reference)."""
    import numpy as np

    total = len(frame)
    n_train = int(total * 0.9)
    n_test = total - n_train
    idx = np.arange(total)
    seed = 1234
    while True:
        np.random.seed(seed)
        np.random.shuffle(idx)
        train, test = frame.loc[idx[:n_train]], frame.loc[idx[-n_test:]]
        if all(len(set(train[c])) == len(set(frame[c])) for c in categorical):
            return train, test, seed
        seed += 1


def test_the_papers_split_is_tabsyns_reshuffles_included_and_can_drop_the_first_line(tmp_path):
    import pandas as pd

    rows = [f"{i};{'rare' if i == 12 else 'c' + str(i % 3)};{i % 2}\n" for i in range(60)]  # one 'rare' row
    src = tmp_path / "s.csv"
    src.write_text("n;cat;y\n" + "".join(rows))
    frame = pd.read_csv(src, sep=";")
    ref_train, ref_test, seed = _tabsyn_split(frame, ["cat"])
    assert seed > 1234  # the rare row fell among the test rows at first: reshuffled at least once
    train, test = suite.split_lines(src, tmp_path / "p", header=True, papers={"categorical": ["cat"]})
    got_train, got_test = pd.read_csv(train, sep=";"), pd.read_csv(test, sep=";")
    assert sorted(got_train["n"]) == sorted(ref_train["n"]) and sorted(got_test["n"]) == sorted(ref_test["n"])
    assert len(got_train) == 54 and "rare" in set(got_train["cat"])
    assert train.read_text().splitlines()[0] == "n;cat;y"  # the header atop both, the lines as written
    headerless = tmp_path / "h.data"
    headerless.write_text("".join(line.replace(";", ",") for line in rows))
    frame = pd.read_csv(headerless, header="infer")  # as the papers read Magic: line 1 becomes the names
    ref_train, ref_test, _ = _tabsyn_split(frame, [])
    train, test = suite.split_lines(headerless, tmp_path / "h", header=False,
                                    papers={"categorical": [], "drop_first_line": True})
    first = [int(line.split(",")[0]) for line in train.read_text().splitlines()]
    assert sorted(first) == sorted(ref_train.iloc[:, 0]) and 0 not in first
    assert sorted(int(line.split(",")[0]) for line in test.read_text().splitlines()) == sorted(ref_test.iloc[:, 0])
    with pytest.raises(SystemExit, match=r"s.csv: no column 'kind' in its header line"):
        suite.split_lines(src, tmp_path / "q", header=True, papers={"categorical": ["kind"]})
