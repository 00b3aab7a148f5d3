"""The one rule for names that become paths: dataset names and release versions.

A name is 1-100 characters of letters, digits, ``_``, ``.`` and ``-``, starting with a letter or a
digit (so never hidden, never ``.`` or ``..``) and holding no ``..``. Every place where a name
from the command line, params, a catalog reference or a manifest becomes part of a path checks it
here, so no name can reach outside its root folder.
"""

from __future__ import annotations

import re

from pipeline.errors import BadNameError

MAX_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def name_problem(name: object) -> str | None:
    """Why ``name`` breaks the rule (None when it is a good name)."""
    if not isinstance(name, str):
        return f"must be text, got {type(name).__name__}"
    if not name:
        return "is empty"
    if len(name) > MAX_LENGTH:
        return f"is {len(name)} characters long (at most {MAX_LENGTH})"
    if not _NAME.fullmatch(name):
        bad = _BAD_CHARS.search(name)
        if bad is not None:
            return f"has {bad.group(0)[0]!r}: use only letters, digits, '_', '.' and '-'"
        return "must start with a letter or a digit"
    if ".." in name:
        return "must not hold '..'"
    return None


def check_name(name: object, what: str = "dataset name") -> str:
    """Return ``name`` if it follows the rule, else raise a one-line error naming it and the fix."""
    problem = name_problem(name)
    if problem is not None:
        raise BadNameError(f"{what} {name!r} {problem} (letters, digits, '_', '.', '-'; no leading '.' or '-'; "
                         f"at most {MAX_LENGTH} characters)")
    return name  # type: ignore[return-value]


def name_from_file(stem: str) -> str:
    """A good dataset name made from a file name (``my data (1).csv`` -> ``my_data_1``)."""
    name = _BAD_CHARS.sub("_", stem).strip("_.-").replace("..", "_")[:MAX_LENGTH]
    return name or "dataset"
