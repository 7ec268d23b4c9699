"""Training-data augmentation: synthetic train-class queries and the training catalog judging them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from catalog.builder import build_catalog
from catalog.io import read_queries
from training.augment import augmented_data, synthetic_queries, train_classes
from training.data import load_rerank_data, training_judgments
from training.splits import assign_split, normalise_query, split_queries

QUERY_FILE = Path("/work/shared/data/wands/query.csv")


@pytest.fixture(scope="module")
def queries() -> pd.DataFrame:
    return read_queries(QUERY_FILE)


def test_synthetic_queries_are_new_train_split_texts_of_train_classes(queries: pd.DataFrame) -> None:
    df, report = synthetic_queries(queries, 400, seed=0)
    assert len(df) == report.synthetic == 400
    assert set(df["query_class"]) <= set(train_classes(queries))
    # Most train classes get queries (round robin), not a few popular ones.
    assert df["query_class"].nunique() >= 0.9 * len(train_classes(queries))
    assert all(assign_split(q, c) == "train" for q, c in zip(df["query"], df["query_class"], strict=True))
    source = {normalise_query(q) for q in queries["query"]}
    assert not {normalise_query(q) for q in df["query"]} & source
    assert df["query"].map(normalise_query).is_unique
    assert df["query_id"].min() > queries["query_id"].max() and df["query_id"].is_unique
    # Several WANDS shapes: single words (brand or attribute only), numbers, 3+ word queries.
    words = df["query"].str.split().str.len()
    assert (words == 1).mean() > 0.05 and (words >= 3).mean() > 0.2
    assert df["query"].str.contains(r"\d").mean() > 0.03
    again, _ = synthetic_queries(queries, 400, seed=0)
    pd.testing.assert_frame_equal(df, again)
    other, _ = synthetic_queries(queries, 400, seed=1)
    assert not other["query"].equals(df["query"])


def test_training_data_never_holds_val_or_dev_queries_or_dev_classes(
    queries: pd.DataFrame, tmp_path: Path
) -> None:
    # A real builder catalog of the whole query file (dev classes included), as the demo has.
    cat = build_catalog(QUERY_FILE, tmp_path / "catalog", seed=0, products=25_000, progress=False)
    data = load_rerank_data(cat)
    tdata, info = augmented_data(data, 150, 8.0, seed=0)
    assert info["synthetic"] == 150 and len(tdata.queries) == 150 + len(split_queries(queries)["train"])

    splits = split_queries(queries)
    held_out_texts = {normalise_query(q) for s in ("val", "dev") for q in splits[s]["query"]}
    held_out_ids = set(splits["val"]["query_id"]) | set(splits["dev"]["query_id"])
    dev_only = set(splits["dev"]["query_class"]) - set(splits["train"]["query_class"])
    assert dev_only  # the split holds out whole classes; the check below is not vacuous

    # What the trainer reads: judgments (gradient lists) and every product text it can sample.
    read = training_judgments(tdata)
    assert not {normalise_query(q) for q in read["query"]} & held_out_texts
    assert not set(read["query_id"]) & held_out_ids
    assert not set(tdata.product_class) & dev_only
    # A query without a class is never a train row (training.splits): its inferred class may be held out.
    assert set(read["query_class"]) <= set(train_classes(queries))
    # Every row of the training catalog is a train row by the split rule itself.
    assert set(split_queries(tdata.queries)["train"]["query_id"]) == set(tdata.queries["query_id"])
    # Synthetic queries are fully judged under the builder's rules: each has Exact items of its class.
    synth = tdata.queries[tdata.queries["query_id"] > queries["query_id"].max()]
    exact = tdata.labels[tdata.labels["label"] == "Exact"].merge(synth, on="query_id")
    assert set(exact["query_id"]) == set(synth["query_id"])
    assert np.all(tdata.product_class[exact["product_id"].to_numpy()] == exact["query_class"].to_numpy())


def test_augmentation_off_or_without_catalog_returns_data(queries: pd.DataFrame, tmp_path: Path) -> None:
    cat = build_catalog(QUERY_FILE, tmp_path / "catalog", seed=0, products=23_000, progress=False)
    data = load_rerank_data(cat)
    same, info = augmented_data(data, 0, 8.0)
    assert same is data and info == {}
    bare = type(data)(queries=data.queries, labels=data.labels, texts=data.texts)  # no products
    assert augmented_data(bare, 2000, 8.0)[0] is bare
