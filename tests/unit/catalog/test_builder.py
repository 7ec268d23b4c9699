"""Catalog builder: file format, determinism, label mix, Exact-rule completeness, unseen query files."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from catalog import (
    LABEL_GAIN,
    build_catalog,
    feature_attrs,
    item_texts,
    load_catalog,
    query_rules,
)
from catalog.io import PRODUCT_COLUMNS, read_queries
from catalog.parse import parse_query
from catalog.vocabulary import Lexicon, derive_nouns

WANDS_QUERIES = Path(__file__).resolve().parents[4] / "shared" / "data" / "wands" / "query.csv"

# WANDS-like queries: colours/materials, a brand-only query, a class-less query, quotes, numbers, a
# modifier-free query, a query with no class noun, and an empty query_class.
SMALL_QUERIES = """query_id\tquery\tquery_class
1\tnavy velvet sofa\tSofas
2\tmarble\tEnd Tables
3\toliver parsons\tDining Chairs
4\t"writing desk 48\"\"\"\tDesks
5\tturquoise pillows\tAccent Pillows
6\tcoffee table fire pit\tOutdoor Fireplaces
7\tblack 5 drawer dresser by guilford\tDressers & Chests
8\tgray dresser\tDressers & Chests
9\tunique coffee tables\tCoffee & Cocktail Tables
10\tking size bed\tBeds
11\tdumbbells\tFree Weights
12\tdesk for kids\t
13\tblk 18x18 seat cushions\tFurniture Cushions
14\tgurney  slade 56\tChandeliers
"""

# Nothing here is in the built-in lexicons: invented classes and words, duplicate ids and texts.
UNSEEN_QUERIES = """query_id\tquery\tquery_class
100\tzorblax hammock\tHammocks
101\tteal quilted glimmerpod\tGlimmerpods
102\tstriped hammock with stand\tHammocks
103\tcobalt wibbler rack\tWibblers & Snorf Racks
104\tzorblax hammock\tHammocks
104\tduplicate id, other text\tHammocks
105\tsnorf rack 36 inch\tWibblers & Snorf Racks
"""


def _write(tmp: Path, text: str) -> Path:
    path = tmp / "query.csv"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("small")
    return build_catalog(_write(tmp, SMALL_QUERIES), tmp / "cat", seed=7, products=3000, progress=False)


@pytest.fixture(scope="module")
def unseen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("unseen")
    return build_catalog(_write(tmp, UNSEEN_QUERIES), tmp / "cat", seed=1, products=2000, progress=False)


def _exact_by_brute_force(root: Path) -> set[tuple[int, int]]:
    """(query_id, product_id) pairs satisfying each query's Exact rule, from the CSVs alone."""
    cat = load_catalog(root)
    rules, _ = query_rules(cat.queries)
    classes = cat.products["product_class"].tolist()
    attrs = [feature_attrs(f) for f in cat.products["product_features"]]
    out = set()
    for rule in rules:
        need = set(rule.required)
        for pid, (cls, held) in enumerate(zip(classes, attrs, strict=True)):
            if cls == rule.product_class and need <= held:
                out.add((rule.query_id, pid))
    return out


# --- format -------------------------------------------------------------------------------------------------


def test_files_and_columns(small: Path) -> None:
    cat = load_catalog(small)
    p, lab = cat.products, cat.labels
    assert list(p.columns) == PRODUCT_COLUMNS
    assert len(p) == 3000 == cat.meta["products"]
    assert (p.index.to_numpy() == np.arange(len(p))).all()
    assert (p["product_id"].to_numpy() == np.arange(len(p))).all()
    assert p["in_stock"].dtype == bool and p["in_stock"].mean() > 0.5
    assert p["price"].dtype == np.float64 and (p["price"] > 0).all()
    assert p["average_rating"].between(0, 5).all()
    assert (p["review_count"] <= p["rating_count"]).all()
    assert all(h.split(" / ")[-1] == c and h.count(" / ") == 2
               for h, c in zip(p["category_hierarchy"], p["product_class"], strict=True))
    feat = re.compile(r"^[a-z_0-9]+:[^|:\t]+(\|[a-z_0-9]+:[^|:\t]+)*$")
    assert all(feat.match(f) for f in p["product_features"])
    assert p["product_description"].str.count(r"\. ").max() <= 3  # 1-3 sentences
    assert (p["product_name"].str.len() > 5).all()
    # Raw file: prices carry exactly two decimals.
    raw = pd.read_csv(small / "product.csv", sep="\t", dtype=str, keep_default_na=False)
    assert raw["price"].str.fullmatch(r"\d+\.\d\d").all()

    assert list(lab.columns) == ["id", "query_id", "product_id", "label"]
    assert (lab["id"].to_numpy() == np.arange(len(lab))).all()
    assert set(lab["label"]) == set(LABEL_GAIN)
    assert lab["product_id"].isin(p["product_id"]).all()
    assert lab["query_id"].isin(cat.queries["query_id"]).all()
    assert not lab.duplicated(["query_id", "product_id"]).any()

    meta = json.loads((small / "catalog.json").read_text())
    assert meta["generated"] is True and meta["seed"] == 7 and meta["queries"] == 14
    assert meta["classes"] == cat.categories() == sorted(set(p["product_class"]))
    assert meta["label_counts"] == lab["label"].value_counts().to_dict()
    assert meta["inferred_classes"] == {"12": "Desks"}  # only classes of the query file are candidates


