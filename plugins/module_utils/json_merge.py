"""Deep-merge, key removal and undo logs on JSON documents (daemon.json), shared by modules and tests."""

from __future__ import annotations

import copy
from typing import Any


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of *base* with *update* merged in: nested dicts merge, everything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def remove_paths(doc: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of *doc* without the dotted *paths* (``runtimes.nvidia``); empty parents are dropped."""
    result = copy.deepcopy(doc)
    for path in paths:
        result = _remove_keys(result, path.split("."))
    return result


def undo_entries(before: Any, after: Any, path: list[str] | None = None) -> list[dict[str, Any]]:
    """What turns *after* back into *before*, key by key: one entry per changed key.

    ``{"path": [...], "was": value}`` puts a key's earlier value back; ``{"path": [...]}`` removes a
    key that *before* did not have. Keys of nested objects are compared one by one, so a key that
    someone else sets later is not part of it.
    """
    path = path or []
    if isinstance(before, dict) and isinstance(after, dict):
        entries: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after)):
            if key not in after:
                entries.append({"path": [*path, key], "was": copy.deepcopy(before[key])})
            elif key not in before:
                entries.append({"path": [*path, key]})
            else:
                entries.extend(undo_entries(before[key], after[key], [*path, key]))
        return entries
    return [] if before == after else [{"path": path, "was": copy.deepcopy(before)}]


def apply_undo(doc: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of *doc* with an undo log applied, newest entry first (so the oldest value of a key wins)."""
    result = copy.deepcopy(doc)
    for entry in reversed(entries):
        keys = [str(key) for key in entry["path"]]
        if not keys:
            if "was" in entry and isinstance(entry["was"], dict):
                result = copy.deepcopy(entry["was"])
            continue
        if "was" in entry:
            node = result
            for key in keys[:-1]:
                if not isinstance(node.get(key), dict):
                    node[key] = {}
                node = node[key]
            node[keys[-1]] = copy.deepcopy(entry["was"])
        else:
            result = _remove_keys(result, keys)
    return result


def _remove_keys(doc: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    # remove_paths with the path as a list of keys (a key may hold a dot).
    chain = [doc]
    for key in keys[:-1]:
        child = chain[-1].get(key)
        if not isinstance(child, dict):
            return doc
        chain.append(child)
    chain[-1].pop(keys[-1], None)
    # Drop parents the removal left empty, deepest first, so no "runtimes": {} lingers.
    for depth in range(len(chain) - 1, 0, -1):
        if not chain[depth]:
            chain[depth - 1].pop(keys[depth - 1], None)
    return doc
