"""A stage declares its own command-line options once, in its module (``OPTIONS``): the CLI adds
them to the stage's command, and the Prefect flow gives each its flow value, both through the
stage table."""

import subprocess
import sys

import pytest

import pipeline.__main__ as cli
from pipeline import train
from pipeline.options import Option
from pipeline.stages import STAGE_NAMES, stage
from pipeline.training.resume import Resume
from tests.conftest import REPO


@pytest.fixture
def ran(monkeypatch) -> list:
    """The stage calls ``main`` makes, instead of running them: (stage, dataset, kwargs, conditions)."""
    calls = []
    monkeypatch.setattr(cli, "check_config", lambda cfg, datasets: None)
    monkeypatch.setattr(cli, "run_stage", lambda name, cfg, dataset, **kw: calls.append(
        (name, dataset, kw, dict(cfg.generate.conditions))))
    return calls


def _main(*argv: str) -> int:
    return cli.main([*argv, "--dataset", "adult", "--params", str(REPO / "params.yaml"), "-q"])


def test_train_resume_and_generate_condition_reach_the_stage(ran):
    assert _main("train") == 0 and _main("train", "--resume") == 0 and _main("train", "--resume", "if-compatible") == 0
    assert [c[2] for c in ran] == [{"resume": Resume.NO}, {"resume": Resume.YES}, {"resume": Resume.IF_COMPATIBLE}]
    ran.clear()
    assert _main("generate", "--condition", "income=>50K", "--condition", "sex=Male") == 0
    assert ran == [("generate", "adult", {}, {"income": ">50K", "sex": "Male"})]
    ran.clear()
    assert _main("score") == 0 and ran[0][2] == {}


def test_a_bad_condition_is_one_line(ran, capsys):
    assert _main("generate", "--condition", "income") == 2
    assert "error: --condition 'income': expected COLUMN=VALUE" in capsys.readouterr().err and not ran


def test_a_flow_run_resumes_training_if_compatible_and_gives_other_stages_nothing():
    assert stage("train").flow_kwargs() == {"resume": Resume.IF_COMPATIBLE}
    assert all(stage(name).flow_kwargs() == {} for name in STAGE_NAMES if name != "train")


def test_a_new_option_declared_in_the_stage_module_reaches_the_cli_and_the_flow(ran, monkeypatch, capsys):
    toy = Option("--toy-level", "a toy option of the train stage, declared in its module alone",
                 {"type": int, "default": 1}, keyword="toy_level", flow=7)
    monkeypatch.setattr(train, "OPTIONS", (*train.OPTIONS, toy))
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "a toy option of the train stage" in " ".join(capsys.readouterr().out.split())
    assert _main("train", "--toy-level", "3") == 0
    assert ran[0][2] == {"resume": Resume.NO, "toy_level": 3}
    assert stage("train").flow_kwargs() == {"resume": Resume.IF_COMPATIBLE, "toy_level": 7}


@pytest.mark.slow  # near a second: the fast tier stays under a minute
def test_help_imports_no_stage_module():
    code = ("import sys, contextlib, io, pipeline.__main__ as m\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    m.main(['--help'])\n"
            f"print(sorted(s for s in {list(STAGE_NAMES)} if 'pipeline.' + s in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stderr
