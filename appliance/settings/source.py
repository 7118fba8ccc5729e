"""From a YAML file to typed settings, with every problem as ``FILE:LINE: key.path: message``.

The text is composed into YAML nodes first (they remember their lines), then constructed into
plain data and validated by pydantic against a schema. Each pydantic error's location (a tuple of
keys and list indexes) is looked up in the node tree for its line. All problems are reported at
once, sorted by line, so a file is fixed in one go.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

T = TypeVar("T")
Loc = tuple[str | int, ...]

#: pydantic's error types for a key the schema does not have (models; dataclasses).
_UNKNOWN_KEY = ("extra_forbidden", "unexpected_keyword_argument")


class SettingsError(ValueError):
    """A settings file is not valid; ``problems`` holds one ``FILE:LINE: key.path: message`` each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def read(path: Path | str) -> tuple[Any, yaml.Node | None]:
    """The data in the YAML file at ``path`` and its node tree (None for an empty file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError([f"{path}:1: (file): cannot read: {exc.strerror or exc}"]) from exc
    return compose(text, str(path))


def compose(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """``text`` as data and as a node tree; a syntax error or duplicate key is a SettingsError."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise SettingsError([f"{source}:{line}: (syntax): {exc}"]) from exc
    finally:
        loader.dispose()
    duplicates = [f"{source}:{line}: {key_path(loc)}: duplicate key" for loc, line in _duplicates(node, ())]
    if duplicates:
        raise SettingsError(duplicates)
    return data, node


def validate(schema: TypeAdapter[T], data: Any, node: yaml.Node | None, source: str,
             context: Mapping[str, Any] | None = None) -> T:
    """``data`` as the ``schema`` type; a SettingsError lists every problem with its line."""
    if data is None and node is None:
        raise SettingsError([f"{source}:1: (top level): the file is empty"])
    try:
        return schema.validate_python(data, context=dict(context or {}))
    except ValidationError as exc:
        problems = [(tuple(e["loc"]) + tuple((e.get("ctx") or {}).get("at", ())), _message(e, schema))
                    for e in exc.errors()]
        raise located(problems, node, source) from None


def located(problems: Iterable[tuple[Loc, str]], node: yaml.Node | None, source: str) -> SettingsError:
    """A SettingsError of ``(location, message)`` pairs found in the file ``source`` (node tree ``node``)."""
    lines = sorted(((line_of(node, loc), key_path(loc), message) for loc, message in problems),
                   key=lambda p: p[0] or 0)
    prefix = f"{source}:" if source else ""
    return SettingsError([f"{prefix}{line}: {key}: {message}" if line else f"{prefix} {key}: {message}".lstrip()
                          for line, key, message in lines])


def key_path(loc: Loc) -> str:
    """``("dicom", "scp", "ae-titles", 0)`` as ``dicom.scp.ae-titles[0]``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """Line (1-based) of the deepest key or item along ``loc`` that the file has; None without a file."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            entry = next(((k, v) for k, v in node.value if k.value == part), None)
            if entry is None:
                break
            line, node = entry[0].start_mark.line + 1, entry[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _message(error: ErrorDetails, schema: TypeAdapter[Any]) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return "is required"
    if kind == "too_short":
        return f"must list at least {(error.get('ctx') or {}).get('min_length', 1)}"
    if kind in _UNKNOWN_KEY:
        loc = tuple(error["loc"])
        known = _keys_at(schema.json_schema(by_alias=True), loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        return f"unknown key; did you mean {close[0]!r}?" if close else f"unknown key (known: {', '.join(known)})"
    message = error["msg"].replace("Input should be", "must be", 1)
    if kind != "conflict" and (value is None or isinstance(value, (str, int, float))):
        message += f", not {value!r}"
    return message


def _keys_at(schema: dict[str, Any], loc: Loc) -> list[str]:
    """The keys the JSON schema allows at ``loc`` (for "did you mean")."""
    defs = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node or "anyOf" in node:
            if "$ref" in node:
                node = defs[node["$ref"].rsplit("/", 1)[1]]
            else:
                node = next((n for n in node["anyOf"] if n.get("type") != "null"), {})
        return node

    node = schema
    for part in loc:
        node = resolve(node)
        if isinstance(part, int):
            positional = node.get("prefixItems", [])
            node = positional[part] if part < len(positional) else node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
    return list(resolve(node).get("properties", {}))


def _duplicates(node: yaml.Node | None, loc: Loc) -> Iterator[tuple[Loc, int]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                yield (*loc, key.value), key.start_mark.line + 1
            seen.add(key.value)
            yield from _duplicates(value, (*loc, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicates(item, (*loc, i))

