"""Deep-merge and key removal on JSON documents (daemon.json), shared by modules and tests."""

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
        keys = path.split(".")
        chain = [result]
        for key in keys[:-1]:
            child = chain[-1].get(key)
            if not isinstance(child, dict):
                break
            chain.append(child)
        else:
            chain[-1].pop(keys[-1], None)
            # Drop parents the removal left empty, deepest first, so no "runtimes": {} lingers.
            for depth in range(len(chain) - 1, 0, -1):
                if not chain[depth]:
                    chain[depth - 1].pop(keys[depth - 1], None)
    return result
