"""The rerank stage: one abstract class that every engine implements.

`rerank(query, docs)` tokenizes the (query, doc) pairs in the caller's thread and hands the token ids
to the engine's `score`; the pipeline calls nothing else. Engines, one file each:
`engines.triton_rerank` (Triton over gRPC), `engines.ort_rerank` (ONNX Runtime in process) and
`engines.torch_rerank` (PyTorch, e.g. FP16 on CUDA); `engines.select_reranker` picks one from the config.

An engine raises `RerankerUnavailable` when it cannot score (down, not ready, out of device memory), so
the pipeline degrades to retrieval order instead of failing the request. The request deadline belongs to
the pipeline: `timeout_s` is what is left of it, passed on as the engine's transport deadline.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


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
    # "tokenize_ms", "infer_ms" always; the Triton engine also "triton_ms" (same value: the round trip).
    timings: dict[str, float] = field(default_factory=dict)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


class RerankStage(ABC):
    """Tokenize, then score with the engine; both timed."""

    name = "reranker"

    def __init__(self, tokenizer: PairEncoder) -> None:
        self.tokenizer = tokenizer

    async def rerank(
        self, query: str, docs: Sequence[str], *, timeout_s: float | None = None, version: str = ""
    ) -> RerankResult:
        t0 = time.perf_counter()
        # Tokenizing ~100 short docs takes well under a millisecond: not worth a thread hop.
        ids, mask = self.tokenizer.encode(query, docs)
        tokenize_ms = _ms(t0)
        t1 = time.perf_counter()
        scores = await self.score(ids, mask, timeout_s, version) if len(ids) else np.zeros(0, np.float32)
        return RerankResult(scores, {"tokenize_ms": tokenize_ms, "infer_ms": _ms(t1)})

    @abstractmethod
    async def score(self, ids: np.ndarray, mask: np.ndarray, timeout_s: float | None,
                    version: str = "") -> np.ndarray:
        """float32 (B,) scores of right-padded int64 (B, L) pairs by model ``version`` ("": the engine's
        default; only Triton holds several); RerankerUnavailable when down."""

    async def versions(self) -> dict[str, str]:
        """Every model version the engine knows, with its state; {} for one model in process."""
        return {}

    async def close(self) -> None:  # noqa: B027 - optional hook: most engines hold no connection
        """Release connections bound to the event loop that used them."""


class InProcessRerankStage(RerankStage):
    """An engine that scores in this process: the blocking `_run` goes to a worker thread, so the event
    loop keeps serving other streams meanwhile."""

    @abstractmethod
    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray: ...

    def _unavailable(self, exc: Exception) -> bool:
        """Which of `_run`'s errors mean "the engine is down" (degrade) rather than a bug (surface)."""
        return False

    async def score(self, ids: np.ndarray, mask: np.ndarray, timeout_s: float | None,
                    version: str = "") -> np.ndarray:
        try:  # one model in process: the server lets no arm name another version (server.service)
            return await asyncio.to_thread(self._run, ids, mask)
        except Exception as exc:
            if self._unavailable(exc):
                raise RerankerUnavailable(f"{self.name}: {exc}") from exc
            raise
