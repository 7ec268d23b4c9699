"""`rankserve model import`: a Hugging Face BERT checkpoint (all-MiniLM-L6-v2 from its pinned package, with a
fresh classification head) packaged without training, served by Triton and by the real server.

Served in FP32: a fresh random head scores pairs within ~0.03 of each other, close enough for INT8 noise
to reorder them (measured Spearman 0.983-0.990 against FP32), so the INT8 parity gate rightly refuses it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from engines.hf_cross_encoder import load_hf_cross_encoder
from engines.model_dir import is_in_house, pair_tokenizer_for
from engines.ort_rerank import OrtRerankStage, ort_session
from engines.triton.repository import read_config, read_model_info
from engines.triton.server import TritonServer
from engines.triton_rerank import TritonRerankerClient, TritonRerankStage
from protos.ranking.v1 import ranking_pb2
from tests.conftest import Artifacts
from tests.e2e.test_server import rank, start_server, stop_server

QUERY = "turquoise velvet pillows"


def test_import_writes_the_served_form(imported: Path) -> None:
    assert not is_in_house(imported)
    for name in ("hf/model.safetensors", "hf/tokenizer.json", "model_fp32.onnx", "model.onnx"):
        assert (imported / name).exists(), name
    report = json.loads((imported / "export_report.json").read_text())
    assert report["precision"] == "fp32" and report["parity"] is None
    assert (imported / "model.onnx").read_bytes() == (imported / "model_fp32.onnx").read_bytes()
    config = read_config(imported / "triton" / "reranker" / "config.pbtxt")
    assert config.parameters["pad_token_id"].string_value == "0"  # BERT's [PAD], not WordLlama's </s>
    assert read_model_info(imported / "triton")["version"] == config.parameters["model_version"].string_value


def test_triton_serves_it_with_pytorch_scores(artifacts: Artifacts, imported: Path, tmp_path: Path) -> None:
    from catalog.io import item_texts, load_catalog

    texts = item_texts(load_catalog(artifacts.catalog).products)[:60]
    tokenizer = pair_tokenizer_for(imported)
    torch_scores = load_hf_cross_encoder(imported / "hf").score(*tokenizer.encode(QUERY, texts))

    async def served() -> tuple[np.ndarray, np.ndarray]:
        client = TritonRerankerClient(triton.url, timeout_s=30.0)
        try:
            triton_scores = (await TritonRerankStage(client, tokenizer).rerank(QUERY, texts)).scores
        finally:
            await client.close()
        local = OrtRerankStage(ort_session(imported / "model.onnx"), tokenizer)  # in process, same graph
        return triton_scores, (await local.rerank(QUERY, texts)).scores

    with TritonServer(imported / "triton", runtime_dir=tmp_path / "rt", metrics_port=None) as triton:
        triton_scores, onnx_scores = asyncio.run(served())
    np.testing.assert_allclose(triton_scores, onnx_scores, rtol=1e-5, atol=1e-5)  # Triton adds nothing
    np.testing.assert_allclose(triton_scores, torch_scores, rtol=1e-4, atol=1e-5)  # the ONNX is the model
    assert spearmanr(triton_scores, torch_scores).statistic > 0.999


def test_the_server_ranks_with_the_imported_model(
    artifacts: Artifacts, imported: Path, tmp_path: Path
) -> None:
    served = Artifacts(queries=artifacts.queries, catalog=artifacts.catalog, model=imported)
    running = start_server(served, tmp_path, RANKSERVE_LIST_FUSION="false")
    try:
        _, items, summary = rank(running.stub, QUERY, k=10)
        info = running.stub.Info(ranking_pb2.InfoRequest(), timeout=10)
    finally:
        assert stop_server(running) == 0, running.log_tail()
    assert not summary.degraded and summary.candidates_reranked > 0
    assert summary.model_version == info.model_version == "1"  # the repository's one version
    [version] = info.model_versions
    assert (version.version, version.state, version.is_default) == ("1", "READY", True)
    assert version.sha256 == read_model_info(imported / "triton")["onnx_sha256"]
    assert len({round(i.rerank_score, 6) for i in items}) == len(items)  # a BERT logit separates items
