"""Ranking the queries: the BM25 system's index, and the rerank memo that lets every run share one call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from benchmarks.quality.runs import CachedRerankStage
from retrieval.bm25 import BM25Index, minimal_stem


def test_bm25_search() -> None:
    assert [minimal_stem(w) for w in ("pillows", "glass", "flies", "shoes", "rugs")] == [
        "pillow", "glass", "fly", "shoes", "rug"]
    docs = ["Navy velvet sofa", "Turquoise accent pillow", "Oak dining chair",
            "Navy accent pillows and throws"]
    index = BM25Index.build(docs, progress=False)
    ids, scores = index.search(["turquoise pillows", "the and of", "zorblax"], k=3)
    assert ids.shape == scores.shape == (3, 3)
    assert ids[0, 0] == 1  # plural query meets the singular title, and "turquoise" outranks
    assert set(ids[0][ids[0] >= 0]) == {1, 3}  # only items sharing a term come back
    assert ids[0, 2] == -1 and scores[0, 2] == -np.inf
    assert (ids[1] == -1).all() and (ids[2] == -1).all()  # stopwords only / unknown word: nothing
    assert np.all(np.diff(scores[0][ids[0] >= 0]) <= 0)


class CountingStage:
    def __init__(self) -> None:
        self.requests: list[tuple[str, tuple[str, ...]]] = []

    async def rerank(self, query: str, docs: Sequence[str], *, timeout_s: float | None = None,
                     version: str = "") -> list[float]:
        self.requests.append((query, tuple(docs)))
        return [float(len(d)) for d in docs]


def test_cached_rerank_stage_one_call_per_request_lru_bound() -> None:
    stage = CountingStage()
    cached = CachedRerankStage(stage, maxsize=2)

    async def calls() -> list[list[float]]:
        return [await cached.rerank(q, docs) for q, docs in
                [("sofa", ["a", "bb"]), ("sofa", ["a", "bb"]), ("sofa", ["bb", "a"]), ("lamp", ["c"]),
                 ("sofa", ["a", "bb"])]]

    results = asyncio.run(calls())
    assert results[0] == results[1] == [1.0, 2.0] and results[2] == [2.0, 1.0]
    # The repeat is served from the memo; other candidates (or their order) are a new request; with room
    # for two, the first request was evicted by the time it came back.
    assert stage.requests == [("sofa", ("a", "bb")), ("sofa", ("bb", "a")), ("lamp", ("c",)),
                              ("sofa", ("a", "bb"))]
    assert cached.calls == 4
