"""The privacy gate is judged against the real baseline: a table whose unseen real rows repeat
training rows as often as the synthetic ones do passes by default, a copier fails; a failure names
the baseline beside the value. The report, the data card and validate's plan say the same in
plain words."""

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Threshold, load_config
from pipeline.metrics import SUITES, evaluate_gate, judge, metric, privacy_suites, register_suite
from pipeline.modalities.table import TableEvidence
from pipeline.schema import TableSchema, describe, infer_kind
from tests.conftest import REPO


def _measurements(n: int, seed: int) -> pd.DataFrame:
    """Six small-integer measurements (geometric): a table of few distinct rows, where a fresh real
    row often equals some training row, like many public tables of discrete measurements."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({f"m{i}": rng.geometric(0.4, n) for i in range(6)})


def _privacy(train: pd.DataFrame, holdout: pd.DataFrame, syn: pd.DataFrame, thresholds=None) -> dict:
    """Every privacy family's metrics (the privacy suite, the membership and anonymity attacks),
    judged under ``thresholds`` (the default gate's privacy keys)."""
    cfg = load_config(REPO / "params.yaml", {"score.privacy_rows": 200})  # DCR: quadratic
    if thresholds is None:
        thresholds = {k: v for k, v in cfg.score.thresholds.items() if k.startswith("privacy.")}
    cfg.score.thresholds = thresholds
    schema = TableSchema([describe(train[c], infer_kind(train[c])) for c in train.columns])
    ev = TableEvidence("m", None, train, holdout, syn, schema, None, "auto", cfg.score, 0, len(syn), False)
    metrics, not_judged = {}, {}
    for suite in privacy_suites("table"):
        out = suite.compute(ev)
        metrics.update(out.metrics)
        not_judged.update(out.not_judged)
    if not_judged:
        metrics["gate.not_judged"] = not_judged
    return judge(metrics, thresholds)


@pytest.fixture(scope="module")
def measurements():
    return _measurements(3000, 1), _measurements(2000, 2), _measurements(2000, 3)


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_a_table_whose_real_rows_repeat_themselves_passes_the_default_gate(measurements):
    train, holdout, fresh = measurements  # fresh: new draws of the same population, a perfect generator
    m = _privacy(train, holdout, fresh)
    assert m["privacy.exact_match_rate"] > 0.15 and m["privacy.exact_match_rate_holdout"] > 0.15
    assert m["privacy.exact_match_excess"] == pytest.approx(
        m["privacy.exact_match_rate"] - m["privacy.exact_match_rate_holdout"])
    assert m["gate.passed"], m["gate.failures"]
    # The rate alone, judged absolutely (an explicit user threshold): refused, with the baseline named.
    absolute = judge(m, {"privacy.exact_match_rate": Threshold(max=0.05)})
    assert absolute["gate.failures"] == [
        f"privacy.exact_match_rate: {m['privacy.exact_match_rate']:.4f} > max 0.05 "
        f"(unseen real rows: {m['privacy.exact_match_rate_holdout']:.4f})"]


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_a_copier_fails_through_the_excess(measurements):
    train, holdout, _ = measurements
    m = _privacy(train, holdout, train.sample(2000, random_state=0).reset_index(drop=True))
    assert m["privacy.exact_match_rate"] == 1.0
    excess = 1.0 - m["privacy.exact_match_rate_holdout"]
    assert m["privacy.exact_match_excess"] == pytest.approx(excess)
    # (DCR may miss it here: a copy is often as near an unseen row, equal to some training row too.)
    failures = {f.split(":")[0]: f for f in m["gate.failures"]}
    assert failures["privacy.exact_match_excess"] == (f"privacy.exact_match_excess: {excess:.4f} > max 0.05 "
                                                      "(unseen real rows: 0)")


def test_without_a_holdout_the_excess_is_not_judged_and_says_why(measurements):
    train, holdout, fresh = measurements
    m = _privacy(train, holdout.iloc[:0], fresh, {"privacy.exact_match_excess": Threshold(max=0.05)})
    assert math.isnan(m["privacy.exact_match_excess"]) and "privacy.exact_match_rate_holdout" not in m
    assert "no holdout rows" in m["gate.not_judged"]["privacy.exact_match_excess"]
    assert m["gate.passed"]  # skipped, not failed: the reason stands in the verdict


@pytest.fixture
def baseline_suite():
    @register_suite("toybase", "table", [
        metric("toybase.rate", 0, 1, "a rate read against a measured one", baseline="toybase.real",
               baseline_words="real rows"),
        metric("toybase.real", 0, 1, "the rate of real rows"),
        metric("toybase.auc", 0, 1, "an attack's AUC", baseline=0.5, baseline_words="chance"),
    ])
    def toy(ev):
        raise AssertionError("not computed here")

    yield
    SUITES.pop("toybase")


def test_a_failure_names_the_baseline_measured_or_fixed_and_only_when_there_is_one(baseline_suite):
    th = {"toybase.rate": Threshold(max=0.1), "toybase.auc": Threshold(max=0.6)}
    ok, failures = evaluate_gate({"toybase.rate": 0.3, "toybase.real": 0.25, "toybase.auc": 0.7}, th)
    assert not ok and failures == ["toybase.rate: 0.3000 > max 0.1 (real rows: 0.2500)",
                                   "toybase.auc: 0.7000 > max 0.6 (chance: 0.5)"]
    # A baseline not measured in this run (or not a number) is left out, never shown as n/a.
    assert evaluate_gate({"toybase.rate": 0.3, "toybase.real": float("nan")}, {"toybase.rate": Threshold(max=0.1)}) \
        == (False, ["toybase.rate: 0.3000 > max 0.1"])
    assert evaluate_gate({"toybase.rate": 0.3}, {"toybase.rate": Threshold(max=0.1)}) \
        == (False, ["toybase.rate: 0.3000 > max 0.1"])


# -- the report and the data card in plain words --------------------------------------------------

COPIES = {"privacy.exact_match_rate": 0.265, "privacy.exact_match_rate_holdout": 0.299,
          "privacy.exact_match_excess": 0.265 - 0.299, "privacy.dcr_share": 0.52}
ATTACKS = {"privacy.mia_auc": 0.53, "privacy.mia_tpr_at_fpr_1pct": 0.012, "privacy.mia_tpr_at_fpr_01pct": 0.001,
           "privacy.singling_out_risk": 0.01, "privacy.singling_out_risk_upper": 0.03,
           "privacy.inference_risk": 0.05, "privacy.inference_risk_upper": 0.08}
# As the attack families write them: per attack a figure with its bootstrap interval; a risk's
# interval as [low, high] (the other risks' details missing: their upper bounds stand in).
DETAILS = {"samples": {"membership": {"members": 900, "non_members": 900, "reference": 900, "synthetic": 900}},
           "membership": {"worst": {"auc": "density_ratio"},
                          "attacks": {"distance": {"auc": {"estimate": 0.51, "low": 0.49, "high": 0.525}},
                                      "density_ratio": {"auc": {"estimate": 0.53, "low": 0.515, "high": 0.545}}}},
           "anonymity": {"singling_out": {"risk": 0.01, "interval": [0.002, 0.03]}}}


def _report(metrics: dict, details: dict) -> tuple[str, str]:
    from pipeline.report import ReportInput, render_html, render_markdown

    inp = ReportInput("d", metrics, {}, TableSchema([]), pd.DataFrame(), pd.DataFrame(), {}, [], details=details)
    return render_html(inp), render_markdown(inp)


def test_the_report_says_each_privacy_family_present_in_plain_words_with_baseline_and_interval():
    page, md = _report({**COPIES, **ATTACKS}, DETAILS)
    for text in (page, md):
        assert "Copies and distances" in text and "Membership inference" in text and "Anonymity" in text
        assert "unseen real rows (the holdout) are identical to one at 0.2990, the real baseline" in text
        assert "the excess over it is -0.0340 (real baseline 0)" in text
        # The strongest attack's AUC with its interval, each attack's, and the rows attacked.
        assert "on 900 training rows and 900 unseen real rows: 0.5300 (95% interval 0.5150 to 0.5450); 0.5 is chance" \
            in text
        assert "distance 0.5100 (95% interval 0.4900 to 0.5250)" in text
        assert "singling out 0.0100 (95% interval 0.0020 to 0.0300)" in text
        assert "inference 0.0500 (95% upper bound 0.0800)" in text and "linkability" not in text.split("Risks")[-1]
        assert "not a formal guarantee" in text and "differential privacy" in text
    assert "<h2>Privacy</h2>" in page and "### Privacy" in md


def test_a_detection_auc_far_under_chance_is_called_memorisation_and_one_within_its_noise_is_not():
    """195 rows a side: the noise of an AUC is taken as 1 / (2 sqrt(195)) = 0.0358, so 0.31 (tips'
    default release) is under 0.5 by more than three times it and 0.415 (the lowest of 12 draws of
    Adult's held-out rows against its training rows) is not; without the rows a side (no detection
    details) nothing is said."""
    samples = {"samples": {**DETAILS["samples"], "detection": {"rows_per_side": 195, "folds": 5}}}
    said = "is under chance (0.5) by more than three times its noise on 195 rows a side (0.0358)"
    for text in _report({**COPIES, "detection.auc": 0.31}, {**DETAILS, **samples}):
        section = text[text.index("Copies and distances"):]
        assert said in section and "a sign of memorisation" in section
        assert "Against unseen real rows" not in section  # held-out fidelity not measured here
    # with the held-out fidelity measured, the sentence points to it
    heldout = {"quality.column_pair_trends_holdout": 0.588, "quality.column_pair_trends_holdout_real": 0.751}
    for text in _report({**COPIES, **heldout, "detection.auc": 0.31}, {**DETAILS, **samples}):
        section = text[text.index("Copies and distances"):]
        assert "pair trends are 0.5880 and the training rows" in section  # the HTML escapes the apostrophes
        assert "own 0.7510 (quality.column_pair_trends_holdout)" in section
        assert "(the holdout)," in section  # no held-out details: no row count
    # with the family's details, the held-out rows are counted
    counted = {"samples": {**samples["samples"], "heldout_fidelity": {"holdout": 49, "rows_per_side": 195}}}
    for text in _report({**COPIES, **heldout, "detection.auc": 0.31}, {**DETAILS, **counted}):
        assert "Against unseen real rows (the holdout, 49 rows)," in text[text.index("Copies and distances"):]
    for auc, details in ((0.415, {**DETAILS, **samples}), (0.31, DETAILS), (0.62, {**DETAILS, **samples})):
        for text in _report({**COPIES, "detection.auc": auc}, details):
            assert "under chance" not in text and "a sign of memorisation" not in text, (auc, details)


def test_families_not_measured_are_not_mentioned_and_one_not_judged_says_why():
    not_judged = {"privacy.mia_auc": float("nan"), "privacy.mia_tpr_at_fpr_1pct": float("nan"),
                  "gate.not_judged": {"privacy.mia_auc": "48 holdout rows, fewer than score.privacy_min_holdout (200)",
                                      "privacy.mia_tpr_at_fpr_1pct": "48 holdout rows"}}
    _, md = _report({**COPIES, **not_judged}, {"membership": None})
    section = md.split("### Privacy")[1]
    assert "Copies and distances" in section and "Anonymity" not in section and "anonymeter" not in section.lower()
    assert "Not judged here: 48 holdout rows, fewer than score.privacy_min_holdout (200)." in section
    assert "ROC AUC telling" not in section  # no figure stands for a family that was not judged
    _, bare = _report({"quality.overall": 0.9}, {})
    assert "Privacy" not in bare


def test_the_data_card_states_what_was_measured_by_which_attacks_and_that_it_is_no_guarantee():
    from pipeline.datacard import render_datacard

    card = render_datacard({"dataset": "d", "modality": "table", "metrics": {**COPIES, **ATTACKS}}, {
        "privacy.exact_match_excess": {"min": None, "max": 0.05}})
    privacy = card[card.index("## Privacy"):card.index("## Intended use")]
    assert "Measured by attacks on this release: copies and distances, membership inference, anonymity." in privacy
    assert "0.5 is chance, the real baseline" in privacy and "singling out 0.0100 (95% upper bound 0.0300)" in privacy
    assert "not a formal guarantee" in privacy and "not trained with differential privacy" in privacy
    # The headline table names each baseline beside the value.
    assert "| `privacy.exact_match_rate` | 0.2650 | unseen real rows: 0.2990 |" in card
    assert "| `privacy.exact_match_excess` | -0.0340 | unseen real rows: 0 | ≤ 0.05 |" in card
    assert "## Privacy" not in render_datacard({"dataset": "d", "modality": "table", "metrics": {}}, {})


def test_a_dp_release_says_its_attack_figures_sit_beside_the_guarantee_not_that_it_has_none():
    """A model trained under differential privacy: the card's privacy section and known limits, and
    the work folder's report, name the guarantee and never say the model has none; the card does
    not point at a report the release does not ship."""
    from pipeline.datacard import render_datacard
    from pipeline.modalities.table import CARD_USE_DP

    dp = {"epsilon": 2.999, "delta": 3.07e-06, "budget": {"epsilon": 3.0, "delta": 3.07e-06}}
    metrics = {**COPIES, **ATTACKS, "dp.epsilon": 2.999, "dp.delta": 3.07e-06}
    card = render_datacard({"dataset": "d", "modality": "table", "metrics": metrics, "privacy": {"dp": dp}}, {})
    assert "not trained with differential privacy" not in card and "_report.html" not in card
    privacy = card[card.index("## Privacy"):card.index("## Intended use")]
    assert "The guarantee is the model's differential privacy (epsilon 3, delta 3.07e-06)" in privacy
    assert "stays in the work folder" in privacy
    limits = card[card.index("## Known limits"):]
    assert CARD_USE_DP[-2] in limits and "the differential privacy stated above" in limits
    assert "not a formal guarantee" not in limits
    assert "before relying on one (the report that names them holds exact statistics of the real rows" in card
    for text in _report(metrics, DETAILS):
        assert "differential privacy (epsilon 3, delta 3.07e-06)" in text
        assert "not trained with differential privacy" not in text
    for text in _report({**COPIES, **ATTACKS}, DETAILS):  # without one, as before
        assert "not trained with differential privacy" in text


# -- validate names the attacks ---------------------------------------------------------------------


@pytest.fixture
def attack_suite():
    """A privacy attack family as the attack modules register one: privacy keys, on the shared split."""

    @register_suite("toyattack", "table", [metric("privacy.toy_attack_auc", 0, 1, "a toy attack's AUC")],
                    attacks=True)
    def toy(ev):
        raise AssertionError("not computed here")

    yield
    SUITES.pop("toyattack")


def test_validate_names_the_privacy_families_and_the_attacks_rows_or_why_not_judged(tmp_path, tiny_source,
                                                                                    attack_suite):
    from pipeline.plan import plan, render
    from tests.conftest import tiny_config

    cfg = tiny_config(tmp_path, tiny_source, **{"score.privacy_min_holdout": 40, "score.attack_rows": 20})
    p = plan(cfg, "tiny", estimate=False)["privacy"]
    assert {"privacy", "toyattack"} <= set(p["suites"]) and "detection" not in p["suites"]
    assert "toyattack" in p["attacks"] and "privacy" not in p["attacks"]
    # 48 holdout rows: 24 non-members and 24 reference rows, each at most score.attack_rows; the
    # synthetic rows up to 8 times as many (the tiny release has 160 rows).
    assert p["rows"] == {"members": 20, "non_members": 20, "reference": 20, "synthetic": 160}
    text = render(plan(cfg, "tiny", estimate=False))
    assert ("on one seeded split: 20 training members, 20 unseen non-members, 20 reference and 160 synthetic "
            "rows") in text
    cfg.score.privacy_min_holdout = 200
    p = plan(cfg, "tiny", estimate=False)["privacy"]
    assert "rows" not in p and p["why_not"] == "holdout of 48 rows < score.privacy_min_holdout 200"
    assert "not judged: holdout of 48 rows < score.privacy_min_holdout 200" in render(plan(cfg, "tiny", estimate=False))


def test_the_plans_attack_sizes_are_the_split_the_attacks_get():
    from pipeline.metrics.privacy import attack_rows, attack_sizes

    frame = _measurements(300, 0)
    for train, holdout, syn, rows in ((300, 101, 250, 1000), (300, 300, 40, 100), (10, 300, 250, 1000)):
        split = attack_rows(frame.iloc[:train], frame.iloc[:holdout], frame.iloc[:syn], rows=rows, seed=3)
        assert attack_sizes(train, holdout, syn, rows) == split.sizes()


# -- calibration: the default gate against releases whose privacy is known --------------------


@pytest.fixture(scope="module")
def adult_roles():
    """Adult's rows cut four ways: training rows, a holdout, and real rows that are neither (an
    "unseen" release), each small enough for a fast test."""
    rows = pd.read_parquet(REPO / "data/adult/train.parquet").sample(n=4600, random_state=7).reset_index(drop=True)
    return rows.iloc[:2000], rows.iloc[2000:3200], rows.iloc[3200:]


def _noisy(frame: pd.DataFrame, scale: float, seed: int) -> pd.DataFrame:
    """A copier that hides behind small noise: each number moved by ``scale`` of its column's sd."""
    out, rng = frame.copy(), np.random.default_rng(seed)
    for name in out.select_dtypes("number").columns:
        x = out[name].astype("float64")
        out[name] = np.round(x + rng.normal(0, scale * float(x.std()), len(x))).astype(out[name].dtype)
    return out


@pytest.mark.slow  # about a second each: the fast tier stays under a minute
@pytest.mark.parametrize("release", ["copies", "noisy copies"])
def test_a_copier_fails_the_default_gate_through_the_attacks(adult_roles, release):
    train, holdout, _ = adult_roles
    copies = train.sample(frac=1.0, random_state=3).reset_index(drop=True)
    syn = copies if release == "copies" else _noisy(copies, 0.05, 3)
    m = _privacy(train, holdout, syn)
    failed = {f.split(":")[0] for f in m["gate.failures"]}
    assert not m["gate.passed"]
    # Through the attacks, not only through exact copies: noise hides a copy from exact matching.
    # Exact copies fail every attack key; noisy ones at least one (linkability, here: small noise
    # on the numbers leaves unseen rows as near as the copies in the membership attacks' space).
    attacks = {"privacy.mia_auc", "privacy.mia_tpr_at_fpr_1pct", "privacy.singling_out_risk",
               "privacy.linkability_risk"}
    assert (attacks <= failed) if release == "copies" else (attacks & failed), m["gate.failures"]
    assert m["privacy.inference_risk"] > 0.3


@pytest.mark.slow  # about a second: the fast tier stays under a minute
def test_real_rows_the_model_never_saw_pass_the_default_gate(adult_roles):
    train, holdout, unseen = adult_roles
    m = _privacy(train, holdout, unseen)
    assert m["gate.passed"], m["gate.failures"]
    assert abs(m["privacy.mia_auc"] - 0.5) < 0.05 and m["privacy.mia_tpr_at_fpr_1pct"] < 0.05
    for key in ("singling_out_risk", "linkability_risk"):
        assert m[f"privacy.{key}"] < 0.05 and m[f"privacy.{key}_upper"] < 0.1, (key, m[f"privacy.{key}"])
