"""The build steps: the reranker flow (`build_reranker`) and making whatever artifact is missing.

catalog -> index -> reranker (train, export, INT8, parity, list-fusion head) -> Triton repository.
Called by the CLI (`rankserve build`, `train`, `serve --demo`, `bench`), never by the server itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from catalog.builder import build_catalog
from engines.cross_encoder import load_model
from engines.model_dir import write_served_repository
from pipeline.fuse import FILE_NAME as FUSION_FILE
from pipeline.fuse import head_is_current
from retrieval.index import META_FILE, build_item_index
from server.config import BuildSettings
from training.data import load_rerank_data
from training.export import package_reranker
from training.list_fusion import build_list_fusion
from training.train import TrainConfig, train_to_dir


def build_reranker(
    catalog_dir: Path,
    out_dir: Path,
    *,
    minutes: float = 6.0,
    seed: int = 0,
    progress: bool = True,
    cfg: TrainConfig | None = None,
) -> dict:
    """The `rankserve train` flow: train -> export FP32 -> INT8 -> parity -> list-fusion head -> reports.

    Writes ``out_dir/hf/`` (HF folder), ``model_fp32.onnx``, ``model.onnx`` (INT8, served),
    ``list_fusion.json`` (pipeline.fuse),
    ``train_report.json``, ``parity.json``, ``export_report.json``. Raises `training.export.ParityError`
    on a failed gate.
    """
    out_dir = Path(out_dir)
    data = load_rerank_data(catalog_dir)
    train = train_to_dir(data, out_dir, minutes=minutes, seed=seed, cfg=cfg, progress=progress)
    model = load_model(out_dir / "hf")
    report = package_reranker(model, data, out_dir)
    fusion = build_list_fusion(out_dir / "model.onnx", data, out_dir, progress=progress, seed=seed)
    report["list_fusion"] = {k: v for k, v in fusion.items() if k not in ("history", "train_query_ids")}
    (out_dir / "export_report.json").write_text(json.dumps(report, indent=2, default=str))
    report["train"] = {k: v for k, v in asdict(train).items() if k != "history"}
    report["hf_dir"] = str(out_dir / "hf")
    return report


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
    write_served_repository(model_dir, settings.triton_repo, instances=settings.triton_instances)
