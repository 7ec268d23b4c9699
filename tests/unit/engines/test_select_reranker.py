"""The rerank engine factory: one setting picks the engine, and each reports its model version."""

from __future__ import annotations

import asyncio

import pytest

from engines.select_reranker import select_reranker
from engines.torch_rerank import TorchRerankStage
from engines.triton_rerank import TritonRerankStage
from server.config import Settings


def test_torch_engine_scores_in_process(artifacts) -> None:
    settings = Settings(model_dir=artifacts.model, reranker_engine="torch", torch_device="cpu",
                        torch_precision="fp32")
    chosen = select_reranker(settings, None)
    assert isinstance(chosen.stage, TorchRerankStage) and chosen.version.startswith("hf:")
    result = asyncio.run(chosen.stage.rerank("turquoise pillows", ["turquoise velvet pillow", "oak table"]))
    assert result.scores.shape == (2,) and result.scores[0] > result.scores[1]


def test_triton_engine_needs_a_url_and_takes_the_configured_version(artifacts) -> None:
    settings = Settings(model_dir=artifacts.model)
    with pytest.raises(ValueError, match="Triton URL"):
        select_reranker(settings, None)
    chosen = select_reranker(settings, "127.0.0.1:1")  # nothing is contacted until the first request
    assert isinstance(chosen.stage, TritonRerankStage)
    assert chosen.stage.client.url == "127.0.0.1:1" and chosen.stage.client.model == "reranker"
    assert chosen.version == ""  # the server pins the newest loaded version at start
    pinned = select_reranker(Settings(model_dir=artifacts.model, reranker_version="2"), "127.0.0.1:1")
    assert pinned.version == "2"
