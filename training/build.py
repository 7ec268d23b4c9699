"""The build steps: the reranker flow (`build_reranker`) and making whatever artifact is missing.

catalog -> index -> reranker (fine-tune, export, INT8, parity, list-fusion head) -> Triton repository.
Called by the CLI (`rankserve build`, `train`, `serve --demo`, `bench`), never by the server itself.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from rich.console import Console

from catalog.builder import build_catalog
from engines.hf_cross_encoder import load_hf_cross_encoder
from engines.model_dir import write_served_repository
from pipeline.fuse import FILE_NAME as FUSION_FILE
from pipeline.fuse import head_is_decided
from retrieval.index import META_FILE, build_item_index
from server.config import BuildSettings
from training.base_model import default_base_model
from training.data import RerankData, load_rerank_data
from training.export import package_reranker
from training.finetune import FinetuneConfig, finetune_inputs, torch_threads
from training.list_fusion import build_list_fusion
from training.soup import finetune_soup
from training.splits import held_out_class_mask, split_labels


def partial_dir(model_dir: Path) -> Path:
    """Where a build of ``model_dir`` is written until it passes every gate (then renamed into place)."""
    return model_dir.with_name(model_dir.name + ".partial")


def build_reranker(
    catalog_dir: Path,
    out_dir: Path,
    *,
    base_model: Path | None = None,
    seed: int = 0,
    progress: bool = True,
    cfg: FinetuneConfig | None = None,
) -> dict:
    """The `rankserve train` flow: fine-tune -> export FP32 -> INT8 -> parity -> list-fusion head.

    The fine-tune leaves out the train queries of ``cfg.head_holdout_classes`` of the classes
    (`holdout_for_head`); the head is fitted on all train lists, those included.

    ``base_model``: any local Hugging Face BERT-family checkpoint (default: the pinned all-MiniLM-L6-v2,
    `training.base_model`). Writes ``out_dir/hf/`` (HF folder), ``model_fp32.onnx``, ``model.onnx``
    (INT8, served), ``list_fusion.json`` (pipeline.fuse), ``train_report.json``, ``parity.json``,
    ``export_report.json``. Raises `training.export.ParityError` on a failed gate.
    """
    out_dir = Path(out_dir)
    cfg = cfg or FinetuneConfig()
    base = Path(base_model) if base_model is not None else default_base_model()
    final, out_dir = out_dir, partial_dir(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)  # a failed earlier build's leftovers
    out_dir.mkdir(parents=True)
    # The build's torch work on a fixed thread count (the fine-tune's, FinetuneConfig.threads); the
    # process's own count is back afterwards (`serve --demo` builds, then may serve with torch).
    with torch_threads(cfg.threads if cfg.device == "cpu" else None):
        data = load_rerank_data(catalog_dir)
        tuned_on, held_out = holdout_for_head(data, cfg.head_holdout_classes)
        # No pseudo-query of the head's held-out classes: its lists of them stay out of fold (with them,
        # served val fell 0.018 and the transformer's share turned negative: docs/quality.md, session 15).
        queries = data.queries
        head_classes = frozenset(queries[queries["query_id"].isin(held_out)]["query_class"].astype(str))
        inputs = finetune_inputs(tuned_on, cfg, seed=seed, progress=progress,
                                 exclude_texts=set(queries["query"].astype(str)),  # every split's
                                 pseudo_skip=head_classes)
        model, train = finetune_soup(base, inputs, cfg, seed=seed, progress=progress)
        model.save(out_dir / "hf")
        report_json = json.loads(train.to_json()) | {"head_holdout_query_ids": held_out}
        (out_dir / "train_report.json").write_text(json.dumps(report_json, indent=2))
        # Serve exactly what was written.
        report = package_reranker(load_hf_cross_encoder(out_dir / "hf"), data, out_dir)
        fusion = build_list_fusion(out_dir / "model.onnx", data, out_dir, progress=progress, seed=seed)
        report["list_fusion"] = {k: v for k, v in fusion.items() if k not in ("history", "train_query_ids")}
        (out_dir / "export_report.json").write_text(json.dumps(report, indent=2, default=str))
        report["train"] = {k: v for k, v in asdict(train).items() if k != "history"}
        report["augment"] = inputs.augment
        report["hf_dir"] = str(final / "hf")
    _publish(out_dir, final)
    return report


def holdout_for_head(data: RerankData, share: float) -> tuple[RerankData, list[int]]:
    """The fine-tune's data without the train queries of a ``share`` of classes, and those queries' ids.

    The list-fusion head is then fitted on every train list (`build_list_fusion` reads ``data``, not
    this): the held-out classes' lists are out-of-fold. Nothing is held out when it would leave the
    fine-tune without train queries (a tiny catalog).
    """
    mask = held_out_class_mask(data.queries, share) if share > 0 else np.zeros(len(data.queries), bool)
    tuned = split_labels(data.queries[~mask]) == "train"
    if not mask.any() or not tuned.any():
        return data, []
    return replace(data, queries=data.queries[~mask]), sorted(int(q) for q in data.queries[mask].query_id)


def _publish(partial: Path, final: Path) -> None:
    """Move a finished build into place. Until then nothing is at ``final``: a build that fails (a parity
    gate, a crash) never leaves a ``model.onnx`` that a later start would serve."""
    final.mkdir(parents=True, exist_ok=True)
    for entry in partial.iterdir():
        target = final / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    partial.rmdir()


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
        cfg = FinetuneConfig(steps=settings.train_steps, soup=settings.train_soup,
                             wise_alpha=settings.train_wise_alpha)
        runs = f" x {cfg.soup} seeds, averaged" if cfg.soup > 1 else ""
        runs += f", WiSE-FT alpha {cfg.wise_alpha}" if cfg.wise_alpha < 1 else ""
        console.print(f"[bold]Fine-tuning reranker[/] ({cfg.steps} steps{runs}) → {model_dir}")
        build_reranker(catalog_dir, model_dir, base_model=settings.base_model, seed=settings.seed,
                       progress=progress, cfg=cfg)
    if settings.list_fusion and not head_is_decided(model_dir):
        # Models built before the list-fusion head (or its current features) existed get one fitted
        # in place (~1 min).
        console.print(f"[bold]Fitting list-fusion head[/] → {model_dir / FUSION_FILE}")
        build_list_fusion(model_dir / "model.onnx", load_rerank_data(catalog_dir), model_dir,
                          progress=progress, seed=settings.seed)
    # Always (re)written: cheap, and a repository written by older code would serve an older model.py.
    write_served_repository(model_dir, settings.triton_repo, instances=settings.triton_instances)
