"""The retrieve stage's factory: dense is the FAISS index itself, hybrid adds BM25 over the same items."""

from __future__ import annotations

import numpy as np

from catalog.io import load_catalog
from retrieval.embed import WordLlamaEmbedder
from retrieval.hybrid import HybridRetriever
from retrieval.index import load_item_index
from retrieval.retrieve import select_retriever


def test_select_retriever_modes(artifacts) -> None:
    catalog = load_catalog(artifacts.catalog)
    dense = load_item_index(artifacts.catalog).item_index
    query = str(catalog.queries["query"].iloc[0])
    qv = WordLlamaEmbedder().embed_query(query)
    assert select_retriever("dense", dense, catalog.products) is dense
    hybrid = select_retriever("hybrid", dense, catalog.products)
    assert isinstance(hybrid, HybridRetriever) and hybrid.dense is dense
    ids, scores = hybrid.retrieve(query, qv, 20)
    assert ids.shape == scores.shape == (1, 20) and (ids >= 0).all()
    mask = np.zeros(dense.n, dtype=bool)
    mask[ids[0][:5]] = True  # a mask of five items leaves only those
    for retriever in (dense, hybrid):
        found, _ = retriever.retrieve(query, qv, 20, mask)
        assert set(found[0][found[0] >= 0]) <= set(ids[0][:5])
