"""RankingPipeline: how it combines the stages' scores, degrades when the reranker is down or slow, and
owns the deadline (the stages are tested on their own)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np
import pytest

from engines.rerank import RerankerUnavailable, RerankResult
from pipeline.fuse import BlendFusion
from pipeline.pipeline import RankingPipeline, RerankerGate
from pipeline.types import DeadlineExceeded, ItemTable, RankedItem, RankParams, RankSummary
from retrieval.filters import FilterError, Filters

N = 4


class FixedEmbedder:
    def embed_query(self, text: str) -> np.ndarray:
        return np.ones(2, np.float32)


class FixedRetriever:
    """Items 0..3 in that order, with descending retrieval scores."""

    def retrieve(self, query, qvec, k, mask=None):
        return np.arange(N)[None, :k], np.linspace(1.0, 0.4, N, dtype=np.float32)[None, :k]


class ScoresByText:
    """A rerank stage whose score for an item is read from a table: the pipeline's input, made exact."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    async def rerank(self, query: str, docs: Sequence[str], *, timeout_s: float | None = None,
                     version: str = ""
                     ) -> RerankResult:
        return RerankResult(np.array([self.scores[d] for d in docs], np.float32), {"tokenize_ms": 0.0})


def rank(ce: list[float], weight: float, lam: float = 1.0) -> list[RankedItem]:
    texts = [f"item {i}" for i in range(N)]
    # Orthogonal vectors: no redundancy between items, so λ < 1 only rescales relevance.
    items = ItemTable(np.array(texts, object), np.array(["c"] * N, object), np.ones(N, np.float32), texts,
                      np.eye(N, dtype=np.float32))
    stage = ScoresByText(dict(zip(texts, ce, strict=True)))
    pipe = RankingPipeline(FixedEmbedder(), FixedRetriever(), items, stage, fusion=BlendFusion(weight))

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


class Down:
    """A reranker that is down (raises) or hangs (sleeps past any timeout); counts its calls."""

    def __init__(self, hang_s: float = 0.0) -> None:
        self.hang_s = hang_s
        self.calls = 0

    async def rerank(self, query: str, docs: Sequence[str], *, timeout_s: float | None = None,
                     version: str = ""
                     ) -> RerankResult:
        self.calls += 1
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        raise RerankerUnavailable("down")


def run_once(pipe: RankingPipeline, deadline: float | None = None, **params: object
             ) -> tuple[list[int], RankSummary]:
    async def run() -> tuple[list[int], RankSummary]:
        p = RankParams(query="q", k=N, mmr_lambda=1.0, candidates=N, **params)  # type: ignore[arg-type]
        out = [e async for e in pipe.rank(p, deadline=deadline)]
        return [e.item_id for e in out if isinstance(e, RankedItem)], out[-1]

    return asyncio.run(run())


def items_table() -> ItemTable:
    texts = [f"item {i}" for i in range(N)]
    return ItemTable(np.array(texts, object), np.array(["c"] * N, object), np.ones(N, np.float32), texts,
                     np.eye(N, dtype=np.float32))


@pytest.mark.parametrize("hang_s", [0.0, 5.0])
def test_reranker_down_or_slow_degrades_to_retrieval_order_and_the_gate_skips_it(hang_s: float) -> None:
    stage = Down(hang_s)
    pipe = RankingPipeline(FixedEmbedder(), FixedRetriever(), items_table(), stage,  # type: ignore[arg-type]
                           reranker_timeout_s=0.05, reranker_retry_after_s=60.0)
    t = time.perf_counter()
    ids, summary = run_once(pipe)
    assert time.perf_counter() - t < 2.0  # the pipeline's timeout, not the hang, ended the call
    assert ids == [0, 1, 2, 3] and summary.degraded and summary.degraded_reason == "reranker_unavailable"
    assert summary.candidates_reranked == 0 and stage.calls == 1
    ids, summary = run_once(pipe)  # the gate is closed: no second call while it cools down
    assert summary.degraded and stage.calls == 1


class BadScores:
    """A reranker that answers, but with a NaN among its scores or one score too few."""

    def __init__(self, short: bool) -> None:
        self.short = short
        self.calls = 0

    async def rerank(self, query: str, docs: Sequence[str], *, timeout_s: float | None = None,
                     version: str = "") -> RerankResult:
        self.calls += 1
        scores = np.array([0.0, 1.0, np.nan, 5.0], np.float32)[: len(docs)]
        return RerankResult(scores[:-1] if self.short else scores, {})


