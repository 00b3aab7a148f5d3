"""dvc.yaml against the code, the config and the score stage's records, without running DVC (the e2e
tests run it): it is what ``python -m pipeline dvc-yaml`` writes, each stage lists every module it
imports and the params keys it reads, and the DVC metrics file holds numbers only."""

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from pipeline import dvcgen
from pipeline.artifacts import StagePaths, load_scores, score_records
from pipeline.config import ScoreConfig
from pipeline.errors import InputDataError
from pipeline.files import write_json
from tests.conftest import REPO


def _dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def _stage(name: str) -> dict:
    return _dvc_yaml()["stages"][name]["do"]


@pytest.mark.slow  # near a second: the fast tier stays under a minute
def test_dvc_yaml_is_what_the_generator_writes():
    """A dataset, its model or a stage's imports changed without ``python -m pipeline dvc-yaml``."""
    assert (REPO / "dvc.yaml").read_text() == dvcgen.render(REPO / "params.yaml"), \
        "dvc.yaml is not current: run python -m pipeline dvc-yaml"


@pytest.mark.parametrize("stage", ["ingest", "train", "generate", "score", "publish"])
def test_a_stage_lists_every_module_it_imports(stage):
    deps = dvcgen.stage_deps((REPO / "dvc.yaml").read_text())[stage]
    files = [dvcgen.module_file(m).relative_to(REPO).as_posix() for m in dvcgen.imported_modules(f"pipeline.{stage}")]
    assert f"pipeline/{stage}.py" in files and "pipeline/config.py" in files
    missing = [f for f in files if not dvcgen.covers(deps, f)]
    assert not missing, f"{stage} imports {missing}, which its deps in dvc.yaml do not list"
    assert "pipeline" not in deps and "pipeline/" not in deps  # never the whole package: a stage's own code
    assert not any(d.startswith(("pipeline/__main__", "pipeline/stages", "pipeline/dvcgen")) for d in deps)


