import pytest

from pipeline.config import load_config, parse_overrides
from pipeline.errors import ConfigError
from pipeline.stages import check_config
from tests.conftest import REPO


def test_default_params_load():
    cfg = load_config(REPO / "params.yaml")
    assert "adult" in cfg.datasets and cfg.datasets["adult"].target == "income"
    assert cfg.model.name == "autoregressive"


def test_override_any_key_parsed_as_yaml():
    cfg = load_config(REPO / "params.yaml", parse_overrides(
        ["train.epochs=3", "model.gan.generator_dims=[64, 32]", "datasets.adult.target=age", "train.device=cpu"]))
    assert cfg.train.epochs == 3 and cfg.model.gan.generator_dims == [64, 32]
    assert cfg.datasets["adult"].target == "age" and cfg.train.device == "cpu"



def test_exponent_numbers_are_numbers_in_params_and_overrides(tmp_path):
    """YAML 1.2 reads 1e-5 as a number; PyYAML (YAML 1.1) would read text that a number setting refuses."""
    cfg = load_config(REPO / "params.yaml", parse_overrides(["train.privacy.delta=1e-5", "train.lr_generator=2E-4",
                                                            "train.privacy.epsilon=+3e0"]))
    assert cfg.train.privacy.delta == 1e-5 and cfg.train.lr_generator == 2e-4 and cfg.train.privacy.epsilon == 3.0
    assert parse_overrides(["datasets.adult.target=1e5x"])["datasets.adult.target"] == "1e5x"  # text stays text
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("weight_decay: 0.000001", "weight_decay: 1e-6"))
    assert load_config(params).train.weight_decay == 1e-6

@pytest.mark.parametrize("override, key", [
    ("train.epoch=3", "train.epoch: unknown key"),
    ("train.epochs=many", "train.epochs"),
    ("train.device=tpu", "train.device"),
    ("model.gan.generator_dims=12", "model.gan.generator_dims"),
    ("datasets.adult.colour=red", "datasets.adult.colour: unknown key"),
    ("train.epochs=true", "train.epochs"),  # strict: no bool -> int coercion
    ("train.gp_weight=yes", "train.gp_weight"),
    ("datasets.adult.csv.sep=|", "datasets.adult.csv.sep"),  # YAML reads a bare | as '': quote it
    ("datasets.adult.csv.names=[a, a]", "'a' is named twice"),
    ("datasets.adult.csv.names=[a, '']", "datasets.adult.csv.names"),
    ("datasets.adult.csv={header: true, names: [a]}", "names are for a headerless file"),
])
def test_bad_keys_and_types_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(REPO / "params.yaml", parse_overrides([override]))
    assert key in str(err.value)
    # The params file is fine on its own: the error is the --set value's, and says so.
    assert str(err.value).startswith("--set: ") and "params.yaml" not in str(err.value)


def test_params_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("epochs: auto ", "epochs: many "))
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


def test_the_batch_is_a_multiple_of_the_pac_of_whichever_model_has_one():
    """Keyed by what the settings declare (the ``gan`` section has a ``pac`` and serves gan and
    ctgan), not by model names in the config."""
    from pipeline.settings import model_section

    assert [model_section(n) for n in ("gan", "ctgan", "tvae", "dcgan", "auto", "nope")] == \
        ["gan", "gan", "tvae", "dcgan", "auto", None]
    for name in ("diffusion", "tvae", "dcgan", "nope"):  # no pac, or an unknown name (check_config's)
        assert load_config(REPO / "params.yaml", {"model.name": name, "train.batch_size": 53}).train.batch_size == 53
    with pytest.raises(ConfigError, match=r"train.batch_size \(53\) must be a multiple of model.gan.pac \(5\)"):
        load_config(REPO / "params.yaml", {"model.name": "auto", "model.auto.candidates": ["tvae", "gan"],
                                           "train.batch_size": 53})


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
    assert mnist.model.name == "dcgan" and cfg.model.name == "autoregressive"
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
    with pytest.raises(ConfigError, match="model 'autoregressive' is for tables but mnist is an image dataset"):
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


