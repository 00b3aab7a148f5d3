"""Command-line options declared once, where they belong: a stage's own options in its module
(``OPTIONS``), the params options every run takes here (``PARAMS_OPTIONS``). The CLI
(``pipeline/__main__.py``) and the Prefect flows (``flows/``) add them to their parsers, and the
flow gives a stage what each of its options says a flow run gives (``flow``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Option:
    """One option: its flag, help and ``argparse`` settings (``arguments``), and what its value
    becomes: a keyword of the stage's ``run`` (``keyword``, through ``convert``), or KEY=VALUE items
    set under a params key (``sets``: ``--condition income='>50K'`` sets ``generate.conditions``).
    ``flow``: the value a Prefect flow run gives it (None: the flow leaves it out)."""

    flag: str
    help: str
    arguments: dict[str, Any] = field(default_factory=dict)
    keyword: str | None = None
    convert: Callable[[Any], Any] | None = None
    sets: str | None = None
    flow: Any = None

    @property
    def dest(self) -> str:
        return self.arguments.get("dest") or self.flag.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser | Any, note: str = "", **changes: Any) -> None:
        """Add it to ``parser`` (or an argument group), ``note`` appended to its help, ``changes``
        over its settings (another metavar, say)."""
        parser.add_argument(self.flag, help=self.help + note, **{**self.arguments, **changes})

    def value(self, given: Any) -> Any:
        return self.convert(given) if self.convert is not None else given

    def apply(self, given: Any, overrides: dict[str, Any], kwargs: dict[str, Any]) -> None:
        """What the parsed value ``given`` does: a ``run`` keyword, or params overrides."""
        if self.sets is not None:
            for item in given or ():
                key, sep, value = item.partition("=")
                if not sep:
                    raise ConfigError(f"{self.flag} {item!r}: expected {self.arguments.get('metavar', 'KEY=VALUE')}")
                overrides.setdefault(self.sets, {})[key] = value
        elif self.keyword is not None:
            kwargs[self.keyword] = self.value(given)


def flow_kwargs(options: Iterable[Option]) -> dict[str, Any]:
    """The ``run`` keywords a flow run gives a stage with these options."""
    return {o.keyword: o.value(o.flow) for o in options if o.keyword is not None and o.flow is not None}


PARAMS_OPTIONS = (
    Option("--params", "params file (default: %(default)s)", {"default": "params.yaml"}),
    Option("--set", "override a params key, e.g. --set train.epochs=5 (repeatable; values are YAML)",
           {"dest": "overrides", "action": "append", "default": [], "metavar": "KEY=VALUE"}),
    Option("--threshold", "change one bound of one gate threshold, keeping the others, e.g. "
                          "--threshold 'utility.tstr_score>=0.4' (or <=; repeatable; the release records it)",
           {"dest": "thresholds", "action": "append", "default": [], "metavar": "METRIC>=VALUE"}),
)
