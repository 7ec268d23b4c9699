"""`rankserve eval`: ranking quality of BM25, retrieval, rerank and the full pipeline on catalog judgments.

The driver, step by step: settings and artifacts, the scored queries (queries.py), every system's rankings
(runs.py), their metrics and significance tests (metrics.py), then the report and its outputs (report.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rich.console import Console

from benchmarks.quality.metrics import METRIC_DEFINITIONS, Qrels, lambda_sweep, significance, system_metrics
from benchmarks.quality.queries import SPLITS, EvalQueries, select_queries
from benchmarks.quality.report import json_safe, plot_lambda_sweep, print_report, target_checks
from benchmarks.quality.runs import ABLATIONS, SYSTEMS, NeuralRuns, Rankings, bm25_rankings, neural_rankings
from pipeline.pipeline import RankingPipeline

if TYPE_CHECKING:
    from server.config import Settings

__all__ = ["SPLITS", "evaluate", "run_eval"]  # SPLITS: the CLI validates --split against it

Metrics = dict[str, dict[str, float]]  # system -> metric -> mean
PerQuery = dict[str, dict[str, dict[str, float]]]  # system -> metric -> query key -> value


@dataclass
class Ranked:
    """Every system's rankings, and the pipeline that made the neural ones (readable after Triton stops)."""

    runs: dict[str, Rankings]
    neural: NeuralRuns
    pipeline: RankingPipeline
    seconds: dict[str, float]


def eval_settings(catalog_dir: Path, model_dir: Path | None) -> Settings:
    from server.config import Settings

    # Generous reranker timeout: a timed-out call would degrade to retrieval order and void the numbers.
    # No feedback log: the harness measures the unpersonalised ranking and writes no state.
    overrides: dict[str, Any] = {"catalog_dir": Path(catalog_dir), "triton_timeout_s": 60.0,
                                 "feedback": False}
    if model_dir is not None:
        overrides["model_dir"] = Path(model_dir)
    return Settings(**overrides)


def prepare_artifacts(settings: Settings, *, progress: bool, console: Console) -> None:
    """Check the catalog and model exist, build a missing index, write the Triton repository."""
    from engines.model_dir import write_served_repository
    from retrieval.index import META_FILE, build_item_index
    from server.config import BuildSettings

    catalog_dir, model = Path(settings.catalog_dir), Path(settings.model_dir)  # type: ignore[arg-type]
    if not (catalog_dir / "catalog.json").exists():
        raise FileNotFoundError(f"no catalog in {catalog_dir}: run `rankserve catalog build` first")
    if not (model / "model.onnx").exists():
        raise FileNotFoundError(f"no model in {model}: run `rankserve train` first (eval never trains)")
    if not (catalog_dir / META_FILE).exists():
        factory = BuildSettings().index_factory
        console.print(f"[bold]Building index[/] {factory} → {catalog_dir}")
        build_item_index(catalog_dir, factory=factory, progress=progress)
    # Refreshed like training.build.ensure_artifacts does: eval measures what the current code serves.
    write_served_repository(model, settings.triton_repo)


def fp32_rerank_stage(settings: Settings) -> Any | None:
    """The FP32 ONNX as an in-process rerank stage (INT8 vs FP32 parity), or None without one."""
    fp32_path = Path(settings.model_dir) / "model_fp32.onnx"  # type: ignore[arg-type]
    if not fp32_path.exists():
        return None
    from engines.model_dir import pair_tokenizer_for
    from engines.ort_rerank import OrtRerankStage, ort_session

    return OrtRerankStage(ort_session(fp32_path), pair_tokenizer_for(fp32_path.parent))


def rank_all(
    settings: Settings, products: pd.DataFrame, queries: pd.DataFrame, *, fp32: bool, progress: bool,
    ablation: bool = False,
) -> Ranked:
    """BM25 in-process, then every neural system through one pipeline on a Triton started for it."""
    from engines.triton.server import TritonServer
    from server.wiring import load_pipeline

    t = time.perf_counter()
    runs: dict[str, Rankings] = {"bm25": bm25_rankings(products, queries, progress=progress)}
    seconds = {"bm25": round(time.perf_counter() - t, 3)}
    fp32_stage = fp32_rerank_stage(settings) if fp32 else None
    triton = TritonServer(settings.triton_repo, metrics_port=None, stop_grace_s=settings.triton_stop_grace_s)
    with triton:
        pipeline = load_pipeline(settings, triton.url).pipeline
        neural = asyncio.run(neural_rankings(pipeline, queries, default_lambda=settings.default_mmr_lambda,
                                             fp32_stage=fp32_stage, progress=progress))
    runs.update(neural.systems)
    if ablation:
        from benchmarks.quality.ablation import ablation_rankings

        t = time.perf_counter()
        runs.update(asyncio.run(ablation_rankings(
            pipeline, queries, Path(settings.model_dir), default_lambda=settings.default_mmr_lambda,  # type: ignore[arg-type]
            blend_weight=settings.rerank_retrieval_weight, progress=progress)))
        seconds["ablation"] = round(time.perf_counter() - t, 3)
    return Ranked(runs, neural, pipeline, {**seconds, **neural.seconds})


def score_systems(
    qrels: Qrels, runs: Mapping[str, Rankings], vectors: np.ndarray, classes: np.ndarray
) -> tuple[Metrics, PerQuery]:
    """(means, per-query values) of every metric, per system ranked."""
    means: Metrics = {}
    per_query: PerQuery = {}
    for name in (*SYSTEMS, "rerank_fp32", *ABLATIONS):
        if name in runs:
            means[name], per_query[name] = system_metrics(qrels, runs[name], vectors, classes)
    return means, per_query