# params.yaml keys that are not settings with a code default: the datasets are the run's own data.
NOT_SETTINGS = {"datasets"}


def _setting_keys(section, tree=None, prefix: str = "") -> set[str]:
    """Dotted keys of ``section``'s settings (``tree`` None), or of the keys ``tree`` spells out; a
    field that is itself a section is walked into, any other (a dict of thresholds too) is one key."""
    from pydantic import BaseModel

    keys = set()
    for name in (section.model_fields if tree is None else tree):
        field = section.model_fields.get(name)
        kind = field.annotation if field is not None else None
        nested = isinstance(kind, type) and issubclass(kind, BaseModel)
        if nested and (tree is None or isinstance(tree[name], dict)):
            keys |= _setting_keys(kind, None if tree is None else tree[name], f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def _value(tree: dict, key: str):
    for part in key.split("."):
        tree = tree[part]
    return tree


def test_the_codes_defaults_are_params_yaml_key_for_key():
    """Both ways: every key params.yaml spells is a setting of the code whose default is its value,
    and every setting of the code is spelled in params.yaml (a field added on one side only fails)."""
    import yaml

    from pipeline.config import Config

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    in_code = _setting_keys(Config) - NOT_SETTINGS
    in_params = _setting_keys(Config, raw) - NOT_SETTINGS
    assert in_params == in_code, (f"only in params.yaml: {sorted(in_params - in_code)}; "
                                  f"only in the code: {sorted(in_code - in_params)}")
    params, defaults = load_config(REPO / "params.yaml").to_dict(), Config(datasets={}).to_dict()
    differ = {k: (_value(params, k), _value(defaults, k)) for k in in_code if _value(params, k) != _value(defaults, k)}
    assert differ == {}, f"params.yaml's value, the code's default: {differ}"
    assert load_config(REPO / "params.yaml").model.name == Config(datasets={}).model.name == "autoregressive"


def test_the_parity_check_sees_a_key_on_one_side_only():
    """The walk above is not blind: a setting missing from params.yaml, or a key params.yaml has
    and the code has not, changes the keys it finds."""
    import yaml

    from pipeline.config import Config

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    full = _setting_keys(Config, raw)
    del raw["model"]["gan"]["pac"]
    raw["train"]["new_knob"] = 1
    assert full - _setting_keys(Config, raw) == {"model.gan.pac"}
    assert _setting_keys(Config, raw) - full == {"train.new_knob"}
    assert "score.thresholds" in full and "datasets" in full  # a dict-valued setting is one key


def test_settings_need_no_pydantic():
    """The plain settings are the one definition, and the GPU box and benchmarks build them without
    pydantic installed."""
    import subprocess
    import sys

    code = "import sys, pipeline.settings as s; s.ModelSettings(); s.TrainSettings(); print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("text, parsed", [
    ("utility.tstr_score>=0.4", ("utility.tstr_score", "min", 0.4)),
    (" detection.auc <= 0.97 ", ("detection.auc", "max", 0.97)),
    ("privacy.exact_match_rate<=1e-3", ("privacy.exact_match_rate", "max", 0.001)),
])
def test_threshold_parses_metric_bound_and_value(text, parsed):
    from pipeline.config import parse_threshold

    assert parse_threshold(text) == parsed


@pytest.mark.parametrize("text", ["utility.tstr_score>0.4", "utility.tstr_score=0.4", "utility.tstr_score=>0.4",
                                  ">=0.4", "quality.overall>=", "quality.overall>=high", "quality.overall>=nan",
                                  "quality.overall>=inf", "quality.overall>=0.1<=0.9", "quality overall>=0.5"])
def test_a_bad_threshold_is_one_line_naming_it_and_the_form(text):
    from pipeline.config import parse_threshold

    with pytest.raises(ConfigError) as err:
        parse_threshold(text)
    message = str(err.value)
    assert "\n" not in message and repr(text) in message and "METRIC>=NUMBER or METRIC<=NUMBER" in message
    with pytest.raises(ConfigError, match="METRIC>=NUMBER"):  # the command line's path checks it at once
        parse_overrides([], [text])


