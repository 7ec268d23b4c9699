"""Typed reading of the catalog word lists in catalog/data/*.json.

The lexicons are data, not code, so they live in JSON; these helpers check each table's shape on load so
a bad edit fails at import with the table's name, not later as a wrong type deep in the builder.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def load(name: str) -> dict[str, Any]:
    """The JSON object in catalog/data/<name>.json (via importlib.resources, so installed wheels work)."""
    path = resources.files("catalog") / "data" / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"catalog word list not found: {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a JSON object at the top level")
    return data


def words(table: dict[str, Any], key: str) -> tuple[str, ...]:
    """table[key] as a tuple of strings, order kept."""
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
        raise TypeError(f"word list {key!r}: expected a list of strings")
    return tuple(value)


def synonyms(table: dict[str, Any], key: str) -> dict[str, tuple[str, ...]]:
    """table[key] as {word: (synonym, ...)}, order kept."""
    value = table[key]
    if not isinstance(value, dict):
        raise TypeError(f"synonym table {key!r}: expected an object of word lists")
    return {word: words(value, word) for word in value}


def strings(table: dict[str, Any], key: str) -> dict[str, str]:
    """table[key] as {word: word}, order kept."""
    value = table[key]
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError(f"table {key!r}: expected an object of strings")
    return dict(value)
