"""The ranking pipeline: embed → retrieve (FAISS, filtered) → rerank (cross-encoder + list fusion) → MMR,
as a stream.

Each stage is a small object with one method, so a stage can be swapped (CPU/GPU index, Triton/in-process
reranker) without touching the others. The eval harness and the server run this same object.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engines.rerank import RerankStage
from pipeline.diversify import mmr
from pipeline.fuse import FusionStage, base_relevance
from retrieval.filters import Filters


class Embedder(Protocol):
    def embed_query(self, text: str) -> np.ndarray: ...


class Retriever(Protocol):
    """The retrieval stage: dense (retrieval.index.ItemIndex) or hybrid (retrieval.hybrid.HybridRetriever)."""

    def retrieve(
        self, query: str, query_vector: np.ndarray, k: int, filters: Filters | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


class DeadlineExceeded(Exception):
    """The request's deadline passed before the pipeline finished; the remaining work was skipped."""


@dataclass(frozen=True)
class ItemTable:
    """Per-item columns the pipeline needs, row = product_id."""

    titles: np.ndarray  # object (str)
    categories: np.ndarray  # object (str)
    prices: np.ndarray  # float32
    texts: Sequence[str]  # what the reranker reads for an item
    vectors: np.ndarray  # (n, d) float32, L2-normalised, for MMR

    def __len__(self) -> int:
        return len(self.titles)


@dataclass(frozen=True)
class RankParams:
    query: str
    k: int
    mmr_lambda: float
    candidates: int
    filters: Filters | None = None
    request_id: str = ""
    use_reranker: bool = True


@dataclass(frozen=True, slots=True)
class RankedItem:
    rank: int
    item_id: int
    title: str
    category: str
    price: float
    score: float
    retrieval_score: float
    rerank_score: float
    redundancy_penalty: float


@dataclass
class RankSummary:
    request_id: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    candidates_retrieved: int = 0
    candidates_reranked: int = 0
    items_returned: int = 0
    model_version: str = ""
    index_version: str = ""
    degraded: bool = False
    degraded_reason: str = ""
    mmr_lambda: float = 0.0


class RerankerGate:
    """After a failed reranker call, skip the reranker for `retry_after_s`, then try again.

    Keeps a dead Triton from costing every request a timeout, and lets reranking resume by itself.
    """

    def __init__(self, retry_after_s: float, clock=time.monotonic) -> None:
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._failed_at: float | None = None

    def open(self) -> bool:
        return self._failed_at is None or self._clock() - self._failed_at >= self.retry_after_s

    def failed(self) -> None:
        self._failed_at = self._clock()

    def succeeded(self) -> None:
        self._failed_at = None


