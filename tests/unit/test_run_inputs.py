"""Graph inputs from the command line: ``name=@path`` and ``--input-file``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest

from autoexec.cli.commands import parse_inputs
from autoexec.cli.run_inputs import load_input_file
from autoexec.errors import InputValidationError


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        ("42", 42),
        ("a long text\nover two lines\n", "a long text\nover two lines\n"),
    ],
)
def test_at_path_takes_the_file_content_as_json_or_else_text(
    tmp_path: Path, content: str, expected: Any
) -> None:
    (tmp_path / "value").write_text(content)
    assert parse_inputs((f"x=@{tmp_path / 'value'}",)) == {"x": expected}


def test_at_path_naming_no_file_is_a_bad_parameter_naming_input_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(click.BadParameter, match=f"input 'x': no file '{missing}'"):
        parse_inputs((f"x=@{missing}",))


def test_at_path_naming_a_binary_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(click.BadParameter, match="is not UTF-8 text"):
        parse_inputs((f"x=@{tmp_path / 'blob'}",))


@pytest.mark.parametrize(
    ("content", "expected"),
    [('{"x": 1, "s": "a"}', {"x": 1, "s": "a"}), ("x: 1\ns: a\n", {"x": 1, "s": "a"})],
)
def test_an_input_file_holds_a_json_or_yaml_mapping(
    tmp_path: Path, content: str, expected: dict[str, Any]
) -> None:
    (tmp_path / "inputs").write_text(content)
    assert load_input_file(tmp_path / "inputs") == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- 1\n- 2\n", "not a list"),
        ("just text", "not a text"),
        ("", "not an empty file"),
        ("1: one\n", "input names must be text, not 1"),
        ("x: [1, 2\n", "is not valid JSON or YAML: expected ',' or ']'"),
    ],
)
def test_an_input_file_that_is_not_a_mapping_of_names_is_refused(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "inputs").write_text(content)
    with pytest.raises(InputValidationError, match=message.replace("[", r"\[")):
        load_input_file(tmp_path / "inputs")
