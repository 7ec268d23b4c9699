"""ONNX export, INT8 quantisation and the FP32-vs-INT8 parity gate for the cross-encoder.

Served graph contract (what Triton and `engines.ort_rerank` callers see):
  inputs  ``input_ids`` int64 (batch, seq), ``attention_mask`` int64 (batch, seq) -- both axes dynamic
  output  ``score`` float32 (batch, 1) -- one relevance logit per pair; higher is more relevant.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import nn

from engines.model_dir import ServedModel
from engines.ort_rerank import ort_scores, ort_session
from engines.pair_tokenizer import PairTokenizer
from engines.triton.model import DEFAULT_BUCKET_ROWS, score_bucketed
from training.data import RerankData, judgments
from training.metrics import mean_ndcg, per_query_ndcg

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "score"
MIN_SPEARMAN = 0.99
MAX_NDCG_DROP = 0.005  # |FP32 - INT8| NDCG@10, either way: a gain is noise too, not quality
# ... unless the judged set is too small to tell that from noise: the bound is then this many standard
# errors of the per-query differences (a 40-query set measured INT8 +0.007 to +0.009 with Spearman
# 0.993; on the demo's 308 queries the standard error is ~0.001 and the 0.005 floor binds).
NDCG_DIFF_SE = 2.0
MIN_PARITY_PAIRS = 1000
# The gate's set: val judgments topped up with train ones (all of them on the demo catalog, ~300
# queries). INT8 noise flips near-ties, and on few queries one flip moves mean NDCG@10 by ~0.007: the
# fine-tuned MiniLM's INT8 measured +0.008 vs FP32 on val alone (37 queries), -0.0045 on 98 queries and
# -0.0022 on all 308 (Spearman 0.994-0.996 throughout). The whole set costs ~1-2 min of a build.
PARITY_PAIRS = 20_000


class ParityError(RuntimeError):
    """INT8 model disagrees with FP32 beyond the allowed tolerance; the build must fail."""


class _ScoreColumn(nn.Module):
    """(batch,) scores -> (batch, 1): Triton's batched outputs want a per-item dimension."""

    def __init__(self, model: ServedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask).unsqueeze(1)


