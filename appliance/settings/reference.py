"""The settings reference tables in the docs, generated from the schema's descriptions and defaults.

``python -m appliance.settings.reference`` rewrites each table between its markers
(``<!-- settings:NAME -->`` ... ``<!-- /settings:NAME -->``) in docs/adapter.md and
docs/pipeline.md; ``--check`` only says whether they are current (a unit test runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from appliance.settings import config, workflow

#: Marker name -> (schema, the document holding its table).
TABLES: dict[str, tuple[TypeAdapter[Any], str]] = {
    "config": (config.SCHEMA, "docs/adapter.md"),
    "workflow": (workflow.SCHEMA, "docs/pipeline.md"),
}


def rows(schema: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(key path, default, description) of every leaf key of the JSON ``schema``."""
    defs = schema.get("$defs", {})

    def walk(node: dict[str, Any], path: str, default: Any, description: str) -> Iterator[tuple[str, str, str]]:
        description = node.get("description", description)
        default = node.get("default", default)
        if "$ref" in node:
            yield from walk(defs[node["$ref"].rsplit("/", 1)[1]], path, default, description)
        elif "anyOf" in node:
            inner = next(n for n in node["anyOf"] if n.get("type") != "null")
            yield from walk({**inner, "description": description}, path, default, description)
        elif "properties" in node:
            for key, child in node["properties"].items():
                yield from walk(child, f"{path}.{key}" if path else key, _default(child, default, key), "")
        elif node.get("type") == "array" and any("$ref" in item for item in node.get("prefixItems", [])):
            for i, item in enumerate(node["prefixItems"]):
                yield from walk(item, f"{path}[{i}]", None, "")
        elif node.get("type") == "array" and "$ref" in node.get("items", {}):
            yield from walk(node["items"], f"{path}[]", None, description)
        else:
            yield path, "required" if default is _REQUIRED else _show(default), description

    yield from walk(schema, "", None, "")


_REQUIRED = object()


def _default(child: dict[str, Any], parent_default: Any, key: str) -> Any:
    if "default" in child:
        return child["default"]
    if isinstance(parent_default, dict) and key in parent_default:
        return parent_default[key]
    return _REQUIRED


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return "`" + (value if isinstance(value, str) and value else json.dumps(value)) + "`"


def table(name: str) -> str:
    """The markdown table of the schema ``name`` (a key of :data:`TABLES`)."""
    schema = TABLES[name][0].json_schema(by_alias=True)
    lines = ["| Key | Default | Meaning |", "| --- | --- | --- |"]
    lines += [f"| `{key}` | {default} | {meaning} |" for key, default, meaning in rows(schema)]
    return "\n".join(lines)


def update(root: Path, write: bool) -> list[str]:
    """Documents whose table is not current (rewritten when ``write``)."""
    stale = []
    for name, (_, document) in TABLES.items():
        path = root / document
        text = path.read_text()
        pattern = re.compile(rf"(<!-- settings:{name} -->\n)(?:.*?\n)?(<!-- /settings:{name} -->)", re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"{path}: no <!-- settings:{name} --> markers")
        current = pattern.sub(rf"\g<1>{_escape(table(name))}\n\g<2>", text)
        if current != text:
            stale.append(document)
            if write:
                path.write_text(current)
    return stale


def _escape(replacement: str) -> str:
    return replacement.replace("\\", "\\\\")


def main(argv: list[str] | None = None) -> int:
    """Rewrite the tables (or, with ``--check``, exit 1 when one is stale)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale tables")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (default: here)")
    args = parser.parse_args(argv)
    stale = update(args.root, write=not args.check)
    for document in stale:
        print(f"{document}: settings table {'is stale' if args.check else 'rewritten'}", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
