"""The rerank step the pipeline calls: tokenize (query, doc) pairs, score them.

`TritonRerankStage` (Triton over gRPC), `OrtRerankStage` (in-process onnxruntime) and
`engines.torch_rerank.TorchRerankStage` (PyTorch, CUDA) share the `RerankStage` protocol, so the
pipeline can swap Triton/in-process or CPU/GPU without changes.
Both raise `RerankerUnavailable` when scoring fails or times out, so the caller can degrade.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # the stages import their engines' clients only where they are used
    import onnxruntime as ort

    from engines.triton_rerank import TritonRerankerClient


class RerankerUnavailable(RuntimeError):
    """The reranker could not score this request (down, slow, not ready or failing)."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class PairEncoder(Protocol):
    """What engines.pair_tokenizer.PairTokenizer provides."""

    def encode(self, query: str, docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class RerankResult:
    scores: np.ndarray  # float32 (B,), aligned with the docs passed in
    # "tokenize_ms", "infer_ms" always; TritonRerankStage also "triton_ms" (same value: the round trip).
    timings: dict[str, float] = field(default_factory=dict)


class RerankStage(Protocol):
    async def rerank(
        self, query: str, docs: Sequence[str], *, timeout_s: float | None = None
    ) -> RerankResult: ...


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


async def _tokenize_and_score(
    tokenizer: PairEncoder, query: str, docs: Sequence[str],
    score: Callable[[np.ndarray, np.ndarray], Awaitable[np.ndarray]],
) -> RerankResult:
    """The shared shape of every stage: tokenize in the caller's thread, then score; time both."""
    t0 = time.perf_counter()
    # Tokenizing ~100 short docs takes well under a millisecond: not worth a thread hop.
    ids, mask = tokenizer.encode(query, docs)
    tokenize_ms = _ms(t0)
    t1 = time.perf_counter()
    scores = await score(ids, mask) if len(ids) else np.zeros(0, np.float32)
    return RerankResult(scores, {"tokenize_ms": tokenize_ms, "infer_ms": _ms(t1)})


class TritonRerankStage:
    def __init__(self, client: TritonRerankerClient, tokenizer: PairEncoder) -> None:
        self.client = client
        self.tokenizer = tokenizer

    async def rerank(
        self, query: str, docs: Sequence[str], *, timeout_s: float | None = None
    ) -> RerankResult:
        result = await _tokenize_and_score(
            self.tokenizer, query, docs, lambda ids, mask: self.client.score(ids, mask, timeout_s=timeout_s)
        )
        result.timings["triton_ms"] = result.timings["infer_ms"]
        return result


class InProcessRerankStage:
    """Scores in process; the blocking call runs in a worker thread, so the event loop keeps serving.

    Subclasses give `_run` (ids, mask -> scores) and may widen `_unavailable` (which of `_run`'s
    errors mean "the engine is down": degrade rather than fail the request).
    """

    name = "in-process reranker"

    def __init__(self, tokenizer: PairEncoder, timeout_s: float = 2.0) -> None:
        self.tokenizer = tokenizer
        self.timeout_s = timeout_s

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _unavailable(self, exc: Exception) -> bool:
        return False

    async def rerank(
        self, query: str, docs: Sequence[str], *, timeout_s: float | None = None
    ) -> RerankResult:
        timeout = self.timeout_s if timeout_s is None else timeout_s

        async def score(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            try:
                return await asyncio.wait_for(asyncio.to_thread(self._run, ids, mask), timeout)
            except TimeoutError as exc:
                raise RerankerUnavailable(f"{self.name}: timed out after {timeout}s") from exc
            except Exception as exc:
                if self._unavailable(exc):
                    raise RerankerUnavailable(f"{self.name}: {exc}") from exc
                raise

        return await _tokenize_and_score(self.tokenizer, query, docs, score)


class OrtRerankStage(InProcessRerankStage):
    """onnxruntime in process (the eval harness's FP32 reference, tests)."""

    def __init__(self, session: ort.InferenceSession, tokenizer: PairEncoder, timeout_s: float = 2.0) -> None:
        super().__init__(tokenizer, timeout_s)
        self.session = session

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = self.session.run(["score"], {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)