def provenance(settings: Settings, catalog: Any, pipeline: RankingPipeline, queries_file: Path,
               selected: EvalQueries) -> dict[str, Any]:
    """What was measured: model, catalog, query file and the queries skipped."""
    return {
        "model": {"dir": str(Path(settings.model_dir).resolve()),  # type: ignore[arg-type]
                  "version": pipeline.model_version, "served": "model.onnx (INT8, Triton)"},
        "catalog": {"dir": str(Path(settings.catalog_dir).resolve()),  # type: ignore[arg-type]
                    "products": len(catalog.products), "index_version": pipeline.index_version,
                    "retrieval": type(pipeline.retriever).__name__},
        "queries_file": str(Path(queries_file).resolve()),
        "skipped_queries": {"count": selected.skipped_count,
                            "ids": sorted({i for v in selected.skipped.values() for i in v}),
                            "by_reason": selected.skipped},
    }


def per_query_rows(queries: pd.DataFrame, per_query: PerQuery) -> list[dict[str, Any]]:
    """One row per scored query with every system's NDCG@10."""
    cols = ("key", "query_id", "query", "split")
    return [
        {"query_id": int(qid), "query": text, "split": sp,
         **{f"{name}.ndcg@10": per_query[name]["ndcg@10"][key] for name in per_query}}
        for key, qid, text, sp in zip(*(queries[c] for c in cols), strict=True)
    ]


def evaluate(
    catalog_dir: Path,
    queries_file: Path,
    model_dir: Path | None = None,
    *,
    split: str = "all",
    fp32: bool = True,
    progress: bool = True,
    console: Console | None = None,
    per_query: bool = True,
    ablation: bool = False,
) -> dict[str, Any]:
    """Rank every selected query with every system and return the report (JSON-safe)."""
    from catalog.io import load_catalog, read_queries

    console = console or Console(stderr=True)
    started = time.perf_counter()
    settings = eval_settings(catalog_dir, model_dir)
    prepare_artifacts(settings, progress=progress, console=console)
    catalog = load_catalog(Path(catalog_dir))
    selected = select_queries(read_queries(Path(queries_file)), catalog.queries, catalog.labels, split)
    queries, qrels = selected.queries, selected.qrels
    if queries.empty:
        raise ValueError(f"no scorable query in {queries_file} (split={split}); skipped: {selected.skipped}")
    console.print(f"evaluating {len(queries)} queries (split={split}, skipped {selected.skipped_count})")

    ranked = rank_all(settings, catalog.products, queries, fp32=fp32, progress=progress, ablation=ablation)
    vectors, classes = ranked.pipeline.items.vectors, np.asarray(ranked.pipeline.items.categories)
    systems, values = score_systems(qrels, ranked.runs, vectors, classes)
    report: dict[str, Any] = {
        "systems": {name: systems[name] for name in SYSTEMS},
        "lambda_sweep": lambda_sweep(qrels, ranked.neural.sweep, vectors, classes),
        "queries": len(queries),
        "generated_catalog": bool(catalog.meta.get("generated", False)),
        "split": split,
        "default_lambda": float(settings.default_mmr_lambda),
        **provenance(settings, catalog, ranked.pipeline, queries_file, selected),
        "significance": significance({name: v["ndcg@10"] for name, v in values.items()}),
        "metric_definitions": METRIC_DEFINITIONS,
        "reranker_calls": {"triton": ranked.neural.triton_calls},
        "seconds": {**ranked.seconds, "total": round(time.perf_counter() - started, 3)},
    }
    if "rerank_fp32" in systems:
        fp = dict(systems["rerank_fp32"])
        fp["int8_minus_fp32_ndcg@10"] = systems["rerank"]["ndcg@10"] - fp["ndcg@10"]
        report["rerank_fp32"] = fp
    if ablation:
        report["ablation"] = {name: systems[name] for name in ABLATIONS}
        served, without = values["served"]["ndcg@10"], values["no_transformer"]["ndcg@10"]
        report["ablation"]["transformer_share_ndcg@10"] = systems["served"]["ndcg@10"] - systems[
            "no_transformer"]["ndcg@10"]
        report["ablation"]["transformer_significance"] = significance(
            {"served": served, "no_transformer": without}, pairs=(("served", "no_transformer"),))
    report["targets"] = target_checks(report)
    if per_query:
        report["per_query"] = per_query_rows(queries, values)
    return json_safe(report)


def run_eval(
    catalog_dir: Path,
    queries_file: Path,
    model_dir: Path | None = None,
    *,
    split: str = "all",
    json_out: Path | None = None,
    plot_out: Path | None = None,
    progress: bool = True,
    console: Console | None = None,
    table_console: Console | None = None,
    ablation: bool = False,
) -> dict[str, Any]:
    """`rankserve eval`: evaluate, print the tables, write the JSON and the λ plot when asked."""
    console = console or Console(stderr=True)
    report = evaluate(catalog_dir, queries_file, model_dir, split=split, progress=progress, console=console,
                      ablation=ablation)
    print_report(report, table_console or Console())
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        console.print(f"report → {json_out}")
    if plot_out is not None:
        plot_lambda_sweep(report["lambda_sweep"], report["default_lambda"], Path(plot_out))
        console.print(f"λ plot → {plot_out}")
    return report
