"""benchmarks/vs_mostly.py's own logic, without running either model: the suite tables' Parquet
copies, the mean ± sd summary its JSON line carries, and the refusal without the peer's Python."""

import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
try:
    import vs_mostly
finally:
    sys.path.remove(str(REPO / "benchmarks"))


def test_summary_gives_mean_and_sd_per_table_and_side_in_order():
    run = {"train_s": 10.0, "rows_per_s": 100.0, "shapes": 0.9, "trends": 0.8, "tstr": None, "detection_auc": 0.6,
           "epochs": 5}
    runs = {"adult": [{"ours_budget": run, "ours": run, "mostly": {**run, "train_s": 4.0}},
                      {"ours": {**run, "train_s": 14.0}, "mostly": {**run, "train_s": 6.0}}]}
    result = vs_mostly.summarize(runs)
    assert list(result["adult"]) == ["ours", "mostly", "ours_budget"]
    assert result["adult"]["ours"]["train_s"] == [12.0, round(np.std([10, 14], ddof=1), 4)]
    assert result["adult"]["mostly"]["train_s"][0] == 5.0
    assert result["adult"]["ours_budget"]["train_s"] == [10.0, 0.0]  # one seed: no spread
    assert result["adult"]["ours"]["tstr"] == [None, None]  # not scored: no number made up
    assert set(result["adult"]["ours"]) == {"train_s", "rows_per_s", "shapes", "trends", "tstr", "detection_auc",
                                            "epochs"}
    lines = vs_mostly.table_lines(result)
    assert len(lines) == 4 and "n/a" in lines[1] and "12.0 ± 2.8" in lines[1]


def test_suite_copies_split_90_10_with_the_coded_columns_as_text(tmp_path):
    n = 200
    rng = np.random.default_rng(1)
    default = pd.DataFrame({"ID": np.arange(1, n + 1), "LIMIT_BAL": rng.integers(1, 50, n) * 10_000,
                            **{c: rng.integers(-2, 3, n) for c in vs_mostly.SUITE["default"]["coded"]}})
    text = default.to_csv(index=False).replace(",10000,", ",1.00E+04,")  # as the real file writes some amounts
    (tmp_path / "default.csv").write_text(text)
    shoppers = pd.DataFrame({"Month": rng.choice(["Feb", "Mar"], n), "OperatingSystems": rng.integers(1, 4, n),
                             "Browser": 1, "Region": 2, "TrafficType": 3, "Weekend": rng.choice(["TRUE", "FALSE"], n),
                             "Revenue": rng.choice(["TRUE", "FALSE"], n)})
    shoppers.to_csv(tmp_path / "shoppers.csv", sep=";", index=False)

    entry = vs_mostly.suite_copy("default", tmp_path, tmp_path / "out")
    train, test = pd.read_parquet(entry["source"]), pd.read_parquet(entry["holdout_source"])
    assert (len(train), len(test)) == (180, 20) and "ID" not in train
    assert train["LIMIT_BAL"].dtype == "int64" and train["SEX"].map(type).eq(str).all()
    assert entry["column_types"]["default.payment.next.month"] == "categorical"
    assert entry["target"] == "default.payment.next.month"
    # The same split every time (not the model seed's), every row in one side only.
    again = pd.read_parquet(vs_mostly.suite_copy("default", tmp_path, tmp_path / "again")["holdout_source"])
    pd.testing.assert_frame_equal(test, again)
    expected = default.drop(columns="ID").astype({c: str for c in vs_mostly.SUITE["default"]["coded"]})
    both = pd.concat([train, test])
    key = list(expected.columns)
    pd.testing.assert_frame_equal(both.sort_values(key).reset_index(drop=True),
                                  expected.sort_values(key).reset_index(drop=True))

    entry = vs_mostly.suite_copy("shoppers", tmp_path, tmp_path / "shop")
    train = pd.read_parquet(entry["source"])
    assert train["Weekend"].dtype == bool and train["Browser"].eq("1").all()
    assert set(entry["column_types"]) == {"OperatingSystems", "Browser", "Region", "TrafficType"}


def test_a_missing_suite_file_or_peer_python_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(SystemExit) as exc:
        vs_mostly.suite_copy("magic", tmp_path, tmp_path / "out")
    assert "magic04.data: not found" in str(exc.value) and "--suite-dir" in str(exc.value)
    with pytest.raises(SystemExit) as exc:
        vs_mostly.check_peer(str(tmp_path / "no-python"))
    message = str(exc.value)
    assert "\n" not in message and "not found" in message and "mostlyai-engine==" in message
    assert "--skip-peer" in message
