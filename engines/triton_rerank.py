"""The Triton rerank engine: an async gRPC client for the `reranker` model, and the stage over it.

Every transport/server failure (connection refused, deadline, model not ready/unloaded, server-side
errors) surfaces as `RerankerUnavailable`, so the ranking pipeline can degrade instead of failing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from engines.rerank import PairEncoder, RerankerUnavailable, RerankResult, RerankStage
from engines.triton.repository import MODEL_NAME


def _unavailable(exc: BaseException, what: str) -> RerankerUnavailable:
    if isinstance(exc, InferenceServerException):
        return RerankerUnavailable(f"{what}: {exc.message()}", exc.status())
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return RerankerUnavailable(f"{what}: timed out", "StatusCode.DEADLINE_EXCEEDED")
    return RerankerUnavailable(f"{what}: {exc!r}")


class TritonRerankerClient:
    """One `score` call = one Triton request for the whole candidate batch (split only past
    `max_batch_size` pairs, the model's limit). The gRPC channel is opened lazily, inside the
    event loop that uses it."""

    def __init__(
        self, url: str, model: str = MODEL_NAME, timeout_s: float = 2.0, max_batch_size: int = 1024
    ) -> None:
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.max_batch_size = max_batch_size
        self._client: aioclient.InferenceServerClient | None = None

    def _conn(self) -> aioclient.InferenceServerClient:
        if self._client is None:
            # Fail fast on a dead server instead of waiting for gRPC's reconnect backoff.
            args = [("grpc.enable_retries", 0), ("grpc.initial_reconnect_backoff_ms", 100)]
            self._client = aioclient.InferenceServerClient(self.url, channel_args=args)
        return self._client

    async def score(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, *, timeout_s: float | None = None,
        version: str = "",
    ) -> np.ndarray:
        """Scores of (B, L) int64 pairs as float32 (B,) by model ``version`` ("": Triton's choice, the
        newest loaded). Raises RerankerUnavailable on any failure, a version not loaded included."""
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"input_ids {ids.shape} / attention_mask {mask.shape}: need equal (B, L)")
        if len(ids) == 0:
            return np.zeros(0, np.float32)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        step = self.max_batch_size
        starts = range(0, len(ids), step)
        # The gRPC deadline is the transport's; the request's own deadline is the pipeline's.
        calls = [asyncio.ensure_future(self._infer(ids[i : i + step], mask[i : i + step], timeout, version))
                 for i in starts]
        try:
            results = await asyncio.gather(*calls)
        except (InferenceServerException, grpc.RpcError, TimeoutError, OSError) as exc:
            raise _unavailable(exc, f"{self.model}@{self.url}") from exc
        finally:
            for call in calls:  # one chunk failed: its siblings' scores would be thrown away
                call.cancel()
        return np.concatenate(results)

    async def _infer(self, ids: np.ndarray, mask: np.ndarray, timeout: float, version: str) -> np.ndarray:
        inputs = [
            grpcclient.InferInput("input_ids", list(ids.shape), "INT64"),
            grpcclient.InferInput("attention_mask", list(mask.shape), "INT64"),
        ]
        inputs[0].set_data_from_numpy(ids)
        inputs[1].set_data_from_numpy(mask)
        result = await self._conn().infer(
            self.model, inputs, model_version=version, outputs=[grpcclient.InferRequestedOutput("score")],
            client_timeout=timeout,
        )
        out = result.as_numpy("score")
        if out is None or out.size != len(ids):
            shape = None if out is None else out.shape
            raise RerankerUnavailable(f"{self.model}: bad output shape {shape} for {len(ids)} pairs")
        return out.reshape(-1).astype(np.float32, copy=False)

    async def ready(self, version: str = "") -> bool:
        """Server live and the model (that ``version`` of it, when given) loaded; never raises."""
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = self._conn()
                return bool(
                    await conn.is_server_ready(client_timeout=self.timeout_s)
                    and await conn.is_model_ready(self.model, version, client_timeout=self.timeout_s)
                )
        except Exception:
            return False

    async def model_version(self) -> str:
        """The ONNX content hash written by write_model_repository (falls back to Triton's version)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = self._conn()
                cfg = (await conn.get_model_config(self.model, client_timeout=self.timeout_s)).config
                if "model_version" in cfg.parameters:
                    return cfg.parameters["model_version"].string_value
                meta = await conn.get_model_metadata(self.model, client_timeout=self.timeout_s)
                return ",".join(meta.versions)
        except (InferenceServerException, grpc.RpcError, TimeoutError, OSError) as exc:
            raise _unavailable(exc, f"{self.model}@{self.url}") from exc

    async def versions(self) -> dict[str, str]:
        """Each version Triton knows of the model, with its state (READY, UNAVAILABLE, LOADING...)."""
        try:
            index = await self._conn().get_model_repository_index(as_json=True,
                                                                   client_timeout=self.timeout_s)
        except (InferenceServerException, grpc.RpcError, TimeoutError, OSError) as exc:
            raise _unavailable(exc, f"{self.model}@{self.url}") from exc
        return {m["version"]: m.get("state", "") for m in index.get("models", [])
                if m.get("name") == self.model and m.get("version")}

    async def ready_versions(self) -> list[str]:
        states = await self.versions()
        return sorted((v for v, state in states.items() if state == "READY"), key=int)

    async def load_versions(self, versions: Iterable[str], *, timeout_s: float = 300.0) -> None:
        """Make exactly ``versions`` the loaded ones, through Triton's model-control API (explicit mode):
        a load with the model's config and a ``specific`` version policy. Triton swaps the model only once
        the new set is loaded, so requests keep being served by the versions that stay. Returns once the
        versions left out have finished unloading (Triton unloads them in the background)."""
        wanted = sorted({int(v) for v in versions})
        if not wanted:
            raise ValueError("at least one version must stay loaded")
        conn = self._conn()
        try:
            found = await conn.get_model_config(self.model, as_json=True, client_timeout=self.timeout_s)
            cfg = found["config"]
            cfg["version_policy"] = {"specific": {"versions": wanted}}
            await conn.load_model(self.model, config=json.dumps(cfg), client_timeout=timeout_s)
        except (InferenceServerException, grpc.RpcError, TimeoutError, OSError) as exc:
            raise _unavailable(exc, f"load {self.model} versions {wanted} @{self.url}") from exc
        keep = {str(v) for v in wanted}
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any(state in ("READY", "UNLOADING") and v not in keep
                  for v, state in (await self.versions()).items()):
            if asyncio.get_running_loop().time() > deadline:
                raise RerankerUnavailable(f"{self.model}: versions outside {sorted(keep)} still unloading")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


class TritonRerankStage(RerankStage):
    name = "triton reranker"

    def __init__(self, client: TritonRerankerClient, tokenizer: PairEncoder) -> None:
        super().__init__(tokenizer)
        self.client = client

    async def rerank(
        self, query: str, docs: Sequence[str], *, timeout_s: float | None = None, version: str = ""
    ) -> RerankResult:
        result = await super().rerank(query, docs, timeout_s=timeout_s, version=version)
        result.timings["triton_ms"] = result.timings["infer_ms"]
        return result

    async def score(self, ids: np.ndarray, mask: np.ndarray, timeout_s: float | None,
                    version: str = "") -> np.ndarray:
        return await self.client.score(ids, mask, timeout_s=timeout_s, version=version)

    async def versions(self) -> dict[str, str]:
        return await self.client.versions()

    async def close(self) -> None:
        await self.client.close()
