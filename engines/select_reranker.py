"""The one place that chooses the rerank engine from the config (`Settings.reranker_engine`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engines.model_dir import load_served_model, pair_tokenizer_for
from engines.rerank import RerankStage


class RerankerSettings(Protocol):
    """The fields of `server.config.Settings` the choice reads (engines never import the server)."""

    reranker_engine: str
    model_dir: Path | None
    doc_token_cache: int
    torch_device: str
    torch_precision: str
    triton_model: str
    triton_timeout_s: float
    reranker_version: str

    @property
    def triton_repo(self) -> Path: ...


@dataclass(frozen=True)
class SelectedReranker:
    stage: RerankStage
    # Reported in every Summary: which model ranked it. Triton: the version number (the configured one,
    # or "" until the server pins the newest loaded at start).
    version: str


def select_reranker(settings: RerankerSettings, triton_url: str | None) -> SelectedReranker:
    """``triton``: the INT8 ONNX model on Triton at ``triton_url``; ``torch``: the trained HF model in
    process with PyTorch (FP16 on a GPU host). Each engine's modules are imported only when chosen."""
    model_dir = Path(settings.model_dir)  # type: ignore[arg-type]
    tokenizer = pair_tokenizer_for(model_dir, settings.doc_token_cache)
    if settings.reranker_engine == "torch":
        from engines.torch_rerank import TorchReranker, TorchRerankStage

        reranker = TorchReranker(load_served_model(model_dir), device=settings.torch_device,
                                 precision=settings.torch_precision)  # type: ignore[arg-type]
        version = f"hf:{(model_dir / 'hf' / 'model.safetensors').stat().st_mtime_ns}"
        return SelectedReranker(TorchRerankStage(reranker, tokenizer), version)
    from engines.triton_rerank import TritonRerankerClient, TritonRerankStage

    if triton_url is None:
        raise ValueError("reranker_engine=triton needs a Triton URL")
    client = TritonRerankerClient(triton_url, model=settings.triton_model,
                                  timeout_s=settings.triton_timeout_s)
    return SelectedReranker(TritonRerankStage(client, tokenizer), settings.reranker_version)