def test_queries_round_trip_exactly(small: Path, tmp_path: Path) -> None:
    given = read_queries(_write(tmp_path, SMALL_QUERIES))
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
        name, cls, values = t.split(" | ")
        assert name == row["product_name"] and cls == row["product_class"]
        assert "brand" not in values


# --- determinism --------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(small: Path, tmp_path: Path) -> None:
    queries = _write(tmp_path, SMALL_QUERIES)
    again = build_catalog(queries, tmp_path / "again", seed=7, products=3000, progress=False)
    other = build_catalog(queries, tmp_path / "other", seed=8, products=3000, progress=False)
    for name in ("product.csv", "label.csv", "query.csv"):
        assert (again / name).read_bytes() == (small / name).read_bytes(), name
    meta_a, meta_s = (json.loads((d / "catalog.json").read_text()) for d in (again, small))
    meta_a.pop("source_queries"), meta_s.pop("source_queries")
    assert meta_a == meta_s
    assert (other / "product.csv").read_bytes() != (small / "product.csv").read_bytes()
    assert (other / "label.csv").read_bytes() != (small / "label.csv").read_bytes()


# --- labels -------------------------------------------------------------------------------------------------


def test_label_proportions_per_query(small: Path) -> None:
    lab = load_catalog(small).labels
    counts = lab.groupby("query_id")["label"].value_counts().unstack(fill_value=0)
    assert len(counts) == 14
    # Partial and Irrelevant are exactly as generated; Exact only grows by completeness.
    assert (counts["Partial"] == 18).all() and (counts["Irrelevant"] == 30).all()
    assert (counts["Exact"] >= 12).all()
    share = counts.div(counts.sum(axis=1), axis=0)
    assert 0.18 <= share["Exact"].median() <= 0.25
    assert 0.27 <= share["Partial"].median() <= 0.31
    assert 0.45 <= share["Irrelevant"].median() <= 0.51
    assert (share["Exact"].between(0.15, 0.40)).mean() >= 0.75


def test_exact_labels_are_complete_and_fillers_never_exact(small: Path) -> None:
    cat = load_catalog(small)
    rules, _ = query_rules(cat.queries)
    assert {str(r.query_id): {"class": r.product_class, "require": [f"{f}:{v}" for f, v in r.required]}
            for r in rules} == cat.meta["rules"]
    truth = _exact_by_brute_force(small)
    lab = cat.labels
    is_exact = lab["label"] == "Exact"
    exact = set(zip(lab.loc[is_exact, "query_id"], lab.loc[is_exact, "product_id"], strict=True))
    assert exact == truth  # Exact labels hold the rule, and nothing else does
    assert cat.meta["cross_query_exact_labels"] > 0  # Exact for a query they were not made for
    fillers = set(range(len(cat.products))) - set(lab["product_id"])
    assert len(fillers) == cat.meta["fillers"] > 0
    assert not any(p in fillers for _, p in truth)


def test_exact_titles_use_query_word_or_synonym(small: Path) -> None:
    cat = load_catalog(small)
    lab, names = cat.labels, cat.products["product_name"]
    exact_names = names[lab.loc[(lab["query_id"] == 1) & (lab["label"] == "Exact"), "product_id"]].str.lower()
    assert exact_names.str.contains("sofa|couch|loveseat|love seat").all()
    assert exact_names.str.contains("velvet").sum() >= 5 and exact_names.str.contains("velour").sum() >= 5
    assert exact_names.str.contains("navy|dark blue").all()
    brand = names[lab.loc[(lab["query_id"] == 3) & (lab["label"] == "Exact"), "product_id"]]
    assert brand.str.startswith("Oliver Parsons").all()
    desk = names[lab.loc[(lab["query_id"] == 4) & (lab["label"] == "Exact"), "product_id"]]
    assert desk.str.contains(r'48(?:"| in\.| Inch|-Inch)').all()


