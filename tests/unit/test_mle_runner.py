"""benchmarks/_mle_runner.py's features (the papers' MLE protocol), without xgboost: one-hot
categories coded on the training side, a missing value its own category, numbers as they are, the
target as 0/1, and one-line refusals."""

import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
try:
    import _mle_runner
finally:
    sys.path.remove(str(REPO / "benchmarks"))


def test_categories_are_one_hot_on_the_training_sides_values_and_numbers_pass_as_they_are():
    train = pd.DataFrame({"n": [1.5, None, 3.0, 4.0], "c": ["a", "b", None, "a"], "flag": [True, False, True, True],
                          "y": ["no", "yes", "no", "yes"]})
    test = pd.DataFrame({"n": [2.0, 5.0], "c": ["b", "z"], "flag": [False, True], "y": ["yes", "no"]})
    x, y, x_test, y_test = _mle_runner.design(train, test, "y")
    # columns: n; c as a, b, missing (sorted: "\x00missing" first); flag as False, True
    assert x.shape == (4, 1 + 3 + 2) and x_test.shape == (2, 6)
    np.testing.assert_array_equal(x[:, 0], [1.5, np.nan, 3.0, 4.0])
    np.testing.assert_array_equal(x[:, 1:4], [[0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(x_test[1, 1:4], [0, 0, 0])  # a category the training rows lack: all zeros
    np.testing.assert_array_equal(x[:, 4:], [[0, 1], [1, 0], [0, 1], [0, 1]])
    np.testing.assert_array_equal(y, [0, 1, 0, 1])
    np.testing.assert_array_equal(y_test, [1, 0])


def test_the_training_sides_columns_are_taken_in_the_test_sides_order():
    train = pd.DataFrame({"y": [0, 1], "b": [1.0, 2.0], "a": [3.0, 4.0]})
    test = pd.DataFrame({"a": [5.0], "b": [6.0], "y": [1]})
    x, _, x_test, _ = _mle_runner.design(train, test, "y")
    np.testing.assert_array_equal(x, [[3.0, 1.0], [4.0, 2.0]])
    np.testing.assert_array_equal(x_test, [[5.0, 6.0]])


def test_a_missing_or_non_binary_target_is_one_line():
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "b", "c"]})
    with pytest.raises(SystemExit, match=r"--train: no column 'z'; pass --target"):
        _mle_runner.design(train, train, "z")
    with pytest.raises(SystemExit, match=r"--train: 'y' holds 3 labels, not 2"):
        _mle_runner.design(train, train, "y")