def test_threshold_changes_one_bound_keeps_the_rest_and_wins_over_a_datasets_own():
    cfg = load_config(REPO / "params.yaml", parse_overrides(
        [], ["quality.column_pair_trends>=0.5", "image.fid_ratio<=20", "image.fid_ratio<=25"]))
    params = load_config(REPO / "params.yaml")
    adult, mnist = cfg.for_dataset("adult").score.thresholds, cfg.for_dataset("mnist").score.thresholds
    assert adult["quality.column_pair_trends"].min == 0.5
    edited = ("quality.column_pair_trends", "image.fid_ratio")
    assert {k: v for k, v in adult.items() if k not in edited} == \
        {k: v for k, v in params.score.thresholds.items() if k not in edited}  # the others kept
    # mnist sets its own thresholds: the --threshold wins there too (the last of a repeated one),
    # and its other thresholds stay
    own = params.for_dataset("mnist").score.thresholds
    assert mnist["image.fid_ratio"].max == 25 and mnist["image.label_accuracy"] == own["image.label_accuracy"]
    assert cfg.threshold_overrides("mnist") == [
        {"metric": "quality.column_pair_trends", "bound": "min", "params": None, "used": 0.5},
        {"metric": "image.fid_ratio", "bound": "max", "params": 10.0, "used": 25.0}]
    assert cfg.threshold_overrides("adult")[0] == {"metric": "quality.column_pair_trends", "bound": "min",
                                                   "params": 0.85, "used": 0.5}
    # params itself is untouched, and a resolved config resolves to itself with the same record
    assert cfg.score.thresholds == params.score.thresholds
    assert cfg.datasets["mnist"].overrides == params.datasets["mnist"].overrides
    resolved = cfg.for_dataset("mnist")
    assert resolved.for_dataset("mnist") is resolved
    assert resolved.threshold_overrides("mnist") == cfg.threshold_overrides("mnist")
    assert load_config(REPO / "params.yaml").threshold_overrides("adult") == []


def test_the_other_bound_of_the_metric_is_kept_and_an_unchanged_bound_is_no_override():
    cfg = load_config(REPO / "params.yaml", parse_overrides(
        ["score.thresholds={quality.overall: {min: 0.7, max: 0.99}}"], ["quality.overall>=0.5",
                                                                       "quality.overall<=0.99"]))
    th = cfg.for_dataset("adult").score.thresholds
    assert list(th) == ["quality.overall"] and (th["quality.overall"].min, th["quality.overall"].max) == (0.5, 0.99)
    assert cfg.threshold_overrides("adult") == [{"metric": "quality.overall", "bound": "min", "params": 0.7,
                                                 "used": 0.5}]


def test_a_threshold_on_an_unknown_metric_is_refused():
    cfg = load_config(REPO / "params.yaml", parse_overrides([], ["quality.overal>=0.5"]))
    with pytest.raises(ConfigError, match="unknown metric 'quality.overal'"):
        check_config(cfg, ["adult"])


