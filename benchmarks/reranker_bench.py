"""Reranker throughput per engine on the same model, the same real (query, item text) batches and threads.

Engines: PyTorch eager FP32, sentence-transformers `CrossEncoder.predict` (same weights, HF folder), ONNX
Runtime FP32 and INT8 in process, and INT8 through Triton from a concurrent async client. The physical
bound is measured in the same run: FP32 GEMM via torch and INT8 GEMM via ORT `MatMulInteger`.

Pairs are what the server reranks: each catalog query with its top-`batch` candidates from the served
index. Torch/ORT/Triton time inference on pre-tokenised batches (tokenising 100 pairs costs well under a
millisecond, reported apart as `tokenize_pairs_s`); `CrossEncoder.predict` tokenises itself, as its
users would run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.pair_tokenizer import PairTokenizer
from engines.triton.model import DEFAULT_BUCKET_ROWS, score_bucketed, session_options


@dataclass(frozen=True)
class PairBatches:
    """`batch`-sized real (query, doc) batches, tokenised the way the server tokenises them."""

    queries: list[str]
    docs: list[list[str]]
    ids: list[np.ndarray]
    masks: list[np.ndarray]

    @property
    def pairs(self) -> int:
        return sum(len(d) for d in self.docs)

    def mean_length(self) -> float:
        """Mean real (unpadded) tokens per pair: the work a pair needs."""
        return float(sum(int(m.sum()) for m in self.masks) / self.pairs)

    def mean_padded_length(self) -> float:
        return float(sum(m.size for m in self.masks) / self.pairs)


def real_pair_batches(
    catalog_dir: Path, tokenizer: PairTokenizer, *, batch: int = 100, max_batches: int = 16
) -> PairBatches:
    """The first `max_batches` catalog queries, each with its top-`batch` candidates from the served
    retriever (`Settings().retrieval` over the served index: hybrid by default, as the server)."""
    from catalog.io import item_texts, load_catalog
    from retrieval.embed import WordLlamaEmbedder
    from retrieval.index import load_item_index
    from retrieval.retrieve import select_retriever
    from server.config import Settings

    settings = Settings()
    catalog = load_catalog(catalog_dir)
    texts = item_texts(catalog.products)
    index = load_item_index(catalog_dir, ef_search=settings.ef_search).item_index
    retriever = select_retriever(settings.retrieval, index, catalog.products)
    queries = catalog.queries["query"].astype(str).tolist()[:max_batches]
    qvecs = WordLlamaEmbedder().embed(queries)
    docs = []
    for q, v in zip(queries, qvecs, strict=True):
        ids, _ = retriever.retrieve(q, v.reshape(1, -1), batch)
        docs.append([texts[int(i)] for i in ids[0] if i >= 0])
    encoded = [tokenizer.encode(q, d) for q, d in zip(queries, docs, strict=True)]
    return PairBatches(queries, docs, [e[0] for e in encoded], [e[1] for e in encoded])


def ops_per_pair(bert_config: dict, length: float) -> float:
    """Multiply-adds x 2 of one BERT forward at sequence length `length` (embeddings gathers excluded);
    `bert_config` is the checkpoint's config.json."""
    h, i = bert_config["hidden_size"], bert_config["intermediate_size"]
    n = bert_config["num_hidden_layers"]
    per_layer = 8 * length * h * h + 4 * length * h * i + 4 * length * length * h  # QKVO, FFN, attention
    return n * per_layer + 2 * h * h + 2 * h  # + pooler and classifier


def time_loop(run: Callable[[int], int], seconds: float, *, cycle: int = 1, warmup: int = 2,
              min_calls: int = 3) -> float:
    """Items/s of `run(i)` (returns items done) called for at least `seconds`, after `warmup` calls, and
    for whole cycles of `cycle` calls: every engine is timed on the same batches, however fast it is (a
    slow one stopped on time covered only the first, shorter, batches)."""
    for i in range(warmup):
        run(i)
    done, calls = 0, 0
    start = time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds or calls % cycle:
        done += run(calls)
        calls += 1
    return done / (time.perf_counter() - start)


def gemm_fp32_gflops(n: int, seconds: float, threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)

    def run(_: int) -> int:
        torch.matmul(a, b, out=out)
        return 1

    return time_loop(run, seconds) * 2 * n**3 / 1e9


