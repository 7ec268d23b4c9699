"""GPU reranking in process with PyTorch: the trained cross-encoder on CUDA, FP16/BF16 autocast.

The CPU deployment serves the INT8 ONNX model through Triton. On a GPU host the same trained model (its
HF folder, `engines.model_dir.load_served_model`) runs here behind the same `RerankStage` protocol, so the
pipeline does not change. Autocast keeps softmax, layer norm and the word-MaxSim prior's reductions in
FP32 while the matrix products run on the tensor cores; ``precision="fp32"`` runs everything in FP32.
Requests are right-padded by the tokenizer; each batch is cropped to its longest real row first.
"""

from __future__ import annotations

import threading
from typing import Literal

import numpy as np
import torch

from engines.model_dir import ServedModel
from engines.rerank import InProcessRerankStage, PairEncoder

Precision = Literal["fp32", "fp16", "bf16"]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class TorchReranker:
    """Scores (input_ids, attention_mask) batches with a served model on ``device``."""

    def __init__(self, model: ServedModel, *, device: str = "cuda", precision: Precision = "fp16",
                 max_batch: int = 1024) -> None:
        if precision not in ("fp32", *DTYPES):
            raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
        self.device = torch.device(device)
        self.precision = precision
        self.max_batch = max_batch
        self.model = model.to(self.device).eval()
        # One CUDA stream's worth of work at a time: concurrent requests queue here, not on the GPU.
        self._lock = threading.Lock()

    @torch.inference_mode()
    def score(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """float32 scores (B,) for right-padded int64 arrays."""
        if len(input_ids) == 0:
            return np.zeros(0, np.float32)
        width = int(attention_mask.sum(axis=1).max())
        ids = torch.from_numpy(np.ascontiguousarray(input_ids[:, :width]))
        mask = torch.from_numpy(np.ascontiguousarray(attention_mask[:, :width]))
        out = []
        with self._lock:
            for start in range(0, len(ids), self.max_batch):
                i = ids[start : start + self.max_batch].to(self.device, non_blocking=True)
                m = mask[start : start + self.max_batch].to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=DTYPES.get(self.precision, torch.float32),
                                    enabled=self.precision != "fp32"):
                    out.append(self.model(i, m).float().reshape(-1))
            return torch.cat(out).cpu().numpy()


class TorchRerankStage(InProcessRerankStage):
    """`RerankStage` over a `TorchReranker`; scoring runs in a worker thread."""

    name = "torch reranker"

    def __init__(self, reranker: TorchReranker, tokenizer: PairEncoder) -> None:
        super().__init__(tokenizer)
        self.reranker = reranker

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.reranker.score(ids, mask)

    def _unavailable(self, exc: Exception) -> bool:
        # CUDA failures (out of memory, a lost device) mean "unavailable": degrade, don't crash.
        cuda_error = isinstance(exc, RuntimeError) and "CUDA" in str(exc)
        return isinstance(exc, torch.cuda.OutOfMemoryError) or cuda_error