def export_onnx(model: ServedModel, path: Path, *, opset: int = 17) -> Path:
    """Export with the TorchScript exporter (stable for BERT) and check it against PyTorch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    tok = model.pair_tokenizer()
    ids, mask = tok.encode("example query", ["a product title", "another, longer product title text"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _ScoreColumn(model),
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                OUTPUT_NAME: {0: "batch"},
            },
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    ids, mask = tok.encode("turquoise pillows", ["turquoise velvet pillow", "oak dining table", "x"])
    got = ort_scores(ort_session(path), ids, mask)
    want = model.score(ids, mask)
    if not np.allclose(got, want, atol=1e-3, rtol=1e-3):
        raise ParityError(f"ONNX FP32 export differs from PyTorch: {got} vs {want}")
    return path


def optimize_fp32(fp32_path: Path, out_path: Path, *, num_heads: int, hidden_size: int) -> Path:
    """ORT's offline BERT fusions (attention, LayerNorm, GELU, embeddings) on the FP32 graph."""
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(
        str(fp32_path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1
    )
    opt.save_model_to_file(str(out_path))
    return Path(out_path)


def quantize_int8(
    fp32_path: Path, int8_path: Path, *, per_channel: bool = True, quantize_embeddings: bool = True
) -> Path:
    """Dynamic INT8 (weights QInt8, activations quantised on the fly) for CPU serving.

    ``quantize_embeddings`` also quantises the Gather of the embedding table (per tensor). Models that
    compare word vectors (maxsim prior, match features) keep it FP32: INT8 vectors moved their cosines
    enough to fail the parity gate (Spearman 0.988 < 0.99).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8_path = Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        # Gather covers the embedding tables (32k x 256 is most of the weights): 4x smaller file,
        # no run-time cost; the parity gate checks it costs no ranking quality.
        op_types_to_quantize=["MatMul", "Attention", *(["Gather"] if quantize_embeddings else [])],
        # Needed when the source is ORT-fused: shape inference can't type com.microsoft op outputs.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return int8_path


@dataclass
class ParityReport:
    pairs: int
    queries: int
    spearman: float
    fp32_ndcg10: float
    int8_ndcg10: float
    ndcg_diff: float  # fp32 - int8
    max_abs_diff: float
    passed: bool
    min_spearman: float = MIN_SPEARMAN
    max_ndcg_drop: float = MAX_NDCG_DROP
    ndcg_diff_se: float = 0.0  # standard error of the per-query FP32 - INT8 differences
    ndcg_tolerance: float = MAX_NDCG_DROP  # the bound applied: max(max_ndcg_drop, NDCG_DIFF_SE * se)


def _per_query_scores(
    score_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    tok: PairTokenizer,
    judged: pd.DataFrame,
    texts: np.ndarray,
) -> np.ndarray:
    """Score each query's judged list as one request, padded like the server pads it."""
    out = np.zeros(len(judged), dtype=np.float32)
    for idx in judged.groupby("query_id", sort=True).indices.values():
        rows = judged.iloc[idx]
        ids, mask = tok.encode(str(rows["query"].iloc[0]), texts[rows["product_id"].to_numpy()].tolist())
        out[idx] = score_fn(ids, mask)
    return out


def check_parity(
    model: ServedModel,
    int8_path: Path,
    judged: pd.DataFrame,
    texts: np.ndarray,
    *,
    report_path: Path | None = None,
    min_pairs: int = MIN_PARITY_PAIRS,
    min_spearman: float = MIN_SPEARMAN,
    max_ndcg_drop: float = MAX_NDCG_DROP,
    bucket_rows: int = DEFAULT_BUCKET_ROWS,
) -> ParityReport:
    """PyTorch FP32 vs ORT INT8 on judged pairs (query_id, query, product_id, rel columns), each query
    scored as one served request (INT8 in the Triton model's length buckets of ``bucket_rows``).

    Raises `ParityError` if Spearman < ``min_spearman``, if INT8 NDCG@10 is more than
    max(``max_ndcg_drop``, `NDCG_DIFF_SE` standard errors of the per-query differences) away from FP32
    (either way), or if fewer than ``min_pairs`` pairs were given. Writes
    ``report_path`` (parity.json) either way.
    """
    if len(judged) < min_pairs:
        raise ParityError(f"parity needs >= {min_pairs} pairs, got {len(judged)}")
    tok = model.pair_tokenizer()
    sess = ort_session(int8_path)
    fp32 = _per_query_scores(model.score, tok, judged, texts)
    # INT8 as Triton serves it: each query one request, scored in the served length buckets (dynamic
    # INT8 scales each call's activations by that call's range, so the buckets are part of the numerics).
    int8 = _per_query_scores(lambda i, m: score_bucketed(sess, i, m, bucket_rows)[:, 0], tok, judged, texts)
    rho = float(spearmanr(fp32, int8).statistic)
    q_fp32, q_int8 = per_query_ndcg(judged, fp32), per_query_ndcg(judged, int8)
    n_fp32, n_int8 = float(np.nanmean(q_fp32)), float(np.nanmean(q_int8))
    diffs = (q_fp32 - q_int8)[~np.isnan(q_fp32)]
    se = float(diffs.std(ddof=1) / np.sqrt(diffs.size)) if diffs.size > 1 else 0.0
    tolerance = max(max_ndcg_drop, NDCG_DIFF_SE * se)
    passed = rho >= min_spearman and abs(n_fp32 - n_int8) <= tolerance
    report = ParityReport(
        pairs=len(judged),
        queries=int(judged["query_id"].nunique()),
        spearman=rho,
        fp32_ndcg10=n_fp32,
        int8_ndcg10=n_int8,
        ndcg_diff=n_fp32 - n_int8,
        max_abs_diff=float(np.abs(fp32 - int8).max()),
        passed=passed,
        min_spearman=min_spearman,
        max_ndcg_drop=max_ndcg_drop,
        ndcg_diff_se=se,
        ndcg_tolerance=tolerance,
    )
    if report_path is not None:
        Path(report_path).write_text(json.dumps(asdict(report), indent=2))
    if not passed:
        raise ParityError(
            f"INT8 parity failed: spearman {rho:.4f} (need >= {min_spearman}), "
            f"ndcg@10 fp32 {n_fp32:.4f} vs int8 {n_int8:.4f} (max |diff| {tolerance:.4f})"
        )
    return report


def time_session(
    sess: ort.InferenceSession, input_ids: np.ndarray, attention_mask: np.ndarray, *, repeats: int = 20
) -> tuple[float, float]:
    """(median, min) milliseconds per call after one warm-up; min is the less load-sensitive one."""
    ort_scores(sess, input_ids, attention_mask)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        ort_scores(sess, input_ids, attention_mask)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000.0), float(np.min(times) * 1000.0)


def speed_report(
    fp32_path: Path, int8_path: Path, input_ids: np.ndarray, attention_mask: np.ndarray, *, threads: int = 2
) -> dict[str, float]:
    """FP32 vs INT8 ORT latency on one batch (e.g. 100 pairs of one query)."""
    fp32, fp32_min = time_session(ort_session(fp32_path, threads), input_ids, attention_mask)
    int8, int8_min = time_session(ort_session(int8_path, threads), input_ids, attention_mask)
    return {
        "batch": int(input_ids.shape[0]),
        "seq": int(input_ids.shape[1]),
        "threads": threads,
        "fp32_ms": fp32,
        "int8_ms": int8,
        "fp32_min_ms": fp32_min,
        "int8_min_ms": int8_min,
        "speedup": fp32_min / int8_min,
    }


