"""The differential-privacy guarantee a release was made under (``train.privacy``), as metrics the
gate can hold: ``dp.epsilon`` and ``dp.delta``, what training spent (model.json's ``privacy.dp``).

Not measured on the rows: read from the train stage's record. A model trained without differential
privacy has none, so a threshold on ``dp.epsilon`` (``{max: 3}``) fails its gate as "not computed":
a nightly run can refuse to publish anything not made under a budget. Registered for tables and
images alike, so that an image release (which cannot be trained privately) fails such a gate too
rather than leaving it unjudged.
"""

from __future__ import annotations

from pipeline.files import read_json
from pipeline.metrics import SuiteResult, metric, register_suite

METRICS = [
    metric("dp.epsilon", 0.0, 1000.0, "the epsilon of the (epsilon, delta)-differential privacy the model and its "
                                      "rows were made under (what training spent); absent without it"),
    metric("dp.delta", 0.0, 1.0, "the delta of that guarantee"),
]


def guarantee(evidence) -> SuiteResult:
    paths = getattr(evidence, "paths", None)  # (evidence built without a work folder: no train record)
    model = paths.model / "model.json" if paths is not None else None
    dp = ((read_json(model) if model is not None and model.is_file() else {}).get("privacy") or {}).get("dp") or {}
    if "epsilon" not in dp:
        return SuiteResult({})
    return SuiteResult({"dp.epsilon": float(dp["epsilon"]), "dp.delta": float(dp["delta"])},
                       details={"dp": dp})


def _words(metrics: dict) -> str:
    eps = metrics.get("dp.epsilon")
    return f"dp.epsilon {eps:.3g}" if isinstance(eps, float) else ""


register_suite("dp", "table", order=90, log=_words, metrics=METRICS)(guarantee)
register_suite("dp_image", "image", order=90, log=_words, metrics=METRICS)(guarantee)
