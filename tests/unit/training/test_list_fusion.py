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
