"""Build the pipeline the config describes: catalog and index from disk, each stage from its factory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from catalog.io import item_texts, load_catalog
from engines.select_reranker import select_reranker
from pipeline.fuse import select_fusion
from pipeline.pipeline import RankingPipeline
from pipeline.types import ItemTable
from retrieval.embed import WordLlamaEmbedder
from retrieval.index import load_item_index
from retrieval.retrieve import select_retriever
from server.config import Settings


@dataclass(frozen=True)
class Loaded:
    """The pipeline plus what the Info RPC reports about the catalog it serves."""

    pipeline: RankingPipeline
    categories: list[str]
    index_factory: str


def load_pipeline(settings: Settings, triton_url: str | None) -> Loaded:
    """Load catalog, index and stages into a pipeline (blocking: run it off the event loop)."""
    catalog_dir = Path(settings.catalog_dir)  # type: ignore[arg-type]
    catalog = load_catalog(catalog_dir)
    loaded = load_item_index(catalog_dir, ef_search=settings.ef_search, gpu=settings.faiss_gpu)
    products = catalog.products
    items = ItemTable(
        titles=products["product_name"].to_numpy(dtype=object),
        categories=products["product_class"].to_numpy(dtype=object),
        prices=products["price"].to_numpy(dtype="float32"),
        texts=item_texts(products),
        vectors=loaded.vectors,
        filter_columns=loaded.columns,
    )
    reranker = select_reranker(settings, triton_url)
    fusion = select_fusion(Path(settings.model_dir), items.texts, items.categories,  # type: ignore[arg-type]
                           use_head=settings.list_fusion, weight=settings.rerank_retrieval_weight)
    pipeline = RankingPipeline(
        WordLlamaEmbedder(), select_retriever(settings.retrieval, loaded.item_index, products), items,
        reranker.stage, fusion=fusion, reranker_timeout_s=settings.triton_timeout_s,
        reranker_retry_after_s=settings.reranker_retry_after_s, model_version=reranker.version,
        index_version=loaded.version,
    )
    return Loaded(pipeline, sorted(catalog.categories()), str(loaded.meta.get("factory", "")))
