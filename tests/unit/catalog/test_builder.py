"""Catalog builder: file format, determinism, label mix, Exact-rule completeness, unseen query files."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from catalog.builder import build_catalog
from catalog.io import LABEL_GAIN, PRODUCT_COLUMNS, feature_attrs, load_catalog
from catalog.rules import query_rules
from tests.unit.catalog.conftest import SMALL_QUERIES, write_queries

WANDS_QUERIES = Path(__file__).resolve().parents[4] / "shared" / "data" / "wands" / "query.csv"


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


# --- determinism --------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(small: Path, tmp_path: Path) -> None:
    queries = write_queries(tmp_path, SMALL_QUERIES)
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