def test_partial_and_irrelevant_shapes(small: Path) -> None:
    cat = load_catalog(small)
    lab, p = cat.labels, cat.products
    q1 = lab[lab["query_id"] == 1].merge(p, on="product_id")
    part = q1[q1["label"] == "Partial"]
    same = part[part["product_class"] == "Sofas"]
    assert 0 < len(same) < len(part)  # both kinds of Partial: one modifier off, and a related class
    assert all(not ({("color", "navy"), ("material", "velvet")} <= feature_attrs(f))
               for f in same["product_features"])
    irr = q1[q1["label"] == "Irrelevant"]
    assert (irr["product_class"] != "Sofas").all()
    # Hard negatives share query words: most carry navy and/or velvet.
    wanted = {("color", "navy"), ("material", "velvet")}
    shares = [bool(wanted & feature_attrs(f)) for f in irr["product_features"]]
    assert np.mean(shares) >= 0.5


# --- unseen query files -------------------------------------------------------------------------------------


def test_unseen_classes_and_words(unseen: Path) -> None:
    cat = load_catalog(unseen)
    assert {"Hammocks", "Glimmerpods", "Wibblers & Snorf Racks"} <= set(cat.categories())
    assert len(cat.queries) == 7  # duplicate id kept in query.csv ...
    assert cat.labels["query_id"].nunique() == 6  # ... judged once
    rules = {r.query_id: r for r in query_rules(cat.queries)[0]}
    assert rules[100].required == (("collection", "zorblax"),)
    assert ("color", "teal") in rules[101].required and rules[101].parsed.head == "glimmerpod"
    lab, names = cat.labels, cat.products["product_name"]
    zorb = names[lab.loc[(lab["query_id"] == 100) & (lab["label"] == "Exact"), "product_id"]]
    assert zorb.str.contains("Zorblax").all() and zorb.str.contains("Hammock").all()
    snorf = names[lab.loc[(lab["query_id"] == 105) & (lab["label"] == "Exact"), "product_id"]].str.lower()
    assert snorf.str.contains("wibbler|snorf rack").all()
    assert _exact_by_brute_force(unseen) == set(
        zip(lab.loc[lab["label"] == "Exact", "query_id"], lab.loc[lab["label"] == "Exact", "product_id"],
            strict=True))


# --- parsing ------------------------------------------------------------------------------------------------


def test_derive_nouns() -> None:
    assert derive_nouns("Coffee & Cocktail Tables") == ["coffee table", "cocktail table"]
    assert derive_nouns("Daybeds & Guest Beds") == ["daybed", "guest bed"]
    assert derive_nouns("Vases, Urns, Jars, & Bottles") == ["vase", "urn", "jar", "bottle"]
    assert derive_nouns("Cabinet and Drawer Pulls") == ["cabinet pull", "drawer pull"]
    assert derive_nouns("Hammocks") == ["hammock"]


def test_parse_query_examples() -> None:
    lex = Lexicon.build(["Dressers & Chests", "Dining Chairs", "Desks", "Coffee & Cocktail Tables",
                         "Outdoor Fireplaces"])
    q = parse_query("black 5 drawer dresser by guilford", "Dressers & Chests", lex)
    assert q.head == "dresser"
    assert q.required() == (("collection", "guilford"), ("color", "black"), ("drawers", "5 drawer"))
    brand = parse_query("oliver parsons", "Dining Chairs", lex)
    assert brand.head is None and brand.required() == (("collection", "oliver parsons"),)
    assert parse_query('writing desk 48"', "Desks", lex).required() == (
        ("collection", "writing"), ("dimension", "48 in"))
    grey, gray = (parse_query(t, "Desks", lex).required() for t in ("grey desk", "gray desks"))
    assert grey == gray == (("color", "gray"),)
    fire = parse_query("coffee table fire pit", "Outdoor Fireplaces", lex)
    assert fire.head == "fire pit" and fire.required() == (("type", "coffee table"),)


# --- the real query file ------------------------------------------------------------------------------------


@pytest.mark.skipif(not WANDS_QUERIES.exists(), reason="WANDS query file not present")
def test_full_wands_build_is_fast_and_complete(tmp_path: Path) -> None:
    start = time.perf_counter()
    root = build_catalog(WANDS_QUERIES, tmp_path / "cat", seed=0, progress=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"took {elapsed:.1f}s"
    cat = load_catalog(root)
    assert len(cat.products) == 40_000
    assert cat.labels["query_id"].nunique() == cat.queries["query_id"].nunique()
    counts = cat.labels.groupby("query_id")["label"].value_counts(normalize=True).unstack(fill_value=0)
    assert 0.19 <= counts["Exact"].median() <= 0.22
    assert 0.27 <= counts["Partial"].median() <= 0.31
