"""Ranking the selected queries with every system, through the pipeline the server builds.

Every neural system runs through the `RankingPipeline` that `server.wiring.load_pipeline` builds for the
server (same embedder, index, item table, tokenizer and Triton-hosted INT8 model); only `RankParams` and
the swappable rerank stage differ:

    bm25         BM25 (bm25s) over name + class + description + features, top 100
    retrieval    the retrieval stage alone (hybrid BM25 + dense RRF, retrieval.hybrid, unless the
                 settings ask for dense only): use_reranker=False, λ=1, k=100
    cross_encoder  the model's scores alone over the retrieved 100: no retrieval blend, no list-fusion
                 head, λ=1 (ties keep the retrieval order)
    rerank       retrieval -> cross-encoder (Triton, INT8) -> fuse (the served head or blend): λ=1, k=100
    rerank_mmr   the full pipeline at Settings().default_mmr_lambda, k=100 (MMR orders all 100)
    rerank_fp32  as `rerank`, with the FP32 ONNX in-process (OrtRerankStage): INT8 vs FP32 parity

The rerank stage is wrapped in a memo keyed by (query, candidate texts), so `rerank`, `rerank_mmr` and the
λ sweep share one Triton call per query, and the sweep costs only MMR.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from cachetools import LRUCache
from rich.progress import Progress

from pipeline.fuse import BlendFusion
from pipeline.pipeline import RankingPipeline
from pipeline.types import RankedItem, RankParams, RankSummary

SYSTEMS = ("bm25", "retrieval", "cross_encoder", "rerank", "rerank_mmr")
# `rankserve eval --ablation` rows (benchmarks.quality.ablation).
ABLATIONS = ("bert_alone", "prior_alone", "bert_prior", "bert_prior_blend", "served_no_mmr", "served",
             "no_transformer")
DEPTH = 100
LAMBDAS = tuple(round(i / 10, 1) for i in range(11))
# Memo entries per query: every run reranks the same candidates (one entry); the rest is headroom, as an
# evicted entry would cost a repeated model call and break the one-call-per-query count.
CACHE_ENTRIES_PER_QUERY = 4
Rankings = dict[str, list[int]]  # query key -> item ids, best first


class CachedRerankStage:
    """Memoises a rerank stage by (query, candidate texts): same request, same scores, one model call.

    An LRU bound keeps a long query file from holding every result; size it to the queries ranked.
    """

    def __init__(self, stage: Any, maxsize: int = 4096) -> None:
        self.stage = stage
        self.calls = 0
        self._cache: LRUCache[tuple[str, str, tuple[str, ...]], Any] = LRUCache(maxsize=maxsize)

    async def rerank(self, query: str, docs: Sequence[str], *, timeout_s: float | None = None,
                     version: str = "") -> Any:
        key = (version, query, tuple(docs))
        result = self._cache.get(key)
        if result is None:
            result = await self.stage.rerank(query, docs, timeout_s=timeout_s, version=version)
            self._cache[key] = result
            self.calls += 1
        return result


class RerankerDegraded(RuntimeError):
    """The pipeline fell back to retrieval order: a quality number from that run would be wrong."""


async def rank_ids(pipeline: RankingPipeline, params: RankParams) -> tuple[list[int], RankSummary]:
    """One query's item ids in served order, and its summary; a degraded rerank raises."""
    ids: list[int] = []
    summary: RankSummary | None = None
    async for event in pipeline.rank(params):
        if isinstance(event, RankedItem):
            ids.append(event.item_id)
        else:
            summary = event
    assert summary is not None
    if params.use_reranker and summary.degraded:
        raise RerankerDegraded(f"query {params.query!r}: reranker degraded ({summary.degraded_reason})")
    return ids, summary


async def pipeline_rankings(
    pipeline: RankingPipeline,
    queries: pd.DataFrame,
    *,
    mmr_lambda: float,
    use_reranker: bool,
    label: str,
    progress: bool = True,
) -> Rankings:
    """Rank every query (in order) through the pipeline at k = candidates = 100."""
    out: Rankings = {}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(label, total=len(queries))
        for key, text in zip(queries["key"], queries["query"], strict=True):
            params = RankParams(query=text, k=DEPTH, mmr_lambda=mmr_lambda, candidates=DEPTH,
                                request_id=f"eval-{key}", use_reranker=use_reranker)
            out[key], _ = await rank_ids(pipeline, params)
            bar.advance(task)
    return out


def bm25_rankings(products: pd.DataFrame, queries: pd.DataFrame, *, progress: bool = True) -> Rankings:
    """Top 100 by BM25 alone; only items sharing a term come back, so a list may be shorter."""
    from retrieval.bm25 import BM25Index

    index = BM25Index.from_products(products, progress=progress)
    out: Rankings = {}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("bm25", total=len(queries))
        for key, text in zip(queries["key"], queries["query"], strict=True):
            ids, _ = index.search([text], DEPTH)
            out[key] = [int(i) for i in ids[0] if i >= 0]
            bar.advance(task)
    return out


@dataclass
class NeuralRuns:
    """The pipeline systems' rankings, the λ sweep's, and what they cost."""

    systems: dict[str, Rankings]
    sweep: dict[float, Rankings]
    triton_calls: int
    seconds: dict[str, float]


async def model_alone(pipeline: RankingPipeline, run: Callable[[str, float], Awaitable[Rankings]]
                      ) -> Rankings:
    """The `cross_encoder` system: the served stages with fusion swapped for the reranker's raw scores."""
    served = pipeline.fusion
    pipeline.fusion = BlendFusion(0.0)
    try:
        return await run("cross_encoder", 1.0)
    finally:
        pipeline.fusion = served


async def neural_rankings(
    pipeline: RankingPipeline,
    queries: pd.DataFrame,
    *,
    default_lambda: float,
    fp32_stage: Any | None,
    lambdas: Sequence[float] = LAMBDAS,
    progress: bool = True,
) -> NeuralRuns:
    """retrieval, rerank, the λ sweep (rerank_mmr = the default λ) and rerank_fp32 through one pipeline."""
    served = pipeline.reranker
    maxsize = max(1, len(queries)) * CACHE_ENTRIES_PER_QUERY
    cached = CachedRerankStage(served, maxsize)
    pipeline.reranker = cached  # a stage is swappable by design; restored below
    seconds: dict[str, float] = {}

    async def run(label: str, lam: float, use_reranker: bool = True) -> Rankings:
        t = time.perf_counter()
        out = await pipeline_rankings(pipeline, queries, mmr_lambda=lam, use_reranker=use_reranker,
                                      label=label, progress=progress)
        seconds[label] = round(time.perf_counter() - t, 3)
        return out

    try:
        systems = {"retrieval": await run("retrieval", 1.0, use_reranker=False),
                   "cross_encoder": await model_alone(pipeline, run),
                   "rerank": await run("rerank", 1.0)}
        # The default λ joins the sweep, so the plot and table always show the served trade-off.
        grid = sorted({*map(float, lambdas), float(default_lambda)})
        sweep = {lam: await run(f"rerank_mmr λ={lam:g}", lam) for lam in grid}
        systems["rerank_mmr"] = sweep[float(default_lambda)]
        triton_calls = cached.calls
        if fp32_stage is not None:
            pipeline.reranker = CachedRerankStage(fp32_stage, maxsize)
            systems["rerank_fp32"] = await run("rerank_fp32", 1.0)
    finally:
        pipeline.reranker = served
        await served.close()  # a Triton stage's gRPC channel belongs to this event loop
    return NeuralRuns(systems, sweep, triton_calls, seconds)
