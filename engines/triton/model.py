"""Triton Python-backend model: the INT8 cross-encoder run by onnxruntime on CPU.

Copied into `<repo>/reranker/1/model.py` by `engines.triton.repository`. Runs inside the
backend stub's embedded interpreter, which ignores PYTHONPATH, so the launcher passes the
venv's site-packages in RANKSERVE_PYTHONPATH and we prepend it before importing numpy/ORT.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor

sys.path[:0] = [
    p for p in os.environ.get("RANKSERVE_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path
]

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton (tests, the bench) for `score_bucketed`
    pb_utils = None

# Rows per ORT call after sorting by length: small enough that each bucket pads only to its own longest
# row and its activations stay in cache, large enough that per-call overhead stays negligible
# (measured in docs/performance.md).
DEFAULT_BUCKET_ROWS = 16


def _params(config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def pad_and_concat(arrays: list[np.ndarray], pad_value: int) -> np.ndarray:
    """Right-pad every (b_i, L_i) array to the longest L, then stack along the batch axis."""
    width = max(a.shape[1] for a in arrays)
    out = np.full((sum(a.shape[0] for a in arrays), width), pad_value, dtype=np.int64)
    row = 0
    for a in arrays:
        out[row : row + a.shape[0], : a.shape[1]] = a
        row += a.shape[0]
    return out


def _buckets(lengths: np.ndarray, start: int, n: int, bucket_rows: int) -> list[np.ndarray]:
    """Rows ``start .. start + n`` (one request) in buckets of ``bucket_rows``, sorted by length."""
    rows = np.arange(start, start + n)
    # One or two buckets save little padding; small requests also keep exactly the in-process scores.
    if bucket_rows <= 0 or n < 2 * bucket_rows:
        return [rows]
    order = rows[np.argsort(lengths[rows], kind="stable")]
    return [order[i : i + bucket_rows] for i in range(0, n, bucket_rows)]


def score_bucketed(
    session: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray, bucket_rows: int = DEFAULT_BUCKET_ROWS,
    pool: Executor | None = None, groups: Sequence[int] | None = None,
) -> np.ndarray:
    """Scores (n, 1) float32 of right-padded rows: sorted by real length, run in buckets of
    `bucket_rows`, each cropped to its longest row, so padding costs almost nothing.

    ``groups`` (row counts, one per request, in order) keeps every bucket inside one request. Dynamic
    INT8 quantises each call's activations with that call's own range, so a bucket shared with another
    request would make a request's scores depend on what else was in flight: the same query ranked
    differently under load (measured up to 0.5 logits on the demo model; a CI run saw two items swap).
    With a `pool`, buckets run concurrently, one ORT call per worker (give the session one intra-op
    thread): this 2-layer model's ops are too small for ORT's intra-op threads to split well, whole
    buckets on separate cores do (measured in docs/performance.md).
    """
    lengths = mask.sum(axis=1)
    sizes = [len(ids)] if groups is None else list(groups)
    if sum(sizes) != len(ids):
        raise ValueError(f"groups cover {sum(sizes)} rows, the batch has {len(ids)}")
    buckets: list[np.ndarray] = []
    for start, n in zip(np.cumsum([0, *sizes])[:-1], sizes, strict=True):
        if n:
            buckets += _buckets(lengths, int(start), n, bucket_rows)
    out = np.empty((len(ids), 1), dtype=np.float32)

    def run(rows: np.ndarray) -> None:  # buckets write disjoint rows of `out`
        width = int(lengths[rows].max())
        feed = {"input_ids": np.ascontiguousarray(ids[rows, :width]),
                "attention_mask": np.ascontiguousarray(mask[rows, :width])}
        out[rows] = np.asarray(session.run(["score"], feed)[0], dtype=np.float32).reshape(-1, 1)

    if pool is None or len(buckets) < 2:
        for rows in buckets:
            run(rows)
    else:
        list(pool.map(run, buckets))
    return out


def session_options(threads: int, *, spinning: bool = False) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        # Idle ORT threads spin-wait by default: on a few shared cores that burns the CPU the gRPC
        # server, the embedder and the client need between batches.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = _params(config)
        instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
        # 0 = share the machine's cores between instances (decided here, on the serving host).
        threads = int(params.get("ort_threads", "0") or 0) or max(1, (os.cpu_count() or 1) // instances)
        self.pad_id = int(params.get("pad_token_id", "0") or 0)
        self.bucket_rows = int(params.get("bucket_rows", str(DEFAULT_BUCKET_ROWS)) or 0)
        # Parallel buckets: the instance's cores run whole buckets side by side, one ORT thread each.
        parallel = params.get("bucket_parallel", "1") == "1" and self.bucket_rows > 0 and threads > 1
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="bucket") if parallel else None
        opts = session_options(1 if parallel else threads, spinning=params.get("ort_spinning", "0") == "1")
        onnx_file = params.get("onnx_file", "model.onnx")
        path = os.path.join(args["model_repository"], args["model_version"], onnx_file)
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

    def execute(self, requests: list) -> list:
        # Dynamic batching hands over several requests, each with its own sequence length: pad to the
        # longest, score in buckets that never mix two requests (`score_bucketed`), split per request.
        responses: list = [None] * len(requests)
        ids, masks, owners = [], [], []
        for i, request in enumerate(requests):
            a = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy()
            m = pb_utils.get_input_tensor_by_name(request, "attention_mask").as_numpy()
            if a.shape != m.shape or a.ndim != 2:
                msg = f"input_ids {a.shape} and attention_mask {m.shape} must be equal (batch, seq)"
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(msg))
                continue
            ids.append(a)
            masks.append(m)
            owners.append(i)
        if not owners:
            return responses
        try:
            scores = score_bucketed(self.session, pad_and_concat(ids, self.pad_id), pad_and_concat(masks, 0),
                                    self.bucket_rows, self.pool, groups=[a.shape[0] for a in ids])
        except Exception as exc:  # one bad batch must fail its requests, not the model instance
            err = pb_utils.TritonError(f"onnxruntime failed: {exc}")
            for i in owners:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=err)
            return responses
        row = 0
        for i, a in zip(owners, ids, strict=True):
            chunk = scores[row : row + a.shape[0]]
            row += a.shape[0]
            responses[i] = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("score", chunk)])
        return responses

    def finalize(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.session = None
