"""Catalog files: WANDS-format reading and writing round-trip exactly; item texts for the index."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from catalog.io import item_texts, load_catalog, read_queries
from tests.unit.catalog.conftest import SMALL_QUERIES, write_queries


def test_queries_round_trip_exactly(small: Path, tmp_path: Path) -> None:
    given = read_queries(write_queries(tmp_path, SMALL_QUERIES))
    loaded = load_catalog(small).queries
    pd.testing.assert_frame_equal(loaded, given)
    assert 'writing desk 48"' in loaded["query"].tolist()
    assert "gurney  slade 56" in loaded["query"].tolist()  # whitespace kept
    assert loaded.loc[loaded["query_id"] == 12, "query_class"].item() == ""


def test_titles_with_quotes_round_trip(small: Path) -> None:
    with open(small / "product.csv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    names = [r["product_name"] for r in rows]
    assert any('"' in n for n in names)  # 48" and friends
    assert load_catalog(small).products["product_name"].tolist() == names


def test_item_texts(small: Path) -> None:
    p = load_catalog(small).products
    texts = item_texts(p.head(50))
    assert len(texts) == 50
    for t, (_, row) in zip(texts, p.head(50).iterrows(), strict=True):
        name, cls, _ = t.split(" | ")
        assert name == row["product_name"] and cls == row["product_class"]


def test_item_texts_keep_every_value_the_title_does_not_already_hold() -> None:
    products = pd.DataFrame({
        "product_name": ["Oliver Parsons Dining Chair", "Plain Chair", "Stool"],
        "product_class": ["Dining Chairs", "", "Bar Stools|Kitchen Stools"],
        "product_features": ["collection:oliver parsons|brand:acme home|color:navy",
                             "brand:oliver|material:oak", None]})
    assert item_texts(products) == ["Oliver Parsons Dining Chair | Dining Chairs | acme home navy",
                                    "Plain Chair |  | oliver oak",
                                    "Stool | Bar Stools|Kitchen Stools | "]