def _matmul_integer_model(n: int, weight: np.ndarray) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])],
        "gemm_int8",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])],
        initializer=[numpy_helper.from_array(weight, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return onnx._serialize(model) if hasattr(onnx, "_serialize") else model.SerializeToString()


def gemm_int8_gops(n: int, seconds: float, threads: int) -> float:
    """u8 x s8 -> s32 matmul in ORT (the kernel dynamic-INT8 MatMuls use), B constant like a weight."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    weight = rng.integers(-128, 128, size=(n, n), dtype=np.int8)
    a = rng.integers(0, 256, size=(n, n), dtype=np.uint8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(_matmul_integer_model(n, weight), opts, providers=["CPUExecutionProvider"])

    def run(_: int) -> int:
        sess.run(None, {"A": a})
        return 1

    return time_loop(run, seconds) * 2 * n**3 / 1e9


def _cycle(batches: PairBatches) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    k = len(batches.ids)
    return lambda i: (batches.ids[i % k], batches.masks[i % k])


def torch_eager_pairs_s(model_dir: Path, batches: PairBatches, seconds: float, threads: int) -> float:
    import torch

    from engines.model_dir import load_served_model

    torch.set_num_threads(threads)
    model = load_served_model(model_dir)
    get = _cycle(batches)

    @torch.inference_mode()
    def run(i: int) -> int:
        ids, mask = get(i)
        model(torch.from_numpy(ids), torch.from_numpy(mask))
        return len(ids)

    return time_loop(run, seconds, cycle=len(batches.ids))


def st_crossencoder_pairs_s(model_dir: Path, batches: PairBatches, seconds: float, threads: int) -> float:
    import torch
    from sentence_transformers import CrossEncoder

    from engines.model_dir import pair_tokenizer_for

    torch.set_num_threads(threads)
    max_length = pair_tokenizer_for(model_dir).max_length
    model = CrossEncoder(str(model_dir / "hf"), device="cpu", max_length=max_length)
    k = len(batches.docs)
    pairs = [[(q, d) for d in docs] for q, docs in zip(batches.queries, batches.docs, strict=True)]

    def run(i: int) -> int:
        batch = pairs[i % k]
        model.predict(batch, batch_size=len(batch), show_progress_bar=False)
        return len(batch)

    return time_loop(run, seconds, cycle=k)


def ort_pairs_s(onnx_path: Path, batches: PairBatches, seconds: float, threads: int) -> float:
    from engines.ort_rerank import ort_scores, ort_session

    sess = ort_session(onnx_path, threads=threads)
    get = _cycle(batches)

    def run(i: int) -> int:
        ids, mask = get(i)
        ort_scores(sess, ids, mask)
        return len(ids)

    return time_loop(run, seconds, cycle=len(batches.ids))


def ort_tuned_pairs_s(onnx_path: Path, batches: PairBatches, seconds: float, threads: int,
                      bucket_rows: int, bucket_parallel: bool = True) -> float:
    """In-process ORT with exactly what the Triton model runs: its session options, length buckets and
    (with `bucket_parallel`) buckets run side by side on `threads` one-thread workers."""
    from concurrent.futures import ThreadPoolExecutor

    import onnxruntime as ort


    parallel = bucket_parallel and bucket_rows > 0 and threads > 1
    opts = session_options(1 if parallel else threads)
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    get = _cycle(batches)
    with ThreadPoolExecutor(threads) if parallel else contextlib.nullcontext() as pool:

        def run(i: int) -> int:
            ids, mask = get(i)
            score_bucketed(sess, ids, mask, bucket_rows, pool)
            return len(ids)

        return time_loop(run, seconds, cycle=len(batches.ids))


def write_bench_repo(onnx_int8: Path, repo: Path, **kwargs) -> Path:
    """A Triton repository written by the current code (levers as keyword arguments), beside the bench."""
    from engines.triton.repository import write_model_repository

    return write_model_repository(onnx_int8, repo, stock_twin=False, **kwargs)


def tokenize_pairs_s(tokenizer: PairTokenizer, batches: PairBatches, seconds: float) -> float:
    k = len(batches.docs)

    def run(i: int) -> int:
        tokenizer.encode(batches.queries[i % k], batches.docs[i % k])
        return len(batches.docs[i % k])

    return time_loop(run, seconds, cycle=k)


async def _triton_load(url: str, batches: PairBatches, seconds: float, concurrency: int) -> float:
    """Pairs/s of `concurrency` clients sending the batches in turn for at least `seconds` and whole
    passes over them (as `time_loop`)."""
    from engines.triton_rerank import TritonRerankerClient

    client = TritonRerankerClient(url, timeout_s=30.0)
    get = _cycle(batches)
    k = len(batches.ids)
    try:
        for i in range(2 * concurrency):  # warm-up: channel, model instance, allocator
            await client.score(*get(i))
        done = sent = 0
        start = time.perf_counter()
        stop_at = start + seconds

        async def worker() -> None:
            nonlocal done, sent
            # The next batch goes to whichever client is free; past the window, none starts a new pass.
            while sent % k or time.perf_counter() < stop_at:
                i, sent = sent, sent + 1
                ids, mask = get(i)
                await client.score(ids, mask)
                done += len(ids)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - start)
    finally:
        await client.close()


def _triton_stats(url: str, model: str) -> dict:
    """Triton's own view (statistics API): mean queue and compute time per execution, pairs/execution."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        s = client.get_inference_statistics(model).model_stats[0]
    finally:
        client.close()
    execs = max(int(s.execution_count), 1)
    st = s.inference_stats
    compute_ns = st.compute_input.ns + st.compute_infer.ns + st.compute_output.ns
    return {
        "executions": int(s.execution_count),
        "inferences": int(s.inference_count),
        "pairs_per_execution": int(s.inference_count) / execs,
        "queue_ms_per_request": st.queue.ns / max(st.queue.count, 1) / 1e6,
        "compute_ms_per_execution": compute_ns / execs / 1e6,
        "compute_pairs_s": int(s.inference_count) / (compute_ns / 1e9) if compute_ns else None,
    }


def triton_pairs_s(
    repo: Path, batches: PairBatches, seconds: float, *, concurrency: int = 4,
    runtime_dir: Path | None = None, one_at_a_time: bool = False,
) -> tuple[float, dict, float | None]:
    """INT8 pairs/s through a Triton we start on loopback (stopped before returning) at `concurrency`
    requests in flight, its statistics for that run, and (with `one_at_a_time`) pairs/s at one request in
    flight: the in-process engines' way of working, what their ratios compare against."""
    from engines.triton.repository import MODEL_NAME
    from engines.triton.server import TritonServer

    with contextlib.ExitStack() as stack:
        if runtime_dir is None:
            runtime_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-triton-")))
        srv = stack.enter_context(TritonServer(repo, runtime_dir=runtime_dir, metrics_port=None,
                                               handle_signals=False))
        rate = asyncio.run(_triton_load(srv.url, batches, seconds, concurrency))
        stats = _triton_stats(srv.url, MODEL_NAME)
        single = asyncio.run(_triton_load(srv.url, batches, seconds, 1)) if one_at_a_time else None
    return rate, stats, single


def perf_analyzer_status() -> tuple[float | None, str]:
    """perf_analyzer needs the C++ binary; the PyPI `perf-analyzer` is a placeholder without it."""
    import shutil

    path = shutil.which("perf_analyzer")
    if path is None:
        return None, ("perf_analyzer binary not available: PyPI 'perf-analyzer' 0.1.0 is an empty "
                      "placeholder and the tritonclient wheel ships no binary; Triton's statistics API is "
                      "reported instead (triton_stats)")
    return None, f"perf_analyzer found at {path} but not run by this harness"


def run_reranker_bench(
    catalog_dir: Path,
    model_dir: Path,
    workdir: Path,
    *,
    seconds: float = 5.0,
    threads: int | None = None,
    batch: int = 100,
    n_batches: int = 16,
    gemm_n: int = 1024,
    triton_concurrency: int = 4,
    bucket_rows: int = DEFAULT_BUCKET_ROWS,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """All reranker figures of one run (see module doc); `seconds` is the timing window per engine."""
    from engines.model_dir import pair_tokenizer_for

    threads = threads or os.cpu_count() or 1
    note = progress or (lambda _: None)
    bert_config = json.loads((model_dir / "hf" / "config.json").read_text())
    tokenizer = pair_tokenizer_for(model_dir)
    batches = real_pair_batches(catalog_dir, tokenizer, batch=batch, max_batches=n_batches)
    out: dict = {"batch": batch, "threads": threads, "batches": len(batches.ids),
                 "seconds_per_engine": seconds, "mean_length": batches.mean_length(),
                 "mean_padded_length": batches.mean_padded_length()}
    note("reranker: GEMM bounds")
    out["gemm_n"] = gemm_n
    out["gemm_fp32_gflops"] = gemm_fp32_gflops(gemm_n, min(seconds, 2.0), threads)
    out["gemm_int8_gops"] = gemm_int8_gops(gemm_n, min(seconds, 2.0), threads)
    note("reranker: PyTorch eager")
    out["torch_eager_pairs_s"] = torch_eager_pairs_s(model_dir, batches, seconds, threads)
    note("reranker: sentence-transformers CrossEncoder")
    out["st_crossencoder_pairs_s"] = st_crossencoder_pairs_s(model_dir, batches, seconds, threads)
    note("reranker: ONNX Runtime FP32 / INT8")
    out["ort_fp32_pairs_s"] = ort_pairs_s(model_dir / "model_fp32.onnx", batches, seconds, threads)
    out["ort_int8_pairs_s"] = ort_pairs_s(model_dir / "model.onnx", batches, seconds, threads)
    out["ort_int8_tuned_pairs_s"] = ort_tuned_pairs_s(model_dir / "model.onnx", batches, seconds, threads,
                                                      bucket_rows)
    out["tokenize_pairs_s"] = tokenize_pairs_s(tokenizer, batches, min(seconds, 1.0))
    # Before/after of the serving levers in this same run: the repository as first written (one padded
    # batch, spinning ORT threads) and the one served now (length buckets, no spinning).
    note("reranker: Triton INT8 (baseline config)")
    base = write_bench_repo(model_dir / "model.onnx", workdir / "repo_baseline",
                            parameters={"bucket_rows": "0", "ort_spinning": "1"})
    out["triton_int8_baseline_pairs_s"], out["triton_baseline_stats"], _ = triton_pairs_s(
        base, batches, seconds, concurrency=triton_concurrency, runtime_dir=workdir / "rt_baseline")
    note("reranker: Triton INT8")
    repo = model_dir / "triton"
    out["triton_int8_pairs_s"], out["triton_stats"], out["triton_int8_c1_pairs_s"] = triton_pairs_s(
        repo, batches, seconds, concurrency=triton_concurrency, runtime_dir=workdir / "rt_served",
        one_at_a_time=True)
    out["bucket_rows"] = bucket_rows
    out["triton_concurrency"] = triton_concurrency
    out["perf_analyzer_pairs_s"], out["perf_analyzer_note"] = perf_analyzer_status()
    out["ops_per_pair"] = ops_per_pair(bert_config, out["mean_length"])
    out["reranker_gops"] = out["triton_int8_pairs_s"] * out["ops_per_pair"] / 1e9
    out["ort_int8_gops"] = out["ort_int8_pairs_s"] * out["ops_per_pair"] / 1e9
    # Engine against engine at one request of `batch` pairs in flight, as the in-process engines run:
    # Triton's dynamic batcher merges concurrent requests into larger executions, which the others are
    # not given (at 4 in flight, ~150-190 pairs an execution). Its served rate is reported beside.
    single = out["triton_int8_c1_pairs_s"]
    out["ratios"] = {
        "triton_vs_torch_eager": single / out["torch_eager_pairs_s"],
        "triton_vs_st_crossencoder": single / out["st_crossencoder_pairs_s"],
        # Same session options and buckets on both sides: what Triton itself costs.
        "triton_overhead_vs_ort_int8": 1.0 - single / out["ort_int8_tuned_pairs_s"],
        "triton_vs_plain_ort_int8": single / out["ort_int8_pairs_s"],
        "triton_concurrent_vs_one_at_a_time": out["triton_int8_pairs_s"] / single,
        "triton_tuned_vs_baseline": out["triton_int8_pairs_s"] / out["triton_int8_baseline_pairs_s"],
        "reranker_gops_vs_gemm_int8": out["reranker_gops"] / out["gemm_int8_gops"],
        "ort_int8_vs_fp32": out["ort_int8_pairs_s"] / out["ort_fp32_pairs_s"],
    }
    return out
