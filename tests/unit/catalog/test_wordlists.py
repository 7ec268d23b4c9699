"""Word-list loader: typed tables from catalog/data/*.json, and loud failures on missing or malformed data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from catalog import wordlists


def test_load_reads_a_shipped_file() -> None:
    data = wordlists.load("words")
    stopwords = wordlists.words(data, "stopwords")
    assert isinstance(stopwords, tuple) and "the" in stopwords
    assert wordlists.strings(data, "irregular_singulars")["knives"] == "knife"
    color = wordlists.synonyms(wordlists.load("attributes"), "color")
    assert color["navy"] == ("navy blue", "dark blue")


def test_load_rejects_a_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"no_such_list\.json"):
        wordlists.load("no_such_list")


@pytest.mark.parametrize(("helper", "table", "named"), [
    (wordlists.words, {"k": "not a list"}, "k"),
    (wordlists.words, {"k": ["ok", 3]}, "k"),
    (wordlists.synonyms, {"k": ["not", "an", "object"]}, "k"),
    (wordlists.synonyms, {"k": {"sofa": "couch"}}, "sofa"),
    (wordlists.strings, {"k": {"knives": ["knife"]}}, "k"),
])
def test_helpers_reject_wrong_shapes(helper: Callable[[dict[str, Any], str], object], table: dict[str, Any],
                                     named: str) -> None:
    with pytest.raises(TypeError, match=f"'{named}'"):  # the error names the bad table
        helper(table, "k")
