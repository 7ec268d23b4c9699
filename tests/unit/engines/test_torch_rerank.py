"""The PyTorch rerank stage (the GPU path) on this machine's CPU: same scores as the exported model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from engines.model_dir import load_served_model, pair_tokenizer_for
from engines.ort_rerank import ort_scores, ort_session
from engines.torch_rerank import TorchReranker, TorchRerankStage
from tests.conftest import Artifacts
from training.data import load_rerank_data


@pytest.fixture(scope="module")
def pairs(artifacts: Artifacts) -> tuple[str, list[str], np.ndarray, np.ndarray]:
    data = load_rerank_data(artifacts.catalog)
    query = str(data.queries["query"].iloc[0])
    docs = data.texts[:150].tolist()
    ids, mask = pair_tokenizer_for(artifacts.model).encode(query, docs)
    return query, docs, ids, mask


def test_fp32_matches_the_exported_model(artifacts: Artifacts, pairs) -> None:
    _, _, ids, mask = pairs
    reranker = TorchReranker(load_served_model(artifacts.model), device="cpu", precision="fp32", max_batch=64)
    got = reranker.score(ids, mask)
    want = ort_scores(ort_session(artifacts.model / "model_fp32.onnx"), ids, mask)
    assert got.shape == (len(ids),) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-3
    # Extra padding columns are cropped before the model runs: the scores cannot depend on them.
    padded_ids = np.pad(ids, ((0, 0), (0, 7)), constant_values=int(ids[0, -1]))
    assert reranker.score(padded_ids, np.pad(mask, ((0, 0), (0, 7)))) == pytest.approx(got, abs=1e-5)
    assert reranker.score(ids[:0], mask[:0]).shape == (0,)


def test_bf16_autocast_keeps_the_order(artifacts: Artifacts, pairs) -> None:
    _, _, ids, mask = pairs
    model = load_served_model(artifacts.model)
    fp32 = TorchReranker(model, device="cpu", precision="fp32").score(ids, mask)
    bf16 = TorchReranker(model, device="cpu", precision="bf16").score(ids, mask)
    assert spearmanr(fp32, bf16).statistic > 0.95
    with pytest.raises(ValueError, match="precision"):
        TorchReranker(model, device="cpu", precision="int4")  # type: ignore[arg-type]


def test_stage_scores_a_request(artifacts: Artifacts, pairs) -> None:
    query, docs, ids, mask = pairs
    reranker = TorchReranker(load_served_model(artifacts.model), device="cpu", precision="fp32")
    stage = TorchRerankStage(reranker, pair_tokenizer_for(artifacts.model))
    result = asyncio.run(stage.rerank(query, docs))
    assert result.scores == pytest.approx(reranker.score(ids, mask), abs=1e-5)
    assert {"tokenize_ms", "infer_ms"} <= set(result.timings)
    assert asyncio.run(stage.rerank(query, [])).scores.shape == (0,)


def test_gpu_harness_runs_on_cpu(artifacts: Artifacts, tmp_path) -> None:
    # benchmarks/gpu_rerank.py is run on the lent GPU; its CPU run keeps it from rotting.
    from benchmarks.gpu_rerank import prepare, run

    pairs = prepare(artifacts.catalog, artifacts.model, tmp_path / "pairs.npz", queries=3)
    report = run(pairs, artifacts.model, seconds=0.2, device="cpu", precisions=("fp32",))
    entry = report["precisions"]["fp32"]
    assert report["requests"] == 3 and report["pairs_per_request"] > 10
    assert entry["max_abs_diff"] < 1e-3 and entry["top10_overlap_mean"] >= 0.7
    assert entry["request_pairs_s"] > 0 and entry["batch1000_pairs_s"] > 0
    assert report["cpu_eager_fp32_pairs_s"] > 0


class Failing:
    """A reranker whose device fails the way CUDA does (no GPU here to fail for real)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def score(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise self.exc


def test_device_failures_degrade_and_bugs_surface(artifacts: Artifacts, pairs) -> None:
    from engines.rerank import RerankerUnavailable

    query, docs, _, _ = pairs
    for exc in (RuntimeError("CUDA error: an illegal memory access was encountered"),
                torch.cuda.OutOfMemoryError("CUDA out of memory")):
        stage = TorchRerankStage(Failing(exc), pair_tokenizer_for(artifacts.model))  # type: ignore[arg-type]
        with pytest.raises(RerankerUnavailable, match="torch reranker"):
            asyncio.run(stage.rerank(query, docs))
    bug = Failing(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    stage = TorchRerankStage(bug, pair_tokenizer_for(artifacts.model))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="shapes"):
        asyncio.run(stage.rerank(query, docs))
