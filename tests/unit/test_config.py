import pytest

from pipeline.config import load_config, parse_overrides
from pipeline.errors import ConfigError
from pipeline.stages import check_config
from tests.conftest import REPO


def test_default_params_load():
    cfg = load_config(REPO / "params.yaml")
    assert "adult" in cfg.datasets and cfg.datasets["adult"].target == "income"
    assert cfg.model.name == "diffusion"


def test_override_any_key_parsed_as_yaml():
    cfg = load_config(REPO / "params.yaml", parse_overrides(
        ["train.epochs=3", "model.gan.generator_dims=[64, 32]", "datasets.adult.target=age", "train.device=cpu"]))
    assert cfg.train.epochs == 3 and cfg.model.gan.generator_dims == [64, 32]
    assert cfg.datasets["adult"].target == "age" and cfg.train.device == "cpu"


@pytest.mark.parametrize("override, key", [
    ("train.epoch=3", "train.epoch: unknown key"),
    ("train.epochs=many", "train.epochs"),
    ("train.device=tpu", "train.device"),
    ("model.gan.generator_dims=12", "model.gan.generator_dims"),
    ("datasets.adult.colour=red", "datasets.adult.colour: unknown key"),
    ("train.epochs=true", "train.epochs"),  # strict: no bool -> int coercion
    ("train.gp_weight=yes", "train.gp_weight"),
    ("datasets.adult.csv.sep=|", "datasets.adult.csv.sep"),  # YAML reads a bare | as '': quote it
])
def test_bad_keys_and_types_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(REPO / "params.yaml", parse_overrides([override]))
    assert key in str(err.value)
    # The params file is fine on its own: the error is the --set value's, and says so.
    assert str(err.value).startswith("--set: ") and "params.yaml" not in str(err.value)


def test_params_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("epochs: 150", "epochs: many"))
    with pytest.raises(ConfigError, match=r"^.*bad\.yaml: train\.epochs"):
        load_config(bad, {"seed": 1})
    with pytest.raises(ConfigError, match="is a directory, not a params file"):
        load_config(tmp_path)
    evil = tmp_path / "evil.yaml"
    evil.write_text((REPO / "params.yaml").read_text().replace("  adult:\n", "  ../adult:\n", 1))
    with pytest.raises(ConfigError, match=r"datasets: the name '\.\./adult' has '/'"):
        load_config(evil)


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        parse_overrides(["train.epochs"])
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(REPO / "params.yaml", {"seed.x": 1})


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="multiple of model.gan.pac"):
        load_config(REPO / "params.yaml", {"model.name": "ctgan", "train.batch_size": 53})


@pytest.mark.parametrize("override, message", [
    ({"model.name": "nope"}, "model.name 'nope' is not one of"),
    ({"score.thresholds": {"quality.overal": {"min": 0.5}}}, "unknown metric 'quality.overal'"),
])
def test_names_are_checked_against_the_registries_before_any_stage(override, message):
    cfg = load_config(REPO / "params.yaml", override)  # config knows no registry (and no torch)
    with pytest.raises(ConfigError, match=message):
        check_config(cfg, ["adult"])


def test_config_imports_neither_torch_nor_the_registries():
    import subprocess
    import sys

    code = "import sys, pipeline.config; print(sorted(m for m in ('torch', 'pipeline.models', 'pipeline.metrics') " \
           "if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stderr


def test_unknown_dataset_is_named():
    cfg = load_config(REPO / "params.yaml")
    with pytest.raises(ConfigError, match="dataset 'nope' is not in params"):
        cfg.dataset("nope")


def test_dataset_overrides_resolve_and_the_command_line_wins():
    cfg = load_config(REPO / "params.yaml")
    mnist = cfg.for_dataset("mnist")
    assert mnist.model.name == "dcgan" and cfg.model.name == "diffusion"
    assert "image.label_accuracy" in mnist.score.thresholds and "quality.overall" not in mnist.score.thresholds
    assert cfg.for_dataset("adult") is cfg  # no overrides: the shared sections as they are
    cli = load_config(REPO / "params.yaml", {"train.epochs": 2})
    assert cli.for_dataset("mnist").train.epochs == 2 and cli.for_dataset("mnist").model.name == "dcgan"


@pytest.mark.parametrize("overrides, message", [
    ({"train": {"epochs": 3}}, "'train' is not a dotted key"),
    ({"publish.release_root": "x"}, "'publish.release_root' is not a dotted key of model, train, generate, score"),
    ({"model.name": "dcgan", "train.epochz": 3}, "datasets.mnist.overrides: train.epochz: unknown key"),
    ({"model.name": "ctgan"}, "model 'ctgan' is for tables but mnist is an image dataset"),
])
def test_bad_dataset_overrides_are_named(overrides, message):
    with pytest.raises(ConfigError) as err:
        check_config(load_config(REPO / "params.yaml", {"datasets.mnist.overrides": overrides}), ["mnist"])
    assert message in str(err.value)


def test_a_set_model_applies_to_the_dataset_that_runs_and_params_errors_fail_at_load(tmp_path):
    cfg = load_config(REPO / "params.yaml", {"model.name": "conv_vae"})  # fine: only checked when a dataset runs
    assert cfg.for_dataset("mnist").model.name == "conv_vae"  # the command line beats the dataset's dcgan
    check_config(cfg, ["mnist"])
    with pytest.raises(ConfigError, match="model 'conv_vae' is for images but adult is a table dataset"):
        check_config(cfg, ["adult"])
    text = (REPO / "params.yaml").read_text().replace("      model.name: dcgan\n", "")
    text = text.replace("      train.batch_size: 32", "      train.batch_size: 50")  # (a multiple of ctgan's pac)
    assert text != (REPO / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match="model 'diffusion' is for tables but mnist is an image dataset"):
        check_config(load_config(tmp_path / "params.yaml"))  # every dataset of the file


def test_more_than_one_node_needs_a_rendezvous_endpoint():
    with pytest.raises(ConfigError, match="rdzv_endpoint"):
        load_config(REPO / "params.yaml", {"train.distributed.nnodes": 2})


def test_the_plain_settings_have_the_configs_defaults_and_carry_its_values():
    """The models and the loop take ``pipeline.settings`` dataclasses (no pydantic); their defaults
    are the config's, and a config's values reach them, nested sections included."""
    from dataclasses import asdict

    from pipeline.config import ModelConfig, TrainConfig
    from pipeline.settings import ModelSettings, TrainSettings, from_dict

    assert asdict(ModelConfig().settings()) == asdict(ModelSettings())
    assert asdict(TrainConfig().settings()) == asdict(TrainSettings())
    cfg = load_config(REPO / "params.yaml", {"model.gan.pac": 2, "train.epochs": 3, "train.batch_size": 10})
    model, train = cfg.model.settings(), cfg.train.settings()
    assert isinstance(model, ModelSettings) and model.gan.pac == 2 and train.epochs == 3
    assert from_dict(TrainSettings, cfg.train.model_dump(mode="json")) == train
