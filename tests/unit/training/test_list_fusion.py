"""Fitting the list-fusion head (training.list_fusion): it learns class intent that carries over to
unseen classes, and it is fitted on train queries only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.fuse import list_features
from pipeline.match_features import MATCH_FEATURES
from training.list_fusion import ScoredList, base_score, fit_list_fusion, mean_list_ndcg


def no_match(n: int) -> np.ndarray:
    return np.zeros((n, len(MATCH_FEATURES)), np.float32)


def synthetic_list(rng: np.random.Generator, class_base: int, n: int = 60) -> ScoredList:
    """A list where the cross-encoder ties the query's class with look-alikes from other classes.

    8 relevant items (one class) and 22 distractors spread over 11 other classes all "hold every query
    word" (rerank 1.0); the rest score lower. Retrieval order is random. Only the class concentration
    tells the relevant items apart, and the classes of val lists are never seen in training.
    """
    classes = np.concatenate([np.full(8, class_base), class_base + 1 + np.arange(22) % 11,
                              class_base + 20 + rng.integers(0, 5, n - 30)])
    rerank = np.concatenate([np.ones(30), rng.uniform(0.2, 0.8, n - 30)])
    rels = np.concatenate([np.full(8, 2), np.zeros(n - 8, int)])
    order = rng.permutation(n)
    retrieval = np.sort(rng.uniform(0, 1, n))[::-1]
    return ScoredList(class_base, list_features(rerank[order], retrieval, classes[order], no_match(n)),
                      rels[order], np.full(8, 2))
def test_fit_learns_class_intent_on_unseen_classes() -> None:
    rng = np.random.default_rng(0)
    train = [synthetic_list(rng, 1000 * i) for i in range(40)]
    val = [synthetic_list(rng, 1000 * (100 + i)) for i in range(15)]
    head, report = fit_list_fusion(train, val, epochs=8)
    base = mean_list_ndcg(val, base_score)
    assert base < 0.6  # ties broken by a random retrieval order
    assert report["val_ndcg@10"] == pytest.approx(mean_list_ndcg(val, head.score))
    assert report["val_ndcg@10"] > base + 0.3, report["history"]
    assert report["val_ndcg@10_base"] == pytest.approx(base)
    assert 1 <= report["best_epoch"] <= 8 and len(report["history"]) == 8
def test_fusion_trains_on_train_queries_only(artifacts) -> None:
    from training.data import load_rerank_data
    from training.splits import split_queries

    report = json.loads((artifacts.model / "list_fusion_report.json").read_text())
    splits = split_queries(load_rerank_data(artifacts.catalog).queries)
    trained_on = set(report["train_query_ids"])
    assert trained_on and trained_on <= set(splits["train"]["query_id"])
    assert not trained_on & (set(splits["dev"]["query_id"]) | set(splits["val"]["query_id"]))
    assert (artifacts.model / "list_fusion.json").exists()


def test_the_head_learns_on_classes_the_fine_tune_never_saw(artifacts) -> None:
    """Out-of-fold stacking: a share of train classes stays out of the fine-tune, and the head's train
    lists include them (so it learns how the model does on a class it does not know)."""
    from training.data import load_rerank_data
    from training.splits import split_queries

    train = json.loads((artifacts.model / "train_report.json").read_text())
    fusion = json.loads((artifacts.model / "list_fusion_report.json").read_text())
    queries = load_rerank_data(artifacts.catalog).queries
    held = set(train["head_holdout_query_ids"])
    train_ids = set(split_queries(queries)["train"]["query_id"])
    assert held and held < train_ids
    assert held <= set(fusion["train_query_ids"])
    assert train["train_queries"] <= len(train_ids - held)  # the fine-tune never drew them
    assert train["pseudo_queries"] > 0  # the default build's pseudo-queries, counted apart
    held_classes = set(queries[queries.query_id.isin(held)].query_class)
    tuned = queries[queries.query_id.isin(train_ids - held)]
    assert not held_classes & set(tuned.query_class)  # whole classes, not a sample of queries


def test_head_study_folds_keep_each_class_in_one_fold() -> None:
    from training.head_study import class_folds

    classes = ["Sofas", "Rugs", "Sofas", "Beds", "Rugs", "", "Beds", "Desks"] * 3
    folds = class_folds(classes)
    assert set(folds) == {0, 1}  # both folds used on these classes
    for c in set(classes):
        assert len({f for f, k in zip(folds, classes, strict=True) if k == c}) == 1
