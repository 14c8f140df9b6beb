"""Load a YAML file into a pydantic model, with errors that name the file, the line and what was expected.

PyYAML's composed node tree keeps the position of every key and value; we index those positions by
their path (`("rules", 2, "when", "regex")`) so that a pydantic `ValidationError`, whose `loc` is such a
path, can be reported at the line the person has to edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from router.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)
LinePath = tuple[str | int, ...]


def _index_lines(node: yaml.Node, path: LinePath, lines: dict[LinePath, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            _index_lines(value_node, child, lines)
            # Point at the key itself: that is where an unexpected or misspelt key is.
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), lines)


def _locate(loc: tuple[Any, ...], lines: dict[LinePath, int]) -> tuple[int | None, str]:
    """The line to point at for a pydantic error location, and the location as the file spells it.

    Parts of `loc` that are not keys of the file (a discriminated union's tag, say) are skipped, except
    the last: a missing key has no line of its own, so we point at its parent and still name it.
    """
    path: LinePath = ()
    named: list[str] = []
    for i, part in enumerate(loc):
        if not isinstance(part, str | int):
            continue
        if (*path, part) in lines:
            path = (*path, part)
            named.append(str(part))
        elif i == len(loc) - 1:
            named.append(str(part))
    return lines.get(path, lines.get(())), ".".join(named) or "(top level)"


def _describe(error: dict[str, Any], loc: str) -> str:
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key (check its spelling; see the schema for the keys allowed here)"
    elif error["type"] == "missing":
        message = "required key is missing"
    return f"{loc}: {message}"


def parse_yaml(text: str, source: str, error_type: type[ConfigError] = ConfigError) -> tuple[Any, dict[LinePath, int]]:
    """Parse YAML text; return the data and a map from key paths to 1-based line numbers."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        context = f" ({exc.context})" if exc.context else ""
        raise error_type(f"{where}: invalid YAML: {exc.problem}{context}") from exc
    except yaml.YAMLError as exc:
        raise error_type(f"{source}: invalid YAML: {exc}") from exc
    lines: dict[LinePath, int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return data, lines


def validate_yaml(
    model: type[ModelT],
    text: str,
    source: str,
    error_type: type[ConfigError] = ConfigError,
    context: dict[str, Any] | None = None,
) -> ModelT:
    """Parse and validate YAML text against `model`, raising `error_type` with file:line for every problem."""
    return validate_yaml_with_lines(model, text, source, error_type, context)[0]


def validate_yaml_with_lines(
    model: type[ModelT],
    text: str,
    source: str,
    error_type: type[ConfigError] = ConfigError,
    context: dict[str, Any] | None = None,
    list_key: str | None = None,
) -> tuple[ModelT, dict[LinePath, int]]:
    """`validate_yaml`, also returning where each key path is written (to point at it later). With
    `list_key`, a file that is a bare list is read as `{list_key: [...]}` (its lines kept)."""
    data, lines = parse_yaml(text, source, error_type)
    if data is None:
        data = {}
    if list_key is not None and isinstance(data, list):
        data, lines = {list_key: data}, {(list_key, *path): line for path, line in lines.items()}
    if not isinstance(data, dict):
        raise error_type(f"{source}:1: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data, context=context), lines
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            line, loc = _locate(error["loc"], lines)
            where = f"{source}:{line}" if line else source
            problems.append(f"{where}: {_describe(error, loc)}")
        raise error_type("\n".join(problems)) from exc


def load_yaml_file(
    model: type[ModelT],
    path: str | Path,
    error_type: type[ConfigError] = ConfigError,
    context: dict[str, Any] | None = None,
) -> ModelT:
    """Read and validate a YAML file; a missing or unreadable file is a `ConfigError` too."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise error_type(f"{file}: cannot read the file: {exc.strerror or exc}") from exc
    return validate_yaml(model, text, str(file), error_type, context)