def parity_pairs(data: RerankData, min_pairs: int = PARITY_PAIRS) -> pd.DataFrame:
    """Validation judgments for the parity gate, never dev ones.

    Under ``min_pairs`` val pairs, whole train queries (in query_id order) top the set up. That is sound
    for a numerical FP32-vs-INT8 check, which compares two versions of the same model rather than
    estimating quality, and more queries make its NDCG@10 difference less a matter of single near-ties.
    """
    val = judgments(data, "val")
    if len(val) >= min_pairs:
        return val
    train = judgments(data, "train")
    sizes = train.groupby("query_id", sort=True).size()
    need = sizes.index[: int(np.searchsorted(sizes.cumsum().to_numpy(), min_pairs - len(val))) + 1]
    return pd.concat([val, train[train["query_id"].isin(need)]], ignore_index=True)


def export_and_quantize(model: ServedModel, out_dir: Path, *, optimize: bool = False) -> tuple[Path, Path]:
    """Write ``model_fp32.onnx`` and the served INT8 ``model.onnx``; returns both paths.

    The FP32 file is the plain export (portable, e.g. for TensorRT). ``optimize`` quantises ORT's
    offline-fused BERT graph instead of the plain one; off by default because on 2 CPU cores it
    measured slower (fused INT8 ~130 ms vs plain INT8 ~103 ms per 100 pairs): ORT_ENABLE_ALL
    already fuses the plain graph at session load.
    """
    out_dir = Path(out_dir)
    fp32 = export_onnx(model, out_dir / "model_fp32.onnx")
    source = fp32
    if optimize:
        fused = out_dir / "model_fp32_fused.onnx"
        try:
            source = optimize_fp32(
                fp32, fused, num_heads=model.cfg.num_heads, hidden_size=model.cfg.hidden_size
            )
        except Exception as err:  # fusion is an optimisation only; never fail the build on it
            warnings.warn(f"ORT BERT fusion failed, quantising the plain export: {err}", stacklevel=2)
    # Models that compare word vectors keep the embedding table FP32 (see `quantize_int8`).
    embeddings_int8 = model.int8_embeddings
    int8 = quantize_int8(source, out_dir / "model.onnx", quantize_embeddings=embeddings_int8)
    if source != fp32:
        source.unlink(missing_ok=True)
    return fp32, int8


def _quantised(model: ServedModel, data: RerankData, val: pd.DataFrame, out_dir: Path, optimize: bool
               ) -> tuple[Path, Path, ParityReport, bool]:
    """(fp32, int8, parity, fused) of an INT8 export that passed the gate; raises ParityError if none did."""
    report = out_dir / "parity.json"
    fp32, int8 = export_and_quantize(model, out_dir, optimize=optimize)
    try:
        return fp32, int8, check_parity(model, int8, val, data.texts, report_path=report), optimize
    except ParityError:
        if not optimize:
            raise
    # Fused attention occasionally quantises worse; retry from the plain export before failing.
    fp32, int8 = export_and_quantize(model, out_dir, optimize=False)
    return fp32, int8, check_parity(model, int8, val, data.texts, report_path=report), False


def package_reranker(
    model: ServedModel, data: RerankData, out_dir: Path, *, optimize: bool = False, int8: bool = True
) -> dict:
    """Export -> quantise -> parity gate -> speed report for a trained model; returns the report dict.

    ``int8=False`` serves the FP32 export itself (``model.onnx`` is a copy of ``model_fp32.onnx``): no
    quantisation, so no parity gate to pass.
    """
    out_dir = Path(out_dir)
    val = parity_pairs(data)
    parity: ParityReport | None = None
    if int8:
        fp32, served, parity, optimize = _quantised(model, data, val, out_dir, optimize)
    else:
        fp32 = export_onnx(model, out_dir / "model_fp32.onnx")
        served = Path(shutil.copyfile(fp32, out_dir / "model.onnx"))
        (out_dir / "parity.json").unlink(missing_ok=True)
        optimize = False
    # Speed on a serving-shaped request: the first val query against 100 judged items.
    tok = model.pair_tokenizer()
    qid = val["query_id"].iloc[0]
    rows = val[val["query_id"] == qid]
    pids = np.resize(rows["product_id"].to_numpy(), 100)
    ids, mask = tok.encode(str(rows["query"].iloc[0]), data.texts[pids].tolist())
    speed = speed_report(fp32, served, ids, mask)
    # Held-out quality of the served INT8 model (dev queries and classes were never trained on).
    dev = judgments(data, "dev")
    sess = ort_session(served)
    dev_ndcg = (
        mean_ndcg(dev, _per_query_scores(lambda i, m: ort_scores(sess, i, m), tok, dev, data.texts))
        if len(dev)
        else float("nan")
    )
    report = {
        "model": served.name,
        "model_fp32": fp32.name,
        "precision": "int8" if int8 else "fp32",
        "fused": optimize,
        "parity": asdict(parity) if parity else None,
        "speed_100_pairs": speed,
        "dev_ndcg10_served": dev_ndcg,
        "dev_queries": int(dev["query_id"].nunique()),
        "inputs": list(INPUT_NAMES),
        "output": OUTPUT_NAME,
        "output_shape": ["batch", 1],
    }
    (out_dir / "export_report.json").write_text(json.dumps(report, indent=2))
    return report
