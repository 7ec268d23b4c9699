"""The fuse stage: the list-fusion head's features on hand-made lists, its file, its place in the pipeline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import numpy as np
import pytest

from engines.rerank import RerankResult
from pipeline.fuse import (
    FEATURES,
    LIST_FEATURES,
    BlendFusion,
    FusionStage,
    ListFusion,
    class_code_matrix,
    list_features,
)
from pipeline.match_features import MATCH_FEATURES
from pipeline.pipeline import RankingPipeline
from pipeline.types import ItemTable, RankedItem, RankParams

F = {name: i for i, name in enumerate(FEATURES)}


def no_match(n: int) -> np.ndarray:
    return np.zeros((n, len(MATCH_FEATURES)), np.float32)


def test_list_features_known_values() -> None:
    rerank = np.array([1.0, 1.0, 0.0, 1.0])
    retrieval = np.array([4.0, 3.0, 2.0, 1.0])
    classes = np.array([7, 7, 3, 7])
    match = np.arange(4 * len(MATCH_FEATURES), dtype=np.float32).reshape(4, -1)
    x = list_features(rerank, retrieval, classes, match)
    assert x.shape == (4, len(FEATURES)) and x.dtype == np.float32
    assert np.array_equal(x[:, len(LIST_FEATURES) :], match)  # per-pair match features ride along
    assert x[:, F["rerank"]] == pytest.approx(rerank)
    assert x[:, F["rerank_minmax"]] == pytest.approx([1, 1, 0, 1])
    assert x[:, F["retrieval_minmax"]] == pytest.approx([1, 2 / 3, 1 / 3, 0])
    assert x[:, F["retrieval_rank"]] == pytest.approx([0, 0.25, 0.5, 0.75])
    assert x[:, F["class_share"]] == pytest.approx([0.75, 0.75, 0.25, 0.75])
    assert x[:, F["class_top20"]] == pytest.approx([0.75, 0.75, 0.25, 0.75])  # the whole list is the top 20
    # Softmax mass per class: class 3's only item scores lowest, so its class holds little mass, and the
    # sharper temperature gives it less.
    for name in ("class_mass_t5", "class_mass_t20"):
        assert x[0, F[name]] + x[2, F[name]] == pytest.approx(1.0)
        assert x[0, F[name]] == x[1, F[name]] == x[3, F[name]] > 0.9
    assert x[2, F["class_mass_t20"]] < x[2, F["class_mass_t5"]]
    # Scores enter through min-max and ranks only, except the raw rerank column.
    shifted = list_features(rerank * 3 + 5, retrieval * 10 - 2, classes + 100, match)
    assert np.delete(shifted, F["rerank"], axis=1) == pytest.approx(np.delete(x, F["rerank"], axis=1))


def test_list_features_edges() -> None:
    assert list_features(np.zeros(0), np.zeros(0), np.zeros(0, int), no_match(0)).shape == (0, len(FEATURES))
    one = list_features(np.array([2.0]), np.array([0.5]), np.array([1]), no_match(1))
    assert one[0, F["class_share"]] == 1.0 and one[0, F["rerank_minmax"]] == 1.0
    with pytest.raises(ValueError, match="list_features"):
        list_features(np.zeros(3), np.zeros(2), np.zeros(3, int), no_match(3))
    with pytest.raises(ValueError, match="list_features"):
        list_features(np.zeros(3), np.zeros(3), np.zeros(3, int), no_match(2))


def test_multi_valued_and_empty_classes() -> None:
    # As in WANDS: "A|B" belongs to both classes, "" to none.
    codes = class_code_matrix(["Sofas", "Sofas|Sectionals", "", "Sectionals", " Sofas | "])
    assert codes.shape == (5, 2)
    assert codes[0, 0] == codes[1, 0] == codes[4, 0] and codes[1, 1] == codes[3, 0] != codes[0, 0]
    assert (codes[2] == -1).all() and codes[0, 1] == codes[4, 1] == -1
    x = list_features(np.array([3.0, 2.0, 1.0, 0.0, 0.5]), np.arange(5.0)[::-1], codes, no_match(5))
    # Sofas: items 0, 1, 4 (3/5); Sectionals: items 1, 3 (2/5). The two-class item takes its larger class;
    # the classless item gets no class evidence at all.
    assert x[:, F["class_share"]] == pytest.approx([0.6, 0.6, 0.0, 0.4, 0.6])
    assert x[2, F["class_mass_t5"]] == 0.0 and x[2, F["class_top20"]] == 0.0
    assert np.isfinite(x).all()
    # One class per item as a column is the same as a flat vector of codes.
    flat = np.array([0, 0, 1, 1, 0])
    assert list_features(np.arange(5.0), np.arange(5.0), flat, no_match(5)) == pytest.approx(
        list_features(np.arange(5.0), np.arange(5.0), flat[:, None], no_match(5)))


def hand_head(feature: str) -> ListFusion:
    """A head whose relevance is one feature, exactly (relu of a non-negative input)."""
    n = len(FEATURES)
    w1 = np.zeros((n, 1), np.float32)
    w1[F[feature], 0] = 1.0
    return ListFusion(np.zeros(n, np.float32), np.ones(n, np.float32), w1, np.zeros(1, np.float32),
                      np.ones(1, np.float32), 0.0)


def test_head_json_roundtrip_and_feature_check(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n, h = len(FEATURES), 5
    head = ListFusion(rng.normal(size=n).astype(np.float32), rng.uniform(0.5, 2, n).astype(np.float32),
                      rng.normal(size=(n, h)).astype(np.float32), rng.normal(size=h).astype(np.float32),
                      rng.normal(size=h).astype(np.float32), 0.3)
    x = list_features(rng.normal(size=50), rng.normal(size=50), rng.integers(0, 4, 50),
                      rng.uniform(size=(50, len(MATCH_FEATURES))))
    loaded = ListFusion.load(head.save(tmp_path / "head.json"))
    assert loaded.score(x) == pytest.approx(head.score(x), abs=1e-6)
    obj = json.loads((tmp_path / "head.json").read_text())
    obj["features"] = obj["features"][::-1]
    with pytest.raises(ValueError, match="features"):
        ListFusion.from_json(obj)


class Embed:
    def embed_query(self, text: str) -> np.ndarray:
        return np.ones(2, np.float32)


class Retrieve:
    def retrieve(self, query, qvec, k, mask=None):
        return np.arange(4)[None, :k], np.linspace(1.0, 0.4, 4, dtype=np.float32)[None, :k]


class Rerank:
    async def rerank(self, query: str, docs: Sequence[str], *, timeout_s: float | None = None,
                     version: str = ""
                     ) -> RerankResult:
        return RerankResult(np.array([3.0, 2.0, 1.0, 0.0], np.float32)[: len(docs)], {"tokenize_ms": 0.0})


def pipeline_order(fusion: ListFusion | None) -> tuple[list[int], dict]:
    texts = [f"item {i}" for i in range(4)]
    items = ItemTable(np.array(texts, object), np.array(["Sofas", "Mugs", "Mugs", "Mugs"], object),
                      np.ones(4, np.float32), texts, np.eye(4, dtype=np.float32))
    stage = BlendFusion(0.0) if fusion is None else FusionStage(fusion, texts, items.categories)
    pipe = RankingPipeline(Embed(), Retrieve(), items, Rerank(), fusion=stage)

    async def run() -> tuple[list[int], dict]:
        out = [e async for e in pipe.rank(RankParams(query="q", k=4, mmr_lambda=1.0, candidates=4))]
        return [e.item_id for e in out if isinstance(e, RankedItem)], out[-1].timings_ms

    return asyncio.run(run())


def test_pipeline_ranks_by_the_head() -> None:
    assert pipeline_order(None)[0] == [0, 1, 2, 3]  # the reranker's order
    # A head that reads only the class share puts the three Mugs (share 0.75) above the Sofa (0.25);
    # within a class, ties keep the retrieval order.
    order, timings = pipeline_order(hand_head("class_share"))
    assert order == [1, 2, 3, 0]
    assert "fusion" in timings
    assert pipeline_order(hand_head("retrieval_rank"))[0] == [3, 2, 1, 0]


def test_a_declined_head_is_decided_and_not_refitted(tmp_path) -> None:
    from pipeline.fuse import FILE_NAME, REPORT_FILE, head_is_decided

    assert not head_is_decided(tmp_path)  # nothing fitted yet
    (tmp_path / REPORT_FILE).write_text(json.dumps({"kept": False, "features": list(FEATURES)}))
    assert head_is_decided(tmp_path)  # fitted, lost to the blend on val: serving blends
    (tmp_path / REPORT_FILE).write_text(json.dumps({"kept": False, "features": ["title_covered"]}))
    assert not head_is_decided(tmp_path)  # declined under other features: fit again
    hand_head("rerank").save(tmp_path / FILE_NAME)
    assert head_is_decided(tmp_path)
