"""`rankserve eval`: ranking quality of BM25, retrieval, rerank and the full pipeline on catalog judgments.

Every neural system runs through the `RankingPipeline` that `server.app.load_pipeline` builds for the
server (same embedder, index, item table, tokenizer and Triton-hosted INT8 model); only `RankParams` and
the swappable rerank stage differ:

    bm25         BM25 (bm25s) over name + class + description + features, top 100
    retrieval    the retrieval stage alone (hybrid BM25 + dense RRF, retrieval.hybrid, unless the
                 settings ask for dense only): use_reranker=False, λ=1, k=100
    rerank       retrieval -> cross-encoder (Triton, INT8): λ=1, k=100, candidates=100
    rerank_mmr   the full pipeline at Settings().default_mmr_lambda, k=100 (MMR orders all 100)
    rerank_fp32  as `rerank`, with the FP32 ONNX in-process (OrtRerankStage): INT8 vs FP32 parity

The rerank stage is wrapped in a memo keyed by (query, candidate texts), so `rerank`, `rerank_mmr` and the
λ sweep share one Triton call per query, and the sweep costs only MMR.

Metrics come from ranx, on graded qrels Exact=2, Partial=1 (Irrelevant and unjudged items gain 0):
    ndcg@10      ranx `ndcg_burges@10` (exponential gain 2^rel - 1; ranx's `ndcg@10` is linear)
    mrr@10       ranx `mrr@10-l2`: reciprocal rank of the first Exact item only
    recall@100   ranx `recall@100`: share of the Exact + Partial items in the top 100
    diversity@10 mean pairwise (1 - cosine) of the top 10 items' index vectors (not ranx: no such metric)
    classes@10   distinct product classes in the top 10

Query matching: a row of --queries is scored against catalog query `query_id` when that id exists in the
catalog's query.csv with the same (case/space-normalised) text; otherwise against the catalog row with the
same normalised text and class. A repeated query_id is scored once (first row), as the catalog judges it.
Rows with no catalog match, or whose catalog query has no Exact/Partial label, are skipped and listed in
the report (`skipped_queries`), never scored 0.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from pipeline.pipeline import RankedItem, RankingPipeline, RankParams, RankSummary
from training.splits import normalise_query

SYSTEMS = ("bm25", "retrieval", "rerank", "rerank_mmr")
# Our label -> ranx metric string.
RANX_METRICS = {"ndcg@10": "ndcg_burges@10", "mrr@10": "mrr@10-l2", "recall@100": "recall@100"}
TOP = 10
DEPTH = 100
LAMBDAS = tuple(round(i / 10, 1) for i in range(11))
SIGNIFICANCE_PAIRS = (("rerank_mmr", "bm25"), ("rerank_mmr", "retrieval"), ("rerank", "retrieval"))
SPLITS = ("all", "train", "val", "dev")
Rankings = dict[str, list[int]]  # query key -> item ids, best first


# ------------------------------------------------------------------------------------------ queries


@dataclass(frozen=True)
class EvalQueries:
    queries: pd.DataFrame  # key, query_id (catalog's), query, query_class, split: the rows that are scored
    qrels: dict[str, dict[str, int]]  # key -> {item id: gain > 0}
    skipped: dict[str, list[int]]  # reason -> query_ids of the --queries file

    @property
    def skipped_count(self) -> int:
        return sum(len(v) for v in self.skipped.values())


def match_queries(file_queries: pd.DataFrame, catalog_queries: pd.DataFrame) -> pd.Series:
    """Per file row, the catalog query_id it is scored against (<NA> when none); see the module docstring."""
    by_id: dict[int, str] = {}
    for qid, text in zip(catalog_queries["query_id"], catalog_queries["query"], strict=True):
        by_id.setdefault(int(qid), normalise_query(text))  # a repeated id is judged from its first row
    by_text: dict[tuple[str, str], int] = {}
    cols = ("query_id", "query", "query_class")
    for qid, text, cls in zip(*(catalog_queries[c] for c in cols), strict=True):
        by_text.setdefault((normalise_query(text), normalise_query(cls)), int(qid))
    out = []
    for qid, text, cls in zip(*(file_queries[c] for c in cols), strict=True):
        if by_id.get(int(qid)) == normalise_query(text):
            out.append(int(qid))
        else:
            out.append(by_text.get((normalise_query(text), normalise_query(cls)), pd.NA))
    return pd.Series(out, index=file_queries.index, dtype="Int64")


def graded_qrels(labels: pd.DataFrame, query_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """query_id -> {product id (str): gain} for Exact (2) and Partial (1); Irrelevant is left out (gain 0)."""
    from catalog import LABEL_GAIN

    wanted = labels[labels["query_id"].isin(set(query_ids))]
    gains = wanted["label"].map(LABEL_GAIN).fillna(0).astype(int)
    out: dict[int, dict[str, int]] = {}
    for qid, pid, gain in zip(wanted["query_id"], wanted["product_id"], gains, strict=True):
        if gain > 0:
            docs = out.setdefault(int(qid), {})
            docs[str(int(pid))] = max(int(gain), docs.get(str(int(pid)), 0))
    return out


def select_queries(
    file_queries: pd.DataFrame, catalog_queries: pd.DataFrame, labels: pd.DataFrame, split: str = "all"
) -> EvalQueries:
    """The file's queries in `split` that can be scored, their qrels, and the skipped ones by reason."""
    from training.splits import split_labels

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rows = file_queries.assign(query_class=file_queries["query_class"].fillna(""))
    skipped: dict[str, list[int]] = {}
    dup = rows["query_id"].duplicated(keep="first")
    if dup.any():
        skipped["duplicate_query_id"] = rows.loc[dup, "query_id"].astype(int).tolist()
    rows = rows[~dup].assign(split=split_labels(rows[~dup]))
    if split != "all":
        rows = rows[rows["split"] == split]
    rows = rows.assign(catalog_id=match_queries(rows, catalog_queries))
    missing = rows["catalog_id"].isna()
    if missing.any():
        skipped["not_in_catalog"] = rows.loc[missing, "query_id"].astype(int).tolist()
    rows = rows[~missing]
    qrels_by_id = graded_qrels(labels, rows["catalog_id"].astype(int).tolist())
    judged = rows["catalog_id"].astype(int).isin(set(qrels_by_id))
    if (~judged).any():
        skipped["no_relevant_labels"] = rows.loc[~judged, "query_id"].astype(int).tolist()
    rows = rows[judged]
    # Keyed by the file's query_id: unique after dropping repeats, and what a reader looks up.
    keys = rows["query_id"].astype(int).astype(str).tolist()
    scored = pd.DataFrame({
        "key": keys,
        "query_id": rows["catalog_id"].astype(int).to_numpy(),
        "query": rows["query"].to_numpy(),
        "query_class": rows["query_class"].to_numpy(),
        "split": rows["split"].to_numpy(),
    })
    qrels = {k: qrels_by_id[int(c)] for k, c in zip(keys, scored["query_id"], strict=True)}
    return EvalQueries(scored, qrels, skipped)


