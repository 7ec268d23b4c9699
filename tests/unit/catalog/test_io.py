"""Catalog files: WANDS-format reading and writing round-trip exactly; item texts for the index."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from catalog.io import (
    feature_attrs,
    format_features,
    item_texts,
    load_catalog,
    parse_features,
    read_queries,
    write_tsv,
)
from pipeline.match_features import split_fields
from retrieval.bm25 import product_documents
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
                                    "Stool | Bar Stools/Kitchen Stools | "]


def test_item_texts_keep_a_fields_own_bar_inside_that_field() -> None:
    products = pd.DataFrame({
        "product_name": ["Oliver Sofa | Grey Linen", "Trailing |", "Plain Sofa"],
        "product_class": ["Sofas", "Rugs | Mats", "Sofas"],
        "product_features": ["color:navy", "color:red", "color:navy"]})
    texts = item_texts(products)
    assert [split_fields(t) for t in texts] == [("Oliver Sofa / Grey Linen", "Sofas", "navy"),
                                                ("Trailing /", "Rugs / Mats", "red"),
                                                ("Plain Sofa", "Sofas", "navy")]
    assert texts[2] == "Plain Sofa | Sofas | navy"  # no "|" in a field: the text is as it always was


def test_features_with_empty_or_keyless_fragments() -> None:
    assert parse_features("color:red|") == parse_features("|color:red||") == [("color", "red")]
    assert parse_features("color:red|blue") == [("color", "red"), ("", "blue")]
    keyless_first = [("", "blue"), ("color", "red")]
    assert parse_features("blue|color:red") == parse_features(format_features(keyless_first)) == keyless_first
    assert feature_attrs("color:red|blue| ") == {("color", "red"), ("", "blue")}
    products = pd.DataFrame({"product_name": ["Rug"], "product_class": ["Rugs"], "product_description": ["d"],
                             "product_features": ["color:red|blue|"]})
    assert item_texts(products) == ["Rug | Rugs | red blue"]
    assert product_documents(products) == ["Rug Rugs d red blue"]


def test_empty_counts_stock_rating_and_price_load(small: Path, tmp_path: Path) -> None:
    root = tmp_path / "cat"
    shutil.copytree(small, root)
    raw = pd.read_csv(root / "product.csv", sep="\t", dtype=str, keep_default_na=False)
    for row, column in enumerate(("rating_count", "review_count", "in_stock", "average_rating", "price")):
        raw.loc[row, column] = ""
    write_tsv(raw, root / "product.csv")
    p = load_catalog(root).products
    want = load_catalog(small).products
    assert p.dtypes.equals(want.dtypes)
    assert p.loc[0, "rating_count"] == 0 and p.loc[1, "review_count"] == 0
    assert p.loc[2, "in_stock"]  # unknown stock is not filtered out
    assert np.isnan(p.loc[3, "average_rating"]) and np.isnan(p.loc[4, "price"])
    pd.testing.assert_frame_equal(p.iloc[5:], want.iloc[5:])