def _toy(tmp_path: Path) -> Path:
    """A package whose stage imports at the top, in a function, relatively, a submodule by
    ``from pkg import sub``, and a registry that imports its members by name."""
    files = {
        "pkg/__init__.py": "",
        "pkg/stage.py": """
            from pkg.base import helper
            from . import sibling
            def run():
                from pkg.sub import deep
                import pkg.reg
            """,
        "pkg/base.py": "import os\n",
        "pkg/sibling.py": "",
        "pkg/unused.py": "import pkg.stage\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "from ..base import helper\n",
        "pkg/sub/other.py": "", "pkg/sub/more.py": "",
        "pkg/reg/__init__.py": """
            import importlib
            def load():
                for name in ("a", "b"):
                    importlib.import_module(f"pkg.reg.{name}")
            """,
        "pkg/reg/a.py": "", "pkg/reg/b.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_imports_are_found_at_the_top_in_functions_relative_and_by_name(tmp_path):
    root = _toy(tmp_path)
    assert dvcgen.imported_modules("pkg.stage", root) == {
        "pkg", "pkg.stage", "pkg.base", "pkg.sibling", "pkg.sub", "pkg.sub.deep", "pkg.reg", "pkg.reg.a", "pkg.reg.b"}
    # a package mostly imported is its folder; one half imported, its files
    assert dvcgen.code_deps("pkg.stage", root) == [
        "pkg/stage.py", "pkg/__init__.py", "pkg/base.py", "pkg/reg", "pkg/sibling.py", "pkg/sub/__init__.py",
        "pkg/sub/deep.py"]
    # a new import the deps do not list is found
    (root / "pkg/sibling.py").write_text("import pkg.unused\n")
    deps = dvcgen.code_deps("pkg.stage", root)
    assert "pkg/unused.py" in deps and dvcgen.covers(deps, "pkg/reg/b.py")
    assert not dvcgen.covers(deps, "pkg/sub/other.py")


def test_a_registry_module_that_lists_its_package_imports_every_module_of_it(tmp_path):
    """``pipeline/models/registry.py`` finds the models with ``pkgutil.iter_modules`` over its own
    folder: a stage that reaches the registry depends on every module of the package."""
    files = {
        "pkg/__init__.py": "",
        "pkg/stage.py": "from pkg.plugins.registry import find\n",
        "pkg/plugins/__init__.py": "",
        "pkg/plugins/registry.py": """
            import importlib, pkgutil
            from pathlib import Path
            def find():
                for m in pkgutil.iter_modules([str(Path(__file__).parent)]):
                    importlib.import_module(f"{__name__.rpartition('.')[0]}.{m.name}")
            """,
        "pkg/plugins/one.py": "import pkg.helper\n", "pkg/plugins/two.py": "",
        "pkg/helper.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    assert dvcgen.imported_modules("pkg.stage", tmp_path) >= {"pkg.plugins.one", "pkg.plugins.two", "pkg.helper"}


def _params(stage: str, dataset: str) -> list[str]:
    """A stage's params keys for one dataset, as DVC resolves the foreach item."""
    item = _dvc_yaml()["vars"][0][dvcgen.VARS][dataset]
    keys = [p.split("#")[0].strip() for p in _stage(stage)["params"]]
    return [k.replace("${key}", dataset).replace("${item.model}", item["model"]) for k in keys]


def test_train_lists_the_section_of_its_own_model_alone():
    """Editing model.dcgan does not retrain Adult (autoregressive), nor model.autoregressive MNIST (dcgan)."""
    adult, mnist = _params("train", "adult"), _params("train", "mnist")
    assert {"seed", "train", "model.name", "datasets.adult", "model.autoregressive"} <= set(adult)
    assert {"seed", "train", "model.name", "datasets.mnist", "model.dcgan"} <= set(mnist)
    sections = [f"model.{s}" for s in ("gan", "tvae", "diffusion", "autoregressive", "dcgan", "conv_vae", "auto")]
    assert not (set(adult) & (set(sections) - {"model.autoregressive"})) and "model" not in adult
    assert not (set(mnist) & (set(sections) - {"model.dcgan"})) and "model" not in mnist
    for stage in ("ingest", "generate", "score", "publish"):  # no other stage reads the model settings
        assert not any(k.startswith("model") for k in _params(stage, "adult")), stage


@pytest.mark.parametrize("model, section", [("diffusion", "model.diffusion"), ("ctgan", "model.gan"),
                                            ("gan", "model.gan"), ("tvae", "model.tvae"), ("dcgan", "model.dcgan"),
                                            ("conv_vae", "model.conv_vae"), ("auto", "model")])
def test_a_model_reads_the_section_its_class_reads(model, section):
    assert dvcgen.model_params(model) == section  # auto: the candidates are chosen at run time


def test_a_dataset_with_another_model_is_wired_to_its_section(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"]["adult"]["overrides"] = {"model.name": "ctgan"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    wired = dvcgen.dataset_vars(tmp_path / "params.yaml")
    assert wired == {"adult": {"data": "data/adult", "model": "model.gan"},
                     "mnist": {"data": "data/mnist", "model": "model.dcgan"}}


def test_every_stage_of_the_table_is_wired():
    from pipeline.stages import STAGE_NAMES

    assert list(_dvc_yaml()["stages"]) == list(STAGE_NAMES) == list(dvcgen.WIRING)


def test_score_depends_on_every_score_key_but_the_thresholds_which_publish_judges():
    score, publish = _stage("score")["params"], _stage("publish")["params"]
    assert [p.split("#")[0].strip() for p in score] == [
        "seed", "datasets.${key}", *(f"score.{k}" for k in ScoreConfig.model_fields if k != "thresholds"),
        "train.device"]
    assert "score.thresholds" in publish  # a threshold change re-runs publish alone
    assert "${metrics_dir}/${key}.json" not in _stage("publish")["deps"]  # publish reads details.json


def test_the_metrics_file_is_a_dvc_metric_that_git_tracks():
    assert _stage("score")["metrics"] == [{"${metrics_dir}/${key}.json": {"cache": False}}]
    ignored = [line.strip().strip("/") for line in (REPO / ".gitignore").read_text().splitlines()]
    metrics_dir = yaml.safe_load((REPO / "params.yaml").read_text())["metrics_dir"]
    assert metrics_dir not in ignored  # `dvc exp run` commits it with the experiment; `dvc exp show` reads it


def _scored() -> dict:
    """The score stage's flat results, as ``score.run`` holds them before writing."""
    return {"rows": 600, "synthetic_hash": "ab" * 32, "quality.overall": 0.81, "utility.task": "classification",
            "utility.metric": "roc_auc", "utility.ratio": None, "gate.not_judged": {"utility.": "48 holdout rows"},
            "gate.passed": True, "gate.failures": [], "score.seconds": 1.5}


def test_the_metrics_file_holds_numbers_only_and_the_record_everything(tmp_path):
    record, numbers = score_records(_scored(), {"dataset": "tiny", "thresholds": {}})
    assert numbers == {"rows": 600, "quality.overall": 0.81, "utility.ratio": None, "score.seconds": 1.5}
    assert record["metrics"] == {k: v for k, v in _scored().items() if not k.startswith(("gate.", "synthetic"))}
    assert record["synthetic_hash"] == "ab" * 32 and record["dataset"] == "tiny"
    assert record["gate"] == {"passed": True, "failures": [], "not_judged": {"utility.": "48 holdout rows"}}
    # Read back, the record is the flat view the gate, publish and the manifest read.
    paths = StagePaths.of(tmp_path, "tiny")
    write_json(paths.details, record)
    flat, details = load_scores(paths)
    assert flat == {k: v for k, v in _scored().items() if k not in ("gate.passed", "gate.failures")}
    assert details == json.loads(paths.details.read_text())


@pytest.mark.parametrize("record", [{"dataset": "tiny"}, {"metrics": {}, "gate": {}}, [1]])
def test_a_record_without_scores_is_one_line_naming_the_stage(tmp_path, record):
    paths = StagePaths.of(tmp_path, "tiny")
    write_json(paths.details, record)
    with pytest.raises(InputDataError) as err:
        load_scores(paths)
    assert "score stage" in str(err.value) and "\n" not in str(err.value)



def test_a_source_at_the_top_of_the_repository_is_its_own_dep(tmp_path):
    """The top folder holds every output too: as a dep, DVC would refuse the stage (a cycle)."""
    params = tmp_path / "params.yaml"
    params.write_text("datasets:\n  top: {source: x.csv}\n  below: {source: data/below/x.csv}\n")
    found = dvcgen.dataset_vars(params, tmp_path)
    assert found["top"]["data"] == "x.csv" and found["below"]["data"] == "data/below"