# ------------------------------------------------------------------------------------------ metrics


def ranking_from_scores(ids: Sequence[int], scores: Sequence[float]) -> list[int]:
    """Item ids by score, best first; ties keep the input order (a stable sort, never an id order)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [int(ids[i]) for i in order]


def to_run(rankings: Mapping[str, Sequence[int]], name: str = "run"):
    """A ranx Run that keeps each ranking's order exactly.

    ranx re-sorts a run by score, so give strictly decreasing scores by rank: an MMR order is not a
    relevance-score order, and tied scores would be re-ordered by ranx.
    """
    import ranx

    return ranx.Run.from_dict(
        {q: {str(int(i)): float(len(ids) - r) for r, i in enumerate(ids)} for q, ids in rankings.items()},
        name=name,
    )


def relevance_metrics(
    qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[int]]
) -> dict[str, dict[str, float]]:
    """label -> {query key: value} for ndcg@10, mrr@10, recall@100 (ranx); a missing ranking scores 0."""
    import ranx

    keys = list(qrels)
    if not any(rankings.get(k) for k in keys):  # ranx cannot build a run with no item at all
        return {label: dict.fromkeys(keys, 0.0) for label in RANX_METRICS}
    q = ranx.Qrels.from_dict({k: dict(qrels[k]) for k in keys})
    run = to_run({k: list(rankings.get(k, [])) for k in keys})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's uint64 -> int64 cast note, harmless here
        scores = ranx.evaluate(q, run, list(RANX_METRICS.values()), return_mean=False, make_comparable=True)
    order = list(q.keys())
    return {label: dict(zip(order, map(float, scores[m]), strict=True)) for label, m in RANX_METRICS.items()}


def diversity_at_k(ids: Sequence[int], vectors: np.ndarray, k: int = TOP) -> float:
    """Mean pairwise (1 - cosine) over the top-k items; nan with fewer than two items."""
    top = np.asarray(list(ids[:k]), dtype=np.int64)
    if len(top) < 2:
        return math.nan
    v = np.asarray(vectors[top], dtype=np.float64)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    iu = np.triu_indices(len(top), 1)
    return float(np.mean(1.0 - (v @ v.T)[iu]))


def distinct_classes_at_k(ids: Sequence[int], classes: np.ndarray, k: int = TOP) -> int:
    return len({classes[int(i)] for i in ids[:k]})


def system_metrics(
    qrels: Mapping[str, Mapping[str, int]],
    rankings: Mapping[str, Sequence[int]],
    vectors: np.ndarray,
    classes: np.ndarray,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(means, per-query values) of every metric for one system."""
    per_query = relevance_metrics(qrels, rankings)
    per_query["diversity@10"] = {k: diversity_at_k(rankings.get(k, []), vectors) for k in qrels}
    per_query["classes@10"] = {k: float(distinct_classes_at_k(rankings.get(k, []), classes)) for k in qrels}
    means = {label: _nanmean(list(values.values())) for label, values in per_query.items()}
    return means, per_query


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan


def significance(
    qrels: Mapping[str, Mapping[str, int]],
    runs: Mapping[str, Mapping[str, Sequence[int]]],
    pairs: Sequence[tuple[str, str]] = SIGNIFICANCE_PAIRS,
    *,
    permutations: int = 10_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Paired tests on per-query NDCG@10 (ranx.compare): Student's t and Fisher's randomisation."""
    import ranx

    keys = list(qrels)
    q = ranx.Qrels.from_dict({k: dict(qrels[k]) for k in keys})
    names = sorted({n for pair in pairs for n in pair})
    metric = RANX_METRICS["ndcg@10"]
    reports = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for test in ("student", "fisher"):
            rs = [to_run({k: list(runs[n].get(k, [])) for k in keys}, name=n) for n in names]
            reports[test] = ranx.compare(q, rs, [metric], stat_test=test, n_permutations=permutations,
                                         random_seed=seed, make_comparable=True).to_dict()
    out = []
    for a, b in pairs:
        student, fisher = reports["student"], reports["fisher"]
        out.append({
            "a": a, "b": b, "metric": "ndcg@10",
            "a_score": float(student[a]["scores"][metric]), "b_score": float(student[b]["scores"][metric]),
            "p_student": float(student[a]["comparisons"][b][metric]),
            # 0 means no permutation reached the observed difference: p < 1 / permutations.
            "p_randomisation": float(fisher[a]["comparisons"][b][metric]),
            "permutations": permutations,
            "win_tie_loss": student[a]["win_tie_loss"][b][metric],
        })
    return out


# ------------------------------------------------------------------------------------------ ranking


class CachedRerankStage:
    """Memoises a rerank stage by (query, candidate texts): same request, same scores, one model call."""

    def __init__(self, stage: Any) -> None:
        self.stage = stage
        self.calls = 0
        self._cache: dict[tuple[str, tuple[str, ...]], Any] = {}

    async def rerank(self, query: str, docs: Sequence[str], *, timeout_s: float | None = None) -> Any:
        key = (query, tuple(docs))
        result = self._cache.get(key)
        if result is None:
            result = await self.stage.rerank(query, docs, timeout_s=timeout_s)
            self._cache[key] = result
            self.calls += 1
        return result


class RerankerDegraded(RuntimeError):
    """The pipeline fell back to retrieval order: a quality number from that run would be wrong."""


async def rank_ids(pipeline: RankingPipeline, params: RankParams) -> tuple[list[int], RankSummary]:
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
    systems: dict[str, Rankings]
    sweep: dict[float, Rankings]
    triton_calls: int
    seconds: dict[str, float]


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
    cached = CachedRerankStage(served)
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
                   "rerank": await run("rerank", 1.0)}
        # The default λ joins the sweep, so the plot and table always show the served trade-off.
        grid = sorted({*map(float, lambdas), float(default_lambda)})
        sweep = {lam: await run(f"rerank_mmr λ={lam:g}", lam) for lam in grid}
        systems["rerank_mmr"] = sweep[float(default_lambda)]
        triton_calls = cached.calls
        if fp32_stage is not None:
            pipeline.reranker = CachedRerankStage(fp32_stage)
            systems["rerank_fp32"] = await run("rerank_fp32", 1.0)
    finally:
        pipeline.reranker = served
        client = getattr(served, "client", None)
        if client is not None:
            await client.close()  # its gRPC channel belongs to this event loop
    return NeuralRuns(systems, sweep, triton_calls, seconds)


# ------------------------------------------------------------------------------------------ report


def lambda_sweep(
    qrels: Mapping[str, Mapping[str, int]],
    sweep: Mapping[float, Rankings],
    vectors: np.ndarray,
    classes: np.ndarray,
) -> list[dict[str, float]]:
    rows = []
    for lam, rankings in sorted(sweep.items()):
        means, _ = system_metrics(qrels, rankings, vectors, classes)
        rows.append({"lambda": lam, "ndcg@10": means["ndcg@10"], "diversity@10": means["diversity@10"],
                     "mrr@10": means["mrr@10"], "classes@10": means["classes@10"]})
    return rows


def plot_lambda_sweep(sweep: Sequence[Mapping[str, float]], default_lambda: float, path: Path) -> Path:
    """NDCG@10 against diversity@10, one labelled point per λ, the default λ marked."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here or in CI
    import matplotlib.pyplot as plt

    x = [r["diversity@10"] for r in sweep]
    y = [r["ndcg@10"] for r in sweep]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    try:
        ax.plot(x, y, "-o", color="tab:blue", markersize=4, label="MMR λ sweep")
        for r in sweep:
            ax.annotate(f"λ={r['lambda']:g}", (r["diversity@10"], r["ndcg@10"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        default = [r for r in sweep if math.isclose(r["lambda"], default_lambda)]
        if default:
            d = default[0]
            ax.plot([d["diversity@10"]], [d["ndcg@10"]], "*", color="tab:red", markersize=14,
                    label=f"default λ={default_lambda:g}")
        ax.set_xlabel("diversity@10 (mean pairwise 1 − cosine)")
        ax.set_ylabel("NDCG@10 (exponential gain)")
        ax.set_title("Relevance vs diversity over MMR λ (generated catalog)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def target_checks(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's quality targets, each with the measured value and whether it is met."""
    s = report["systems"]
    nd = {name: m["ndcg@10"] for name, m in s.items()}
    p = {(r["a"], r["b"]): r["p_student"] for r in report.get("significance", [])}

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else math.inf

    checks = [
        ("rerank_mmr ndcg@10 / bm25", ratio(nd["rerank_mmr"], nd["bm25"]), ">= 1.3"),
        ("rerank_mmr ndcg@10 / retrieval", ratio(nd["rerank_mmr"], nd["retrieval"]), ">= 1.1"),
        ("rerank - retrieval ndcg@10", nd["rerank"] - nd["retrieval"], "> 0"),
        # A p-value only supports the target when rerank is the better one.
        ("rerank beats retrieval p (paired t-test)",
         p.get(("rerank", "retrieval"), math.nan) if nd["rerank"] > nd["retrieval"] else math.nan, "< 0.01"),
        ("retrieval recall@100", s["retrieval"]["recall@100"], ">= 0.90"),
        ("rerank_mmr diversity@10 gain over rerank",
         ratio(s["rerank_mmr"]["diversity@10"], s["rerank"]["diversity@10"]) - 1.0, ">= 0.15"),
        ("rerank_mmr ndcg@10 drop vs rerank", 1.0 - ratio(nd["rerank_mmr"], nd["rerank"]), "<= 0.02"),
    ]
    fp32 = report.get("rerank_fp32")
    if fp32:
        checks.append(("|int8 - fp32| ndcg@10", abs(nd["rerank"] - fp32["ndcg@10"]), "<= 0.005"))
    out = []
    for name, value, target in checks:
        op, bound = target.split()
        b = float(bound)
        met = {">=": value >= b, "<=": value <= b, "<": value < b, ">": value > b}[op]
        out.append({"name": name, "value": value, "target": target,
                    "met": bool(met and not math.isnan(value))})
    return out


def _clean(obj: Any) -> Any:
    """JSON-safe: nan/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def print_report(report: Mapping[str, Any], console: Console) -> None:
    cols = ("ndcg@10", "mrr@10", "recall@100", "diversity@10", "classes@10")
    title = (f"Ranking quality — {report['queries']} queries, split={report['split']}"
             f"{' (generated catalog)' if report.get('generated_catalog') else ''}")
    table = Table(title=title)
    table.add_column("system")
    for c in cols:
        table.add_column(c, justify="right")
    rows = dict(report["systems"])
    if report.get("rerank_fp32"):
        rows["rerank_fp32"] = report["rerank_fp32"]
    for name, m in rows.items():
        table.add_row(name, *(_fmt(m.get(c)) for c in cols))
    console.print(table)

    sweep = Table(title="MMR λ sweep (rerank_mmr)")
    for c in ("λ", "ndcg@10", "diversity@10", "classes@10"):
        sweep.add_column(c, justify="right")
    for r in report["lambda_sweep"]:
        mark = " *" if math.isclose(r["lambda"], report["default_lambda"]) else ""
        sweep.add_row(f"{r['lambda']:g}{mark}", _fmt(r["ndcg@10"]), _fmt(r["diversity@10"]),
                      _fmt(r["classes@10"]))
    console.print(sweep)

    sig = Table(title="Paired significance, NDCG@10")
    for c in ("a vs b", "Δ", "p (t-test)", "p (randomisation)", "W/T/L"):
        sig.add_column(c, justify="right")
    for r in report["significance"]:
        wtl = r["win_tie_loss"]
        p_rand = r["p_randomisation"]
        p_rand_text = f"<{1 / r['permutations']:.0e}" if p_rand == 0 else f"{p_rand:.2g}"
        sig.add_row(f"{r['a']} vs {r['b']}", f"{r['a_score'] - r['b_score']:+.4f}", f"{r['p_student']:.2g}",
                    p_rand_text, f"{wtl['W']}/{wtl['T']}/{wtl['L']}")
    console.print(sig)

    targets = Table(title="Issue targets")
    for c in ("target", "value", "needed", "met"):
        targets.add_column(c)
    for t in report["targets"]:
        met = "[green]yes[/]" if t["met"] else "[red]no[/]"
        targets.add_row(t["name"], _fmt(t["value"]), t["target"], met)
    console.print(targets)
    skipped = report["skipped_queries"]
    if skipped["count"]:
        console.print(f"skipped {skipped['count']} queries: "
                      + ", ".join(f"{k}={len(v)}" for k, v in skipped["by_reason"].items()))


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------------------ driver


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
) -> dict[str, Any]:
    """Rank every selected query with every system and return the report (see the module docstring)."""
    from catalog import load_catalog
    from catalog.io import read_queries
    from engines.triton.repository import write_model_repository
    from engines.triton.server import TritonServer
    from retrieval.index import META_FILE, build_item_index
    from server.app import load_pipeline
    from server.config import BuildSettings, Settings

    console = console or Console(stderr=True)
    started = time.perf_counter()
    catalog_dir = Path(catalog_dir)
    # Generous reranker timeout: a timed-out call would degrade to retrieval order and void the numbers.
    overrides: dict[str, Any] = {"catalog_dir": catalog_dir, "triton_timeout_s": 60.0}
    if model_dir is not None:
        overrides["model_dir"] = Path(model_dir)
    settings = Settings(**overrides)
    model = Path(settings.model_dir)  # type: ignore[arg-type]
    if not (catalog_dir / "catalog.json").exists():
        raise FileNotFoundError(f"no catalog in {catalog_dir}: run `rankserve catalog build` first")
    if not (model / "model.onnx").exists():
        raise FileNotFoundError(f"no model in {model}: run `rankserve train` first (eval never trains)")
    if not (catalog_dir / META_FILE).exists():
        console.print(f"[bold]Building index[/] {BuildSettings().index_factory} → {catalog_dir}")
        build_item_index(catalog_dir, factory=BuildSettings().index_factory, progress=progress)
    # Refreshed like training.build.ensure_artifacts does: eval measures what the current code serves.
    write_model_repository(model / "model.onnx", settings.triton_repo)

    catalog = load_catalog(catalog_dir)
    selected = select_queries(read_queries(Path(queries_file)), catalog.queries, catalog.labels, split)
    queries = selected.queries
    if queries.empty:
        raise ValueError(f"no scorable query in {queries_file} (split={split}); skipped: {selected.skipped}")
    default_lambda = float(settings.default_mmr_lambda)
    console.print(f"evaluating {len(queries)} queries (split={split}, skipped {selected.skipped_count})")

    seconds: dict[str, float] = {}
    t = time.perf_counter()
    runs: dict[str, Rankings] = {"bm25": bm25_rankings(catalog.products, queries, progress=progress)}
    seconds["bm25"] = round(time.perf_counter() - t, 3)

    fp32_stage = None
    fp32_path = model / "model_fp32.onnx"
    if fp32 and fp32_path.exists():
        from engines.pair_tokenizer import PairTokenizer
        from engines.rerank import OrtRerankStage
        from training.export import ort_session

        fp32_stage = OrtRerankStage(ort_session(fp32_path), PairTokenizer(),
                                    timeout_s=settings.triton_timeout_s)

    triton = TritonServer(settings.triton_repo, metrics_port=None, stop_grace_s=settings.triton_stop_grace_s)
    with triton:
        loaded = load_pipeline(settings, triton.url)
        pipeline = loaded.pipeline
        neural = asyncio.run(neural_rankings(pipeline, queries, default_lambda=default_lambda,
                                             fp32_stage=fp32_stage, progress=progress))
    runs.update(neural.systems)
    seconds.update(neural.seconds)
    vectors, classes = pipeline.items.vectors, np.asarray(pipeline.items.categories)

    qrels = selected.qrels
    systems: dict[str, dict[str, float]] = {}
    per_query_values: dict[str, dict[str, dict[str, float]]] = {}
    for name in (*SYSTEMS, "rerank_fp32"):
        if name in runs:
            systems[name], per_query_values[name] = system_metrics(qrels, runs[name], vectors, classes)
    report: dict[str, Any] = {
        "systems": {name: systems[name] for name in SYSTEMS},
        "lambda_sweep": lambda_sweep(qrels, neural.sweep, vectors, classes),
        "queries": len(queries),
        "generated_catalog": bool(catalog.meta.get("generated", False)),
        "split": split,
        "default_lambda": default_lambda,
        "model": {"dir": str(model.resolve()), "version": pipeline.model_version,
                  "served": "model.onnx (INT8, Triton)"},
        "catalog": {"dir": str(catalog_dir.resolve()), "products": len(catalog.products),
                    "index_version": pipeline.index_version,
                    "retrieval": type(pipeline.index).__name__},
        "queries_file": str(Path(queries_file).resolve()),
        "skipped_queries": {"count": selected.skipped_count,
                            "ids": sorted({i for v in selected.skipped.values() for i in v}),
                            "by_reason": selected.skipped},
        "significance": significance(qrels, runs),
        "metric_definitions": {**{k: f"ranx {v}" for k, v in RANX_METRICS.items()},
                               "diversity@10": "mean pairwise (1 - cosine) of top-10 item index vectors",
                               "classes@10": "distinct product classes in the top 10",
                               "gains": "Exact=2, Partial=1, Irrelevant/unjudged=0"},
        "reranker_calls": {"triton": neural.triton_calls},
        "seconds": {**seconds, "total": round(time.perf_counter() - started, 3)},
    }
    if "rerank_fp32" in systems:
        fp = dict(systems["rerank_fp32"])
        fp["int8_minus_fp32_ndcg@10"] = systems["rerank"]["ndcg@10"] - fp["ndcg@10"]
        report["rerank_fp32"] = fp
    report["targets"] = target_checks(report)
    if per_query:
        report["per_query"] = [
            {"query_id": int(qid), "query": text, "split": sp,
             **{f"{name}.ndcg@10": per_query_values[name]["ndcg@10"][key] for name in per_query_values}}
            for key, qid, text, sp in zip(*(queries[c] for c in ("key", "query_id", "query", "split")),
                                          strict=True)
        ]
    return _clean(report)


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
) -> dict[str, Any]:
    """`rankserve eval`: evaluate, print the tables, write the JSON and the λ plot when asked."""
    console = console or Console(stderr=True)
    report = evaluate(catalog_dir, queries_file, model_dir, split=split, progress=progress, console=console)
    print_report(report, table_console or Console())
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        console.print(f"report → {json_out}")
    if plot_out is not None:
        plot_lambda_sweep(report["lambda_sweep"], report["default_lambda"], Path(plot_out))
        console.print(f"λ plot → {plot_out}")
    return report
