"""The Triton client's batching: a candidate batch past the model's limit goes out in chunks, and one
failed chunk fails the call at once, cancelling the chunks still in flight."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from engines.rerank import RerankerUnavailable
from engines.triton_rerank import TritonRerankerClient


class _Chunks(TritonRerankerClient):
    """A client whose chunk with ``fail_at`` first fails at once and whose other chunks take 5 s
    (a server that refuses one request while still computing the rest)."""

    def __init__(self, fail_at: int | None) -> None:
        super().__init__("127.0.0.1:1", max_batch_size=2)
        self.fail_at = fail_at
        self.cancelled: list[int] = []

    async def _infer(self, ids: np.ndarray, mask: np.ndarray, timeout: float, version: str) -> np.ndarray:
        if int(ids[0, 0]) == self.fail_at:
            raise InferenceServerException("model is not ready", "StatusCode.UNAVAILABLE")
        try:
            await asyncio.sleep(0 if self.fail_at is None else 5)
        except asyncio.CancelledError:
            self.cancelled.append(int(ids[0, 0]))
            raise
        return ids[:, 0].astype(np.float32)


def test_chunks_are_scored_in_order() -> None:
    ids = np.arange(5, dtype=np.int64)[:, None].repeat(3, axis=1)
    scores = asyncio.run(_Chunks(None).score(ids, np.ones_like(ids)))
    assert scores.tolist() == [0, 1, 2, 3, 4]


def test_one_failed_chunk_cancels_the_rest() -> None:
    ids = np.arange(6, dtype=np.int64)[:, None].repeat(3, axis=1)
    client = _Chunks(fail_at=2)

    async def serve_one_request() -> list[int]:
        # The server's loop lives on after the request; asyncio.run would cancel leftovers itself.
        with pytest.raises(RerankerUnavailable, match="not ready"):
            await client.score(ids, np.ones_like(ids))
        await asyncio.sleep(0.1)
        return sorted(client.cancelled)

    t0 = time.perf_counter()
    assert asyncio.run(serve_one_request()) == [0, 4]  # the chunks starting at rows 0 and 4
    assert time.perf_counter() - t0 < 4  # not left to run their 5 s
