"""The recipes of ARCHITECTURE.md ("Where things go") are true: a new model, a new metric family and
a new modality are each registered here, in this test module and nowhere else, and go through the
stages; and no stage or building block outside the registries branches on a modality or a model
name."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from torch import nn

from pipeline import generate, ingest, publish, score, train
from pipeline.artifacts import StagePaths, metrics_path, prepared_meta, read_synthetic
from pipeline.datacard import release_summary, render_datacard
from pipeline.files import read_json
from pipeline.metrics import SUITES, SuiteResult, metric, register_suite
from pipeline.modalities import GenerationPlan, SourceRows, TrainingData, modalities, register_modality
from pipeline.models import models, register_model
from pipeline.models.base import GenerativeModel, Phase, TabularModel, activate
from pipeline.stages import check_config
from tests.conftest import tiny_config

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# A new model: one class with @register_model


@pytest.fixture
def toy_model():
    """A table model whose rows are noise around a learnt offset (it learns next to nothing)."""

    @register_model("toy_offset")
    class Offset(TabularModel):
        def __init__(self, layout, cfg, train_cfg):
            super().__init__(layout)
            self.offset = nn.Parameter(torch.zeros(layout.width))

        @classmethod
        def card_line(cls, params: dict) -> str:
            return "a learnt offset and unit noise (a toy)"

        def phases(self, t):
            return [Phase("offset", [self.offset], 1e-2)]

        def loss(self, phase, real):
            loss = ((real - self.offset) ** 2).mean()
            return loss, {"offset_loss": loss.detach()}

        @torch.no_grad()
        def sample(self, n, generator, condition=None):
            raw = self.offset + torch.randn(n, self.layout.width, generator=generator, device=self.offset.device)
            return activate(raw, self.layout, generator=generator, hard=True)

    yield "toy_offset"
    models().pop("toy_offset")


@pytest.mark.slow  # ingest, train and generate on the tiny table (seconds)
def test_a_new_model_is_one_class_the_stages_train_generate_and_describe(tmp_path, tiny_source, toy_model):
    cfg = tiny_config(tmp_path, tiny_source, **{"model.name": toy_model, "train.epochs": 1, "generate.rows": 150})
    check_config(cfg)  # a known model for the table dataset
    for stage in (ingest, train, generate):
        stage.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    info = read_json(paths.model / "model.json")
    assert info["model"] == toy_model and info["modality"] == "table"
    rows = read_synthetic(paths.synthetic)
    assert len(rows) == 150 and set(rows.columns) == set(pd.read_parquet(paths.train_data).columns)
    assert len(generate.sample(cfg, "tiny", 20, seed=1)) == 20  # the Python API loads it too
    card = render_datacard({"dataset": "tiny", "modality": "table", "params": {"model": cfg.model.model_dump()},
                            "metrics": {}}, {})
    assert "- a learnt offset and unit noise (a toy)\n" in card


# ---------------------------------------------------------------------------------------------
# A new metric family: one suite with @register_suite


@pytest.fixture
def toy_family():
    """The share of synthetic rows older than the real median age, a headline metric of tables."""

    @register_suite("toy", "table", order=35, metrics=[
        metric("toy.above_median", 0, 1, "share of synthetic rows above the real median age", headline=1),
        metric("toy.median", 0, float("inf"), "the real median age"),
    ])
    def toy(ev) -> SuiteResult:
        median = float(ev.train["age"].median())
        return SuiteResult({"toy.above_median": float((ev.syn["age"] > median).mean()), "toy.median": median})

    yield "toy"
    SUITES.pop("toy")


@pytest.mark.slow  # scores every table family (seconds)
def test_a_new_metric_family_is_scored_logged_and_on_the_data_card(scored_tiny, toy_family, caplog):
    cfg = scored_tiny
    with caplog.at_level(logging.INFO, logger="pipeline.score"):
        result = score.run(cfg, "tiny")
    on_file = json.loads(metrics_path(cfg.metrics_dir, "tiny").read_text())
    keys = list(on_file)
    # In the metrics file in its declared place: after detection (30), before utility (40).
    assert keys.index("detection.score") < keys.index("toy.above_median") < keys.index("utility.tstr_score")
    assert on_file["toy.above_median"] == result.metrics["toy.above_median"]
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("score tiny: quality"))
    # Its headline in the log line, after detection's; the metric that is no headline is not.
    assert f"detection.auc {on_file['detection.auc']:.3f}, toy.above_median " in line and "toy.median" not in line

    release = publish.run(cfg, "tiny")
    card = (Path(release.path) / "_DATACARD.md").read_text()
    rows = [row.split("`")[1] for row in card.splitlines() if row.startswith("| `")]
    assert rows.index("detection.auc") + 1 == rows.index("toy.above_median") and "toy.median" not in rows
    assert "share of synthetic rows above the real median age" in card
    manifest = json.loads((Path(release.path) / "_manifest.json").read_text())
    assert "  toy.above_median" in release_summary(manifest)


# ---------------------------------------------------------------------------------------------
# A new modality: one handler registered with register_modality


class ToyHandler:
    """Points on a line: a source of one number per row (``x``), a model of their mean and spread, a
    metric of how far the synthetic mean is from the real one."""

    MODALITY = "toy"
    UNIT = "points"
    DEFAULT_MODEL = "toy_gauss"
    UNSCORED = ()
    TIMED_ESTIMATE = False
    CARD_USE = ["## Intended use", "- Testing that a modality is one handler."]

    @staticmethod
    def source_parts(source):
        return [source]

    @staticmethod
    def read(source, ds, dataset):
        return SourceRows(pd.read_parquet(source), "toy-hash")

    @staticmethod
    def describe_prepared(train_frame, first):
        return {"modality": "toy", "mean": float(train_frame["x"].mean())}

    @staticmethod
    def ingest_summary(train_frame, holdout, first):
        return f"{len(train_frame)} points"

    @staticmethod
    def training_data(paths, model_cfg, seed, device, max_rows=None, share=None):
        frame = pd.read_parquet(paths.train_data)
        tensor = torch.tensor(frame[["x"]].to_numpy(), dtype=torch.float32, device=device)
        return TrainingData({"column": "x"}, tensor, {"toy_codec": {"column": "x"}}, "toy-hash", len(frame))

    @staticmethod
    def plan_generation(g, seed, loaded, paths):
        return GenerationPlan(g.rows or int(loaded.info["rows"]))

    @staticmethod
    def shard_table(loaded, job, g, stats):
        x = loaded.model.draw(job.rows, torch.Generator().manual_seed(job.seed))
        return pa.table({loaded.info["toy_codec"]["column"]: x.numpy().astype(np.float64)})

    @staticmethod
    def finish_shards(folder, jobs):
        (folder / "_toy.txt").write_text(f"{len(jobs)} shards")

    @staticmethod
    def generation_record(g, plan, stats, loaded):
        return {"modality": "toy"}

    @staticmethod
    def sample_rows(loaded, rows, seed, g, dataset):
        return pd.DataFrame({"x": loaded.model.draw(rows, torch.Generator().manual_seed(seed)).numpy()})

    @staticmethod
    def evidence(cfg, dataset, paths):
        real, syn = pd.read_parquet(paths.train_data), read_synthetic(paths.synthetic)
        return SimpleNamespace(real=real, syn=syn, rows=len(syn))

    @staticmethod
    def report(ev, metrics, details, drawn):
        return {"report.md": f"mean gap {metrics['toy.mean_gap']}\n"}

    @staticmethod
    def plan_details(first, ds, dataset, cfg, holdout_rows):
        return {}


@pytest.fixture
def toy_modality():
    """The toy modality with its model and its metric family, registered here and removed after."""
    register_modality(ToyHandler)

    @register_model("toy_gauss")
    class Gauss(GenerativeModel):
        modality = "toy"

        def __init__(self, codec, cfg, train_cfg):
            super().__init__()
            self.mean, self.log_std = nn.Parameter(torch.zeros(())), nn.Parameter(torch.zeros(()))

        @classmethod
        def read_codec(cls, info):
            return info["toy_codec"]

        @classmethod
        def decoders(cls, codec):
            return {}

        def phases(self, t):
            return [Phase("fit", [self.mean, self.log_std], 0.05)]

        def loss(self, phase, real):  # the Gaussian negative log-likelihood
            loss = (((real[:, 0] - self.mean) / self.log_std.exp()) ** 2 / 2 + self.log_std).mean()
            return loss, {"nll": loss.detach()}

        @torch.no_grad()
        def draw(self, n, generator):
            return self.mean + self.log_std.exp() * torch.randn(n, generator=generator)

    @register_suite("toy_line", "toy", metrics=[
        metric("toy.mean_gap", 0, float("inf"), "distance of the synthetic mean to the real one", headline=1)])
    def toy_line(ev) -> SuiteResult:
        return SuiteResult({"toy.mean_gap": abs(float(ev.syn["x"].mean()) - float(ev.real["x"].mean()))})

    yield "toy"
    modalities().pop("toy")
    models().pop("toy_gauss")
    SUITES.pop("toy_line")


def test_a_new_modality_is_one_handler_the_stages_run(tmp_path, toy_modality, caplog):
    source = tmp_path / "points.parquet"
    pd.DataFrame({"x": np.random.default_rng(0).normal(3.0, 0.5, 400)}).to_parquet(source, index=False)
    cfg = tiny_config(tmp_path, source, target=None, **{
        "datasets.tiny.modality": "toy", "model.name": "toy_gauss", "train.epochs": 30, "train.batch_size": 80,
        "generate.rows": 250})
    check_config(cfg)  # a registered modality, and a model for it
    with caplog.at_level(logging.INFO, logger="pipeline.score"):
        for stage in (ingest, train, generate, score):
            stage.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    assert prepared_meta(paths)["modality"] == "toy" and read_json(paths.model / "model.json")["modality"] == "toy"
    rows = read_synthetic(paths.synthetic)
    assert len(rows) == 250 and (paths.synthetic / "_toy.txt").is_file()
    gap = json.loads(metrics_path(cfg.metrics_dir, "tiny").read_text())["toy.mean_gap"]
    assert 0 <= gap < 1.0  # the model learnt the mean (3.0) from a start at 0
    assert any(r.getMessage().startswith(f"score tiny: toy.mean_gap {gap:.3f}, gate passed") for r in caplog.records)
    assert len(generate.sample(cfg, "tiny", 7)) == 7
    card = render_datacard({"dataset": "tiny", "modality": "toy", "metrics": {"toy.mean_gap": gap},
                            "params": {"model": {"name": "toy_gauss"}}}, {})
    assert "| `toy.mean_gap` |" in card and card.rstrip().endswith("- Testing that a modality is one handler.")


def test_an_unregistered_modality_is_refused_before_any_stage(tmp_path, tiny_source):
    from pipeline.errors import ConfigError

    cfg = tiny_config(tmp_path, tiny_source, **{"datasets.tiny.modality": "sound"})
    with pytest.raises(ConfigError, match=r"datasets.tiny.modality 'sound' is not one of \['image', 'table'\]"):
        check_config(cfg)


# ---------------------------------------------------------------------------------------------
# No branches on a modality or a model name outside the registries

# Code (comments and docstrings aside) that picks a behaviour by a modality or a model name: what
# a handler, a model class or a registration declares instead.
BRANCHES = [
    r"""[!=]=\s*["'](table|image)["']""",  # modality == "image"
    r"""\bin\s*\(["'](table|image)["']""",
    r"""MODALITY\s*[!=]=""",
    r"""\bspec\s+is\s+(not\s+)?None""",  # a loaded model's image spec standing for its modality
    r"""isinstance\([^)]*ImageSpec""",
    r"""["'](gan|ctgan|dcgan|tvae|diffusion|conv_vae)["']""",  # a model by name
    r"""\b_HEADLINE\b|\bFAMILIES\b""",  # a second list of metrics or families
]
# The registries themselves, and the one place model names stay literal: config.py and settings.py
# hold params' defaults and the model sections they validate (one definition of settings).
ALLOWED = ("pipeline/models/", "pipeline/modalities/", "pipeline/config.py", "pipeline/settings.py")


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of ``path`` without comments and docstrings (string literals that are statements)."""
    import ast
    import io
    import tokenize

    source = path.read_text()
    docstrings = {n.value.lineno for n in ast.walk(ast.parse(source))
                  if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}
    lines: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and tok.start[0] in docstrings):
            continue
        for row in range(tok.start[0], tok.end[0] + 1):
            lines[row] = lines.get(row, "") + " " + tok.string
    return sorted(lines.items())


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_no_modality_or_model_name_branches_outside_the_registries():
    found = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(ALLOWED):
            continue
        for row, text in _code_lines(path):
            found += [f"{rel}:{row}: {text.strip()}" for pattern in BRANCHES if re.search(pattern, text)]
    assert not found, "branches on a modality or model name outside the registries:\n" + "\n".join(found)


def test_the_branch_check_finds_a_branch(tmp_path):
    """The check above can fail: it finds each kind of branch in code, not in comments or docstrings."""
    path = tmp_path / "stage.py"
    path.write_text('"""A docstring naming "dcgan" and == "image" is fine."""\n'
                    '# so is a comment: if loaded.spec is not None\n'
                    'if handler.MODALITY == "table":\n    pass\n'
                    'name = "ctgan"\n'
                    'ok = loaded.spec is not None\n')
    hits = [row for row, text in _code_lines(path) if any(re.search(pattern, text) for pattern in BRANCHES)]
    assert hits == [3, 5, 6]


def test_the_registries_are_found_without_a_second_list():
    """Every module of the packages registers by importing it: no list of them to keep."""
    from pipeline.metrics import known_metrics, suites_for

    assert {"conv_vae", "ctgan", "dcgan", "diffusion", "gan", "tvae"} <= set(models())
    assert {"image", "table"} <= set(modalities())
    assert [s.name for s in suites_for("table")][:7] == ["fidelity", "heldout", "precision_recall", "coverage",
                                                         "detection", "utility", "privacy"]
    assert "image.fid" in known_metrics() and "pipeline.metrics" in sys.modules


@pytest.mark.parametrize("name, line", [
    ("gan", "- generator [256, 256], critic [128], pac 5, weight average 0.99\n"),
    ("ctgan", "- generator [256, 256], critic [128], pac 5, weight average 0.99\n"),
    ("dcgan", "- class-conditional DCGAN, width 32, noise 64, label loss 1.0, weight average 0.997\n"),
    ("diffusion", None), ("auto", None), (None, None),
])
def test_a_model_describes_itself_on_the_data_card(name, line):
    params = {"name": name, "gan": {"generator_dims": [256, 256], "discriminator_dims": [128], "pac": 5,
                                    "ema_decay": 0.99},
              "dcgan": {"width": 32, "noise_dim": 64, "label_loss": 1.0, "ema_decay": 0.997}}
    card = render_datacard({"dataset": "d", "modality": "table", "params": {"model": params}, "metrics": {}}, {})
    described = [row for row in card.splitlines(keepends=True)[10:14] if row.startswith("- ") and "seed" not in row]
    assert described == ([line] if line else [])
