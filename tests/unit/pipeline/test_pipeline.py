"""RankingPipeline's combination of retrieval and reranker scores (stages are tested on their own)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from engines.rerank import RerankResult
from pipeline.pipeline import ItemTable, RankedItem, RankingPipeline, RankParams

N = 4


class FixedEmbedder:
    def embed_query(self, text: str) -> np.ndarray:
        return np.ones(2, np.float32)


class FixedRetriever:
    """Items 0..3 in that order, with descending retrieval scores."""

    def retrieve(self, query, qvec, k, filters):
        return np.arange(N)[None, :k], np.linspace(1.0, 0.4, N, dtype=np.float32)[None, :k]


class ScoresByText:
    """A rerank stage whose score for an item is read from a table: the pipeline's input, made exact."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    async def rerank(self, query: str, docs: Sequence[str], *, timeout_s: float | None = None
                     ) -> RerankResult:
        return RerankResult(np.array([self.scores[d] for d in docs], np.float32), {"tokenize_ms": 0.0})


def rank(ce: list[float], weight: float, lam: float = 1.0) -> list[RankedItem]:
    texts = [f"item {i}" for i in range(N)]
    # Orthogonal vectors: no redundancy between items, so λ < 1 only rescales relevance.
    items = ItemTable(np.array(texts, object), np.array(["c"] * N, object), np.ones(N, np.float32), texts,
                      np.eye(N, dtype=np.float32))
    stage = ScoresByText(dict(zip(texts, ce, strict=True)))
    pipe = RankingPipeline(FixedEmbedder(), FixedRetriever(), items, stage, retrieval_weight=weight)

    async def run() -> list[RankedItem]:
        params = RankParams(query="q", k=N, mmr_lambda=lam, candidates=N)
        return [e async for e in pipe.rank(params) if isinstance(e, RankedItem)]

    return asyncio.run(run())


def test_reranker_order_wins_and_retrieval_breaks_its_ties() -> None:
    # Items 1-3 tie on the reranker; item 0 is last by it despite leading retrieval.
    ce = [0.0, 2.0, 2.0, 2.0]
    assert [r.item_id for r in rank(ce, weight=0.25)] == [1, 2, 3, 0]
    # The tie order comes from retrieval (ascending retrieval would flip it): reversed CE ties stay put.
    assert [r.item_id for r in rank([2.0, 2.0, 0.0, 2.0], weight=0.25)] == [0, 1, 3, 2]
    # Items carry the raw scores of both stages, not the fused relevance.
    out = rank(ce, weight=0.25)
    assert [r.rerank_score for r in out] == pytest.approx([2.0, 2.0, 2.0, 0.0])
    assert out[-1].retrieval_score == pytest.approx(1.0)


def test_retrieval_weight_trades_reranker_against_retrieval() -> None:
    ce = [0.0, 0.05, 0.1, 1.0]  # the reranker reverses the middle of the retrieval order
    assert [r.item_id for r in rank(ce, weight=0.0)] == [3, 2, 1, 0]
    assert [r.item_id for r in rank(ce, weight=0.25)] == [3, 0, 1, 2]  # small CE gaps yield to retrieval
    assert [r.item_id for r in rank(ce, weight=10.0)] == [0, 1, 2, 3]