@pytest.mark.parametrize("short", [False, True])
def test_unusable_reranker_scores_degrade_to_retrieval_order(short: bool) -> None:
    stage = BadScores(short)
    pipe = RankingPipeline(FixedEmbedder(), FixedRetriever(), items_table(), stage,  # type: ignore[arg-type]
                           reranker_retry_after_s=60.0)
    ids, summary = run_once(pipe)
    assert ids == [0, 1, 2, 3] and summary.degraded and summary.degraded_reason == "reranker_bad_scores"
    assert summary.candidates_reranked == 0
    # A reranker that answers with unusable scores is skipped while it cools down, as a failed one.
    _, summary = run_once(pipe)
    assert summary.degraded and stage.calls == 1


def test_no_reranker_is_reported() -> None:
    pipe = RankingPipeline(FixedEmbedder(), FixedRetriever(), items_table(), None)
    ids, summary = run_once(pipe)
    assert ids == [0, 1, 2, 3] and summary.degraded_reason == "reranker_not_configured"


def test_a_passed_deadline_stops_the_work() -> None:
    stage = Down()
    pipe = RankingPipeline(FixedEmbedder(), FixedRetriever(), items_table(), stage)  # type: ignore[arg-type]
    with pytest.raises(DeadlineExceeded):
        run_once(pipe, deadline=time.monotonic() - 1.0)
    assert stage.calls == 0


def test_a_filter_the_catalog_cannot_apply_fails_before_any_work() -> None:
    stage = Down()
    pipe = RankingPipeline(FixedEmbedder(), FixedRetriever(), items_table(), stage)  # type: ignore[arg-type]
    with pytest.raises(FilterError):
        run_once(pipe, filters=Filters(category="Sofas"))
    assert stage.calls == 0


def test_reranker_gate_retries_after_cooldown() -> None:
    now = [100.0]
    gate = RerankerGate(retry_after_s=1.0, clock=lambda: now[0])
    assert gate.open()
    gate.failed()
    assert not gate.open()
    now[0] += 1.01
    assert gate.open()
    gate.succeeded()
    assert gate.open()


def personal_pipe() -> RankingPipeline:
    from feedback.profile import ItemColumns
    from pipeline.personalize import Personalizer

    table = items_table()
    columns = ItemColumns.of(table.vectors, ["a", "b", "c", "d"], np.array([1.0, 2.0, 3.0, 4.0]))
    return RankingPipeline(FixedEmbedder(), FixedRetriever(), table, None,
                           personalizer=Personalizer(columns, 0.3))


def test_personal_scores_reorder_and_exploring_lists_are_shuffled_reproducibly() -> None:
    from feedback.events import Event, EventType
    from feedback.profile import ProfileBook
    from pipeline.personalize import Personal

    pipe = personal_pipe()
    book = ProfileBook(pipe.personalizer.items)  # type: ignore[union-attr]
    book.apply([Event("e", "", "u", 1, EventType.PURCHASE, 1, 0)])
    profile = book.get("u")
    below = ProfileBook(pipe.personalizer.items)  # type: ignore[union-attr]
    below.apply([Event("e", "", "u", 3, EventType.PURCHASE, 1, 0)])

    def run(personal: Personal | None) -> tuple[list[RankedItem], RankSummary]:
        async def go() -> list:
            p = RankParams(query="q", k=N, mmr_lambda=1.0, candidates=N)
            return [e async for e in pipe.rank(p, personal=personal)]
        out = asyncio.run(go())
        return out[:-1], out[-1]

    plain, summary = run(None)
    assert [i.item_id for i in plain] == [0, 1, 2, 3] and not summary.personalized
    lifted, summary = run(Personal(profile, 5.0))  # a huge weight: the purchased item goes first
    assert lifted[0].item_id == 1 and summary.personalized and summary.profile_version == 1
    assert [i.rank for i in lifted] == [1, 2, 3, 4]
    # The least relevant item gets no lift, whatever the weight: taste reorders relevant items only
    # (others like it may rise: its price, its class).
    last = run(Personal(below.get("u"), 50.0))[0][-1]
    assert last.item_id == 3 and dict(last.explanation).get("personal", 0.0) == 0.0
    shuffled = [[i.item_id for i in run(Personal(profile, 0.0001, explore_seed=s))[0]] for s in range(8)]
    assert all(sorted(s) == [0, 1, 2, 3] for s in shuffled) and len({tuple(s) for s in shuffled}) > 1
    again = [i.item_id for i in run(Personal(profile, 0.0001, explore_seed=3))[0]]
    assert again == shuffled[3] and run(Personal(profile, 0.0001, explore_seed=3))[1].explored
