"""The build step: make whatever artifact is missing, in dependency order.

catalog -> index -> reranker (train, export, INT8, parity, list-fusion head) -> Triton repository.
Called by the CLI (`rankserve build`, `serve --demo`, `bench`), never by the server itself.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from catalog import build_catalog
from engines.triton.repository import write_model_repository
from pipeline.fuse import FILE_NAME as FUSION_FILE
from pipeline.fuse import head_is_current
from retrieval.index import META_FILE, build_item_index
from server.config import BuildSettings
from training.export import build_reranker
from training.list_fusion import build_list_fusion
from training.train import load_rerank_data


def ensure_artifacts(
    settings: BuildSettings, *, progress: bool = True, console: Console | None = None
) -> None:
    """Build whatever is missing, in dependency order: catalog → index → reranker → Triton repository."""

    console = console or Console(stderr=True)
    catalog_dir, model_dir = Path(settings.catalog_dir), Path(settings.model_dir)
    if not (catalog_dir / "catalog.json").exists():
        console.print(f"[bold]Building catalog[/] from {settings.queries} → {catalog_dir}")
        build_catalog(settings.queries, catalog_dir, seed=settings.seed, products=settings.products,
                      progress=progress)
    if not (catalog_dir / META_FILE).exists():
        console.print(f"[bold]Building index[/] {settings.index_factory} → {catalog_dir}")
        build_item_index(catalog_dir, factory=settings.index_factory, progress=progress)
    if not (model_dir / "model.onnx").exists():
        console.print(f"[bold]Training reranker[/] ({settings.train_minutes:g} min budget) → {model_dir}")
        build_reranker(catalog_dir, model_dir, minutes=settings.train_minutes, seed=settings.seed,
                       progress=progress)
    if settings.list_fusion and not head_is_current(model_dir / FUSION_FILE):
        # Models built before the list-fusion head (or its current features) existed get one fitted
        # in place (~1 min).
        console.print(f"[bold]Fitting list-fusion head[/] → {model_dir / FUSION_FILE}")
        build_list_fusion(model_dir / "model.onnx", load_rerank_data(catalog_dir), model_dir,
                          progress=progress, seed=settings.seed)
    # Always (re)written: cheap, and a repository written by older code would serve an older model.py.
    write_model_repository(model_dir / "model.onnx", settings.triton_repo,
                           instances=settings.triton_instances)
