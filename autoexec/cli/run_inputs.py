"""Graph inputs given on the command line: ``name=value`` pairs, ``name=@path`` and input files.

A value is JSON if it parses as JSON, else text. ``name=@path`` takes the file's content as the
value (by the same rule); an input file holds a JSON or YAML mapping of names to values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from autoexec.errors import InputValidationError
from autoexec.json_values import NOT_FINITE, json_problem

FILE_PREFIX = "@"


def value_of(raw: str) -> Any:
    """``raw`` as JSON if it parses, else the text itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def pair_value(name: str, raw: str) -> Any:
    """The value of ``name=raw``: the content of a file for ``@path``, else ``raw`` itself."""
    if not raw.startswith(FILE_PREFIX):
        return _checked(f"input {name!r} ({raw})", value_of(raw))
    value = value_of(_read_text(Path(raw[len(FILE_PREFIX) :]), f"input {name!r}"))
    return _checked(f"input {name!r} ({raw})", value)


def _checked(what: str, value: Any) -> Any:
    """``value``, unless it holds a number JSON cannot (``1e400``, ``NaN``, ``Infinity``): a
    run would get null or fail to be stored."""
    if json_problem(value) == NOT_FINITE:
        raise InputValidationError(
            f"{what}: {NOT_FINITE}; give a finite number, or quote it to pass text"
        )
    return value


def load_input_file(path: Path) -> dict[str, Any]:
    """The mapping of graph inputs held by ``path`` (JSON or YAML)."""
    try:
        data = yaml.safe_load(_read_text(path, "--input-file"))
    except yaml.YAMLError as exc:
        raise InputValidationError(f"{path} is not valid JSON or YAML: {_where(exc)}") from None
    if not isinstance(data, dict):
        raise InputValidationError(
            f"{path} must hold a mapping of input names to values "
            f'(JSON {{"x": 1}} or YAML x: 1), not {_kind(data)}'
        )
    names = [name for name in data if not isinstance(name, str)]
    if names:
        raise InputValidationError(f"{path}: input names must be text, not {names[0]!r}")
    for name, value in data.items():
        _checked(f"{path}: input {name!r}", value)
    return data


def _kind(data: Any) -> str:
    if data is None:
        return "an empty file"
    kinds = {list: "a list", str: "a text", int: "a number", float: "a number", bool: "a boolean"}
    return kinds.get(type(data), type(data).__name__)


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "cannot parse"
    if mark is None:
        return str(problem)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise InputValidationError(f"{what}: no file {str(path)!r}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputValidationError(f"{what}: {str(path)!r} is not UTF-8 text") from None
    except OSError as exc:
        raise InputValidationError(f"{what}: cannot read {str(path)!r}: {exc.strerror}") from None
