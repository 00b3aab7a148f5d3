"""The flows' command lines explain themselves: ``--help`` shows the module docstring's whole first
paragraph (not its first line cut mid-sentence) and a help text for every option."""

import argparse
import importlib

import pytest

pytestmark = pytest.mark.slow  # importing a flow imports Prefect (1.5 s): kept out of the fast tier


@pytest.mark.parametrize("module", ["flows.nightly", "flows.synthesize"])
def test_help_shows_the_whole_first_paragraph_and_explains_every_option(module, monkeypatch, capsys):
    flow = importlib.import_module(module)
    parsers = []
    parse_args = argparse.ArgumentParser.parse_args

    def spy(self, *args, **kwargs):
        parsers.append(self)
        return parse_args(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", spy)
    with pytest.raises(SystemExit) as stop:
        flow.main(["--help"])
    assert stop.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # wrapping aside
    first_paragraph = " ".join(flow.__doc__.split("\n\n")[0].split())
    assert first_paragraph.endswith(".") and first_paragraph in out
    options = [a for a in parsers[0]._actions if not isinstance(a, argparse._HelpAction)]
    assert {"--params", "--set", "--dataset"} <= {s for a in options for s in a.option_strings}
    for action in options:
        assert action.help and len(action.help) > 20, action.dest
        assert " ".join((action.help % {"default": action.default}).split()) in out, action.dest
