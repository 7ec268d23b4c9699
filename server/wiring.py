"""Build the pipeline the config describes: catalog and index from disk, each stage from its factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from catalog.io import CATALOG_FILES, ArtifactError, item_texts, load_catalog, reading
from engines.model_dir import served_files, version_dir
from engines.select_reranker import select_reranker
from engines.triton.repository import MODEL_INFO_FILE, read_model_info
from feedback.events import AppendResult
from feedback.hub import FeedbackHub, open_hub
from feedback.policy import Policy
from feedback.profile import ItemColumns
from pipeline.fuse import Fuser, select_fusion
from pipeline.personalize import Personalizer
from pipeline.pipeline import RankingPipeline
from pipeline.types import ItemTable
from retrieval.embed import WordLlamaEmbedder
from retrieval.index import FILTERS_FILE, INDEX_FILE, META_FILE, VECTORS_FILE, load_item_index
from retrieval.retrieve import select_retriever
from server.config import Settings


@dataclass(frozen=True)
class Loaded:
    """The pipeline plus what the Info RPC reports about the catalog it serves."""

    pipeline: RankingPipeline
    categories: list[str]
    index_factory: str
    feedback: FeedbackHub | None = None  # None: feedback is off (Settings.feedback)
    version_shas: dict[str, str] = field(default_factory=dict)  # model version -> ONNX sha256


def missing_artifacts(settings: Settings) -> list[Path]:
    """The files serving reads that are not there (serving without building must not start without
    them): catalog, index, and what the configured reranker engine loads."""
    catalog_dir = Path(settings.catalog_dir)  # type: ignore[arg-type]
    needed = [catalog_dir / f for f in (*CATALOG_FILES, META_FILE, INDEX_FILE, VECTORS_FILE, FILTERS_FILE)]
    repo = settings.triton_repo if settings.triton_url is None else None  # we start Triton on it
    needed += served_files(Path(settings.model_dir), engine=settings.reranker_engine,  # type: ignore[arg-type]
                           triton_model=settings.triton_model, repo=repo)
    return [f for f in needed if not f.is_file()]


def load_pipeline(settings: Settings, triton_url: str | None, *,
                  on_commit: Callable[[AppendResult, float], None] | None = None) -> Loaded:
    """Load catalog, index and stages into a pipeline, and the feedback log with the profiles it
    rebuilds (blocking: run it off the event loop)."""
    catalog_dir = Path(settings.catalog_dir)  # type: ignore[arg-type]
    catalog = load_catalog(catalog_dir)
    loaded = load_item_index(catalog_dir, ef_search=settings.ef_search, gpu=settings.faiss_gpu)
    products = catalog.products
    if len(products) != len(loaded.vectors):  # every item id must name the same product in both
        raise ArtifactError(f"{catalog_dir / 'product.csv'}: {len(products)} products, but the index "
                            f"beside it holds {len(loaded.vectors)}: a truncated catalog, or an index built "
                            "from another one (`rankserve build` rebuilds it)")
    items = ItemTable(
        titles=products["product_name"].to_numpy(dtype=object),
        categories=products["product_class"].to_numpy(dtype=object),
        prices=products["price"].to_numpy(dtype="float32"),
        texts=item_texts(products),
        vectors=loaded.vectors,
        filter_columns=loaded.columns,
    )
    reranker = select_reranker(settings, triton_url)
    model_dir = Path(settings.model_dir)  # type: ignore[arg-type]

    fusions: dict[Path, Fuser] = {}  # one per directory: versions "" and "1" share the model's own

    def fusion_for(version: str) -> Fuser:
        where = version_dir(model_dir, version)
        if where not in fusions:
            fusions[where] = select_fusion(where, items.texts, items.categories,
                                           use_head=settings.list_fusion,
                                           weight=settings.rerank_retrieval_weight)
        return fusions[where]

    columns = ItemColumns.of(items.vectors, items.categories, items.prices, products["product_features"])
    pipeline = RankingPipeline(
        WordLlamaEmbedder(), select_retriever(settings.retrieval, loaded.item_index, products), items,
        reranker.stage, fusion=fusion_for(reranker.version), fusion_for=fusion_for,
        personalizer=Personalizer(columns, settings.personal_weight),
        reranker_timeout_s=settings.triton_timeout_s,
        reranker_retry_after_s=settings.reranker_retry_after_s, model_version=reranker.version,
        index_version=loaded.version,
    )
    versions: dict = {}
    if settings.reranker_engine == "triton":
        with reading(settings.triton_repo / MODEL_INFO_FILE):
            versions = read_model_info(settings.triton_repo, settings.triton_model).get("versions", {})
    # Last: the log holds a lock and threads, and nothing after it may fail and leave them open.
    hub = None
    if settings.feedback:
        policy = Policy(bandit=settings.bandit and settings.personal_weight > 0,
                        fixed_weight=settings.personal_weight, explore_share=settings.explore_share)
        hub = open_hub(Path(settings.state_dir), columns, policy=policy,  # type: ignore[arg-type]
                       sync=settings.feedback_sync, dsn=settings.feedback_dsn,
                       half_life_s=settings.profile_half_life_s, max_user_events=settings.profile_max_events,
                       capacity=settings.profile_cache_users, on_commit=on_commit)
    return Loaded(pipeline, loaded.columns.categories(), str(loaded.meta.get("factory", "")), hub,
                  {v: str(e.get("onnx_sha256", "")) for v, e in versions.items()})