def test_the_command_line_refuses_a_bad_threshold_in_one_line(capsys):
    from pipeline.__main__ import build_parser, main

    args = build_parser().parse_args(["score", "--dataset", "adult", "--threshold", "utility.tstr_score>=0.4",
                                      "--threshold", "detection.auc<=0.97"])
    assert args.thresholds == ["utility.tstr_score>=0.4", "detection.auc<=0.97"]
    for bad in ("quality.overall=0.5", "quality.overal>=0.5"):
        assert main(["score", "--dataset", "adult", "--params", str(REPO / "params.yaml"), "--threshold", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and ("METRIC>=NUMBER" in err or "unknown metric" in err)


def test_thresholds_nested_as_dvc_sets_them_dotted_or_mixed_are_one_gate_by_dotted_key():
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert "quality" in raw["score"]["thresholds"] and "quality.overall" not in raw["score"]["thresholds"]
    params = load_config(REPO / "params.yaml")
    gate = {k: v.model_dump() for k, v in params.score.thresholds.items()}
    assert list(gate)[:2] == ["quality.overall", "quality.column_pair_trends"]  # the registry's keys, in order
    mixed = {"quality.overall": gate["quality.overall"],
             "quality": {"column_pair_trends": gate["quality.column_pair_trends"]},
             **{k: v for k, v in gate.items() if not k.startswith("quality.")}}
    for form in (gate, mixed):  # an older params file (dotted), or both forms side by side
        cfg = load_config(REPO / "params.yaml", {"score.thresholds": form})
        assert {k: v.model_dump() for k, v in cfg.score.thresholds.items()} == gate
        assert cfg.fingerprint("score") == params.fingerprint("score")  # the lineage hashes do not move
    # What `dvc exp run -S score.thresholds.quality.column_pair_trends.min=0.6` writes, and --set's way to it
    from pipeline.config import build_config

    raw["score"]["thresholds"]["quality"]["column_pair_trends"]["min"] = 0.6
    assert build_config(raw).score.thresholds["quality.column_pair_trends"].min == 0.6
    cli = load_config(REPO / "params.yaml", parse_overrides(["score.thresholds.quality.column_pair_trends.min=0.6"]))
    assert cli.score.thresholds["quality.column_pair_trends"].min == 0.6
    assert cli.score.thresholds["quality.overall"] == params.score.thresholds["quality.overall"]
    check_config(cli, ["adult"])  # known metrics, bounds in range


@pytest.mark.parametrize("overrides, origin", [
    ({"score.thresholds": {"quality.overall": {"min": 0.7}, "quality": {"overall": {"max": 0.9}}}}, "--set"),
    # `dvc exp run -S score.thresholds.quality.overall.min=0.6` on a params file still in the dotted
    # form: DVC writes the nested key into the file beside the dotted one
    ({"quality": {"overall": {"min": 0.6}}}, "params"),
    ({"datasets.mnist.overrides": {"model.name": "dcgan", "score.thresholds": {
        "quality": {"overall": {"min": 0.5}}, "quality.overall": {"min": 0.5}}},
      "--threshold": ["image.fid_ratio<=20"]}, "datasets.mnist.overrides"),
])
def test_a_threshold_given_both_dotted_and_nested_is_refused_in_one_line(tmp_path, overrides, origin):
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["score"]["thresholds"] = {"quality.overall": {"min": 0.7}, "detection.auc": {"max": 0.95}}
    dotted = tmp_path / "params.yaml"  # a params file in the older, dotted form
    dotted.write_text(yaml.safe_dump(raw, sort_keys=False))
    load_config(dotted)  # fine on its own
    if origin == "params":
        raw["score"]["thresholds"].update(overrides)
        dotted.write_text(yaml.safe_dump(raw, sort_keys=False))
        overrides = {}
    with pytest.raises(ConfigError) as err:
        load_config(dotted, overrides)
    message = str(err.value)
    assert "\n" not in message and "score.thresholds" in message and message.startswith(
        str(dotted) if origin == "params" else origin)
    assert "is given twice, as 'quality.overall' and as 'quality: overall'" in message or \
        "is given twice, as 'quality: overall' and as 'quality.overall'" in message


def test_a_value_that_fits_no_member_of_a_union_is_one_line():
    for value, words in (("many", "a valid integer, or 'auto' (got 'many')"),
                         (0, "greater than or equal to 1, or 'auto' (got 0)")):
        with pytest.raises(ConfigError) as err:
            load_config(REPO / "params.yaml", {"train.epochs": value})
        assert str(err.value) == f"--set: train.epochs: Input should be {words}"


def test_a_dp_run_of_a_table_takes_dp_sgds_batch_as_its_batch_size():
    """train.privacy.batch_size is train.batch_size in a DP run of a table; without epsilon, for
    images, or null: train.batch_size."""
    assert load_config(REPO / "params.yaml").for_dataset("adult").train.batch_size == 500
    dp = load_config(REPO / "params.yaml", {"train.privacy.epsilon": 3, "train.privacy.batch_size": 1500})
    adult = dp.for_dataset("adult")
    assert adult.train.batch_size == 1500 and dp.train.batch_size == 500  # the shared sections are not edited
    assert adult.for_dataset("adult") is adult
    assert dp.for_dataset("mnist").train.batch_size == 32  # the image dataset's own
    kept = load_config(REPO / "params.yaml", {"train.privacy.epsilon": 3, "train.privacy.batch_size": None})
    assert kept.for_dataset("adult").train.batch_size == 500


def test_a_dp_runs_clip_auto_is_its_models_own():
    """train.privacy.max_grad_norm auto is the clip of the model a DP run trains: the autoregressive
    model's private recipe, 1.0 for a model without one; a number is kept; without epsilon it stays
    auto (nothing reads it) and DP-SGD refuses an unresolved auto in one line."""
    import torch

    from pipeline.training.private import DPSGD

    assert load_config(REPO / "params.yaml").for_dataset("adult").train.privacy.max_grad_norm == "auto"
    dp = load_config(REPO / "params.yaml", {"train.privacy.epsilon": 3})
    adult = dp.for_dataset("adult")
    assert adult.train.privacy.max_grad_norm == 20.0 == adult.model.autoregressive.private.max_grad_norm
    assert dp.train.privacy.max_grad_norm == "auto" and adult.for_dataset("adult") is adult
    own = load_config(REPO / "params.yaml", {"train.privacy.epsilon": 3,
                                             "model.autoregressive.private.max_grad_norm": 7})
    assert own.for_dataset("adult").train.privacy.max_grad_norm == 7.0
    for model in ("diffusion", "tvae"):
        other = load_config(REPO / "params.yaml", {"train.privacy.epsilon": 3, "train.privacy.model": model})
        assert other.for_dataset("adult").train.privacy.max_grad_norm == 1.0
    assert dp.for_dataset("mnist").train.privacy.max_grad_norm == 1.0  # its dcgan has none (DP-SGD refuses it)
    given = load_config(REPO / "params.yaml", {"train.privacy.epsilon": 3, "train.privacy.max_grad_norm": 5})
    assert given.for_dataset("adult").train.privacy.max_grad_norm == 5.0
    with pytest.raises(ConfigError, match=r"^train.privacy.max_grad_norm: auto is resolved by the run's config"):
        DPSGD(torch.nn.Linear(2, 1), {}, None, dp.train.privacy, rows=10, batch=2, planned_steps=1,
              device=torch.device("cpu"))


def test_a_dp_run_of_a_table_trains_the_private_model_in_place_of_model_name():
    """train.privacy.model stands in for model.name when epsilon is set, for tables only (an image
    dataset keeps its own model, which DP-SGD then refuses); null keeps model.name; a model DP-SGD
    cannot train is refused in one line naming the key."""
    plain = load_config(REPO / "params.yaml", {"model.name": "diffusion"})
    assert plain.for_dataset("adult").model.name == "diffusion"  # no epsilon: model.name
    dp = load_config(REPO / "params.yaml", {"model.name": "diffusion", "train.privacy.epsilon": 3})
    adult = dp.for_dataset("adult")
    assert adult.model.name == "autoregressive" and adult.for_dataset("adult") is adult  # resolved once
    assert dp.model.name == "diffusion"  # the shared sections are not edited
    assert load_config(REPO / "params.yaml", {"train.privacy.epsilon": 3}).for_dataset("mnist").model.name == "dcgan"
    kept = load_config(REPO / "params.yaml", {"model.name": "diffusion", "train.privacy.epsilon": 3,
                                              "train.privacy.model": None})
    assert kept.for_dataset("adult").model.name == "diffusion"
    chosen = load_config(REPO / "params.yaml", {"train.privacy.epsilon": 3, "train.privacy.model": "tvae"})
    assert chosen.for_dataset("adult").model.name == "tvae"
    check_config(chosen, ["adult"])
    bad = load_config(REPO / "params.yaml", {"train.privacy.epsilon": 3, "train.privacy.model": "ctgan"})
    with pytest.raises(ConfigError, match=r"^train.privacy.model 'ctgan' is not a model DP-SGD trains; set it to "
                                          r"autoregressive or diffusion or tvae, or null to train model.name$"):
        check_config(bad, ["adult"])
