"""The ranking pipeline: embed → retrieve → rerank → fuse → personalise → diversify, streamed.

Each stage is a small object with one method, behind a protocol in a file named after it
(`retrieval.embed`, `retrieval.retrieve`, `engines.rerank`, `pipeline.fuse`, `pipeline.personalize`,
`pipeline.diversify`), so a
stage can be swapped (CPU/GPU index, Triton/in-process reranker) without touching the others. This
module only sequences them, times each one, owns the request's deadline, and degrades to retrieval
order when the reranker is down. The server and the quality harness run this same object.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import numpy as np

from engines.rerank import RerankerUnavailable, RerankStage
from pipeline.diversify import Mmr
from pipeline.fuse import BlendFusion, Fuser
from pipeline.personalize import SHUFFLED_TOP, Personal, Personalizer, shuffle_top
from pipeline.types import Deadline, ItemTable, RankedItem, RankParams, RankSummary
from retrieval.embed import Embedder
from retrieval.retrieve import Retriever

# What "the reranker is down" looks like: degrade to retrieval order rather than fail the request.
UNAVAILABLE = (RerankerUnavailable, TimeoutError, ConnectionError)


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Record the block's wall time in milliseconds under `stage`."""
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = (time.perf_counter() - t) * 1e3


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
        retriever: Retriever,
        items: ItemTable,
        reranker: RerankStage | None,
        *,
        fusion: Fuser | None = None,
        diversifier: Mmr | None = None,
        personalizer: Personalizer | None = None,
        reranker_timeout_s: float = 2.0,
        reranker_retry_after_s: float = 1.0,
        model_version: str = "",
        index_version: str = "",
        fusion_for: Callable[[str], Fuser] | None = None,
    ) -> None:
        self.embedder = embedder
        self.retriever = retriever
        self.items = items
        self.reranker = reranker
        # Relevance after reranking: the model's list-fusion head, or a blend of the two stages' scores.
        self.fusion = fusion or BlendFusion(0.0)
        self.diversifier = diversifier or Mmr(items.vectors)
        self.personalizer = personalizer
        self.reranker_timeout_s = reranker_timeout_s
        self.retry_after_s = reranker_retry_after_s
        # One gate per model version: an unloaded canary version must not switch reranking off for all.
        self.gates: dict[str, RerankerGate] = {}
        self.model_version = model_version  # the default version (RankParams.model_version "")
        self.index_version = index_version
        # A version's relevance fusion (its own list-fusion head: the head learned that model's scores).
        self._fusion_for = fusion_for
        self._fusions: dict[str, Fuser] = {}

    def prepare(self, versions: list[str]) -> None:
        """Build the fusion of each version now (blocking: run it off the event loop), so no request
        builds one on the loop."""
        for v in versions:
            if v != self.model_version and self._fusion_for is not None and v not in self._fusions:
                self._fusions[v] = self._fusion_for(v)

    def pin_version(self, version: str) -> None:
        """Make ``version`` the default (the server pins it once it knows what the model server holds)."""
        if self._fusion_for is not None and version != self.model_version:
            self.fusion = self._fusion_for(version)
        self.model_version = version

    def gate(self, version: str) -> RerankerGate:
        if version not in self.gates:
            self.gates[version] = RerankerGate(self.retry_after_s)
        return self.gates[version]

    def fusion_of(self, version: str) -> Fuser:
        if version == self.model_version or self._fusion_for is None:
            return self.fusion
        if version not in self._fusions:
            self._fusions[version] = self._fusion_for(version)
        return self._fusions[version]

    async def rank(
        self, params: RankParams, *, deadline: float | None = None, personal: Personal | None = None
    ) -> AsyncIterator[RankedItem | RankSummary]:
        """Yield RankedItems best first as MMR picks them, then one RankSummary.

        `deadline` is a time.monotonic() instant; past it the pipeline raises DeadlineExceeded. A filter
        that cannot apply raises FilterError before any work. `personal`: the user's profile and how to
        apply it, or None (the unpersonalised ranking).
        """
        t_start = time.perf_counter()
        clock = Deadline(deadline)
        version = params.model_version or self.model_version
        summary = RankSummary(request_id=params.request_id, model_version=version,
                              index_version=self.index_version, mmr_lambda=params.mmr_lambda)
        timings = summary.timings_ms
        mask = self.items.filter_mask(params.filters)
        with timed(timings, "embed"):
            qvec = self.embedder.embed_query(params.query).reshape(1, -1).astype(np.float32, copy=False)
        clock.remaining()
        with timed(timings, "retrieve"):
            # FAISS and BM25 release the GIL: keep the event loop free for other streams while they search.
            ids, scores = await asyncio.to_thread(
                self.retriever.retrieve, params.query, qvec, params.candidates, mask
            )
        keep = ids[0] >= 0
        cand_ids, retrieval_scores = ids[0][keep], scores[0][keep].astype(np.float32)
        summary.candidates_retrieved = int(cand_ids.size)

        rerank_scores = retrieval_scores
        if cand_ids.size and params.use_reranker:
            rerank_scores = await self._rerank(params.query, cand_ids, retrieval_scores, summary, clock,
                                               version)
        relevance = rerank_scores
        if summary.candidates_reranked:
            with timed(timings, "fusion"):
                relevance = self.fusion_of(version).relevance(params.query, cand_ids, rerank_scores,
                                                              retrieval_scores)
        personal_scores = None
        if self.personalizer is not None and personal is not None:
            with timed(timings, "personalize"):
                personal_scores = self.personalizer.scores(personal.profile, cand_ids, personal.weight,
                                                           relevance)
            summary.personalized = personal_scores is not None
            summary.profile_version = personal.profile.events
            summary.explored = personal.explore_seed is not None
        seed = personal.explore_seed if personal is not None else None
        async for item in self._diversify(params, cand_ids, relevance, personal_scores, retrieval_scores,
                                          rerank_scores, summary, seed):
            yield item
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        yield summary

    async def _diversify(self, params: RankParams, cand_ids: np.ndarray, relevance: np.ndarray,
                         personal: np.ndarray | None, retrieval_scores: np.ndarray,
                         rerank_scores: np.ndarray, summary: RankSummary, explore_seed: int | None = None
                         ) -> AsyncIterator[RankedItem]:
        """MMR picks lazily, one per item sent: the picking is timed apart from the sending. An exploring
        list picks its top first and serves it in random order."""
        mmr_s = send_s = 0.0
        picks = self.diversifier.select(relevance, cand_ids, params.k, params.mmr_lambda, personal)
        if explore_seed is not None:
            top = list(itertools.islice(picks, SHUFFLED_TOP))
            shuffle_top(top, explore_seed)
            picks = itertools.chain(top, picks)
        rank = 0
        while True:
            t = time.perf_counter()
            pick = next(picks, None)
            mmr_s += time.perf_counter() - t
            if pick is None:
                break
            i, item_id = pick.index, int(cand_ids[pick.index])
            rank += 1
            t = time.perf_counter()
            yield RankedItem(
                rank=rank, item_id=item_id, title=str(self.items.titles[item_id]),
                category=str(self.items.categories[item_id]), price=float(self.items.prices[item_id]),
                score=pick.score, retrieval_score=float(retrieval_scores[i]),
                rerank_score=float(rerank_scores[i]), redundancy_penalty=pick.redundancy,
                explanation=pick.components(params.mmr_lambda),
            )
            send_s += time.perf_counter() - t
        summary.timings_ms["mmr"] = mmr_s * 1e3
        summary.timings_ms["send"] = send_s * 1e3
        summary.items_returned = rank

    async def _rerank(self, query: str, cand_ids: np.ndarray, retrieval_scores: np.ndarray,
                      summary: RankSummary, clock: Deadline, version: str) -> np.ndarray:
        if self.reranker is None:
            summary.degraded, summary.degraded_reason = True, "reranker_not_configured"
            return retrieval_scores
        gate = self.gate(version)
        if not gate.open():
            summary.degraded, summary.degraded_reason = True, "reranker_unavailable"
            return retrieval_scores
        timeout = clock.cap(self.reranker_timeout_s)
        docs = [self.items.texts[int(i)] for i in cand_ids]
        t = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                result = await self.reranker.rerank(query, docs, timeout_s=timeout, version=version)
        except UNAVAILABLE:
            clock.remaining()  # the deadline, not the reranker, may be what ran out
            gate.failed()
            summary.degraded, summary.degraded_reason = True, "reranker_unavailable"
            summary.timings_ms["rerank"] = (time.perf_counter() - t) * 1e3
            return retrieval_scores
        summary.timings_ms["tokenize"] = float(result.timings.get("tokenize_ms", 0.0))
        summary.timings_ms["rerank"] = float(result.timings.get("infer_ms", (time.perf_counter() - t) * 1e3))
        scores = np.asarray(result.scores, dtype=np.float32).reshape(-1)
        if scores.size != cand_ids.size or not np.isfinite(scores).all():
            # One NaN (an FP16 overflow) would make every relevance NaN and serve retrieval order as if
            # reranked, and the cache would keep it: serve the retrieval order, marked degraded. The gate
            # counts it as a failure, so a reranker that keeps doing it is skipped while it cools down.
            gate.failed()
            summary.degraded, summary.degraded_reason = True, "reranker_bad_scores"
            return retrieval_scores
        gate.succeeded()
        summary.candidates_reranked = int(cand_ids.size)
        return scores