class RankingPipeline:
    def __init__(
        self,
        embedder: Embedder,
        index: Retriever,
        items: ItemTable,
        reranker: RerankStage | None,
        *,
        reranker_timeout_s: float = 2.0,
        reranker_retry_after_s: float = 1.0,
        model_version: str = "",
        index_version: str = "",
        unavailable_errors: tuple[type[BaseException], ...] = (),
        retrieval_weight: float = 0.0,
        fusion: FusionStage | None = None,
    ) -> None:
        self.embedder = embedder
        self.index = index
        self.items = items
        self.reranker = reranker
        self.reranker_timeout_s = reranker_timeout_s
        self.gate = RerankerGate(reranker_retry_after_s)
        # Relevance after reranking = minmax(reranker) + w * minmax(retrieval): the retrieval score
        # orders items the reranker ties (the word-MaxSim prior gives every item that holds all the
        # query's words the same score) and gives MMR graded relevance to trade against redundancy.
        self.retrieval_weight = retrieval_weight
        # When the model ships a list-fusion head it replaces that blend: a learned function of both
        # scores and of where the list's best matches concentrate by product class (pipeline.fuse).
        self.fusion = fusion
        self.model_version = model_version
        self.index_version = index_version
        # Errors that mean "the reranker is down" (degrade) rather than a bug (propagate).
        self._unavailable = (*unavailable_errors, asyncio.TimeoutError, ConnectionError)

    async def rank(
        self, params: RankParams, *, deadline: float | None = None
    ) -> AsyncIterator[RankedItem | RankSummary]:
        """Yield RankedItems best first as MMR picks them, then one RankSummary.

        `deadline` is a time.monotonic() instant; past it the pipeline raises DeadlineExceeded.
        """
        t_start = time.perf_counter()
        summary = RankSummary(request_id=params.request_id, model_version=self.model_version,
                              index_version=self.index_version, mmr_lambda=params.mmr_lambda)
        timings = summary.timings_ms

        def remaining() -> float | None:
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded("deadline passed before ranking finished")
            return left

        t = time.perf_counter()
        qvec = self.embedder.embed_query(params.query).reshape(1, -1).astype(np.float32, copy=False)
        timings["embed"] = (time.perf_counter() - t) * 1e3
        remaining()

        t = time.perf_counter()
        # FAISS and BM25 release the GIL: keep the event loop free for other streams while they search.
        ids, scores = await asyncio.to_thread(
            self.index.retrieve, params.query, qvec, params.candidates, params.filters
        )
        timings["retrieve"] = (time.perf_counter() - t) * 1e3
        keep = ids[0] >= 0
        cand_ids = ids[0][keep]
        retrieval_scores = scores[0][keep].astype(np.float32)
        summary.candidates_retrieved = int(cand_ids.size)

        rerank_scores = retrieval_scores
        if cand_ids.size and params.use_reranker:
            rerank_scores = await self._rerank(params.query, cand_ids, retrieval_scores, summary, remaining)

        relevance = rerank_scores
        if summary.candidates_reranked and self.fusion is not None:
            t = time.perf_counter()
            relevance = self.fusion.relevance(params.query, cand_ids, rerank_scores, retrieval_scores)
            timings["fusion"] = (time.perf_counter() - t) * 1e3
        elif summary.candidates_reranked and self.retrieval_weight > 0:
            relevance = base_relevance(rerank_scores, retrieval_scores, self.retrieval_weight)
        # MMR picks are computed lazily, one per item sent: time the picking apart from the sending.
        mmr_s = send_s = 0.0
        picks = mmr(relevance, self.items.vectors[cand_ids], params.k, params.mmr_lambda)
        rank = 0
        while True:
            t = time.perf_counter()
            pick = next(picks, None)
            mmr_s += time.perf_counter() - t
            if pick is None:
                break
            i = pick.index
            item_id = int(cand_ids[i])
            rank += 1
            t = time.perf_counter()
            yield RankedItem(
                rank=rank,
                item_id=item_id,
                title=str(self.items.titles[item_id]),
                category=str(self.items.categories[item_id]),
                price=float(self.items.prices[item_id]),
                score=pick.score,
                retrieval_score=float(retrieval_scores[i]),
                rerank_score=float(rerank_scores[i]),
                redundancy_penalty=pick.redundancy,
            )
            send_s += time.perf_counter() - t
        timings["mmr"] = mmr_s * 1e3
        timings["send"] = send_s * 1e3
        summary.items_returned = rank
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        yield summary

    async def _rerank(self, query, cand_ids, retrieval_scores, summary, remaining) -> np.ndarray:
        if self.reranker is None:
            summary.degraded, summary.degraded_reason = True, "reranker_not_configured"
            return retrieval_scores
        if not self.gate.open():
            summary.degraded, summary.degraded_reason = True, "reranker_unavailable"
            return retrieval_scores
        left = remaining()
        timeout = self.reranker_timeout_s if left is None else min(self.reranker_timeout_s, left)
        docs = [self.items.texts[int(i)] for i in cand_ids]
        t = time.perf_counter()
        try:
            result = await asyncio.wait_for(self.reranker.rerank(query, docs, timeout_s=timeout), timeout)
        except self._unavailable:
            remaining()  # the deadline, not the reranker, may be what ran out
            self.gate.failed()
            summary.degraded, summary.degraded_reason = True, "reranker_unavailable"
            summary.timings_ms["rerank"] = (time.perf_counter() - t) * 1e3
            return retrieval_scores
        self.gate.succeeded()
        summary.candidates_reranked = int(cand_ids.size)
        summary.timings_ms["tokenize"] = float(result.timings.get("tokenize_ms", 0.0))
        summary.timings_ms["rerank"] = float(result.timings.get("infer_ms", (time.perf_counter() - t) * 1e3))
        return np.asarray(result.scores, dtype=np.float32).reshape(-1)
