"""ONNX Runtime in process: the rerank engine of the quality harness's FP32 reference and of the tests,
and the CPU session every in-process ORT user opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from engines.rerank import InProcessRerankStage, PairEncoder


def ort_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """CPU session, all graph optimisations; ``threads`` caps intra-op threads (None: ORT default)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def ort_scores(sess: ort.InferenceSession, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """float32 (B,) scores of the served graph (output ``score``, shape (B, 1))."""
    out = sess.run(["score"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]
    return np.asarray(out, dtype=np.float32)[:, 0]


class OrtRerankStage(InProcessRerankStage):
    name = "onnxruntime reranker"

    def __init__(self, session: ort.InferenceSession, tokenizer: PairEncoder) -> None:
        super().__init__(tokenizer)
        self.session = session

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return ort_scores(self.session, ids, mask)
