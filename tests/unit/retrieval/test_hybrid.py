"""Hybrid retrieval (BM25 + dense fused by RRF) and retriever-mined training lists."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.hybrid import HybridRetriever, bm25_search_masked, rrf_fuse


def test_rrf_fuse_scores_and_order() -> None:
    ids, scores = rrf_fuse([np.array([5, 7, 9]), np.array([9, 5, -1])], [1.0, 2.0], 4, rrf_k=10)
    # 5: 1/11 + 2/12; 9: 1/13 + 2/11; 7: 1/12
    want = {5: 1 / 11 + 2 / 12, 9: 1 / 13 + 2 / 11, 7: 1 / 12}
    assert ids.tolist() == [9, 5, 7, -1]
    np.testing.assert_allclose(scores[:3], [want[9], want[5], want[7]], rtol=1e-6)
    assert scores[3] == -np.inf


def test_rrf_fuse_ties_keep_first_seen_and_empty() -> None:
    ids, _ = rrf_fuse([np.array([3, 1]), np.array([1, 3])], [1.0, 1.0], 2, rrf_k=10)
    assert ids.tolist() == [3, 1]  # equal scores: first seen (list 1, rank 1) wins
    ids, scores = rrf_fuse([np.array([-1, -1])], [1.0], 3)
    assert ids.tolist() == [-1, -1, -1] and np.isinf(scores).all()
    with pytest.raises(ValueError):
        rrf_fuse([np.array([1])], [1.0, 2.0], 1)


@pytest.fixture(scope="module")
def hybrid(artifacts) -> tuple[HybridRetriever, object]:
    from catalog.io import load_catalog
    from retrieval.bm25 import BM25Index
    from retrieval.index import load_item_index

    cat = load_catalog(artifacts.catalog)
    loaded = load_item_index(artifacts.catalog)
    return HybridRetriever(loaded.item_index, BM25Index.from_products(cat.products, progress=False)), cat


def test_hybrid_fuses_both_lists(hybrid) -> None:
    from retrieval.embed import WordLlamaEmbedder

    retriever, cat = hybrid
    query = str(cat.queries["query"].iloc[0])
    qv = WordLlamaEmbedder().embed_query(query)
    ids, scores = retriever.retrieve(query, qv, 50)
    assert ids.shape == (1, 50) and (ids >= 0).all()
    assert np.all(np.diff(scores[0]) <= 0)
    dense, _ = retriever.dense.search(qv[None, :], 100)
    lexical = bm25_search_masked(retriever.bm25, query, 100)
    got = set(ids[0].tolist())
    # Both sources contribute, and the top of each list survives fusion.
    assert got & (set(lexical.tolist()) - set(dense[0].tolist()))
    assert int(dense[0][0]) in got and int(lexical[0]) in got


def test_hybrid_respects_filters(hybrid) -> None:
    from retrieval.embed import WordLlamaEmbedder
    from retrieval.filters import Filters

    retriever, cat = hybrid
    row = cat.queries.iloc[1]
    query, category = str(row["query"]), str(row["query_class"])
    qv = WordLlamaEmbedder().embed_query(query)
    filters = Filters(category=category, max_price=float(cat.products["price"].median()), in_stock_only=True)
    mask = retriever.dense.columns.mask(filters)
    ids, _ = retriever.retrieve(query, qv, 20, mask)
    found = ids[0][ids[0] >= 0]
    assert len(found) == min(20, int(mask.sum()))
    assert mask[found].all()
    # BM25 alone, masked inside bm25s, returns only allowed items too.
    lexical = bm25_search_masked(retriever.bm25, query, 50, mask)
    assert mask[lexical[lexical >= 0]].all()
    empty = Filters(category=category, min_price=1e9)
    ids, _ = retriever.retrieve(query, qv, 5, retriever.dense.columns.mask(empty))
    assert (ids == -1).all()
