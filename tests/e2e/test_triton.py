"""The reranker on a real tritonserver (pytriton wheel binary) on loopback, with a tiny random model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc

from engines.cross_encoder import CrossEncoderConfig, build_model
from engines.ort_rerank import OrtRerankStage, ort_session
from engines.pair_tokenizer import PairTokenizer
from engines.rerank import RerankerUnavailable, RerankStage
from engines.triton.repository import read_config, read_model_info, write_model_repository
from engines.triton.server import TritonServer, TritonStartError, free_ports
from engines.triton_rerank import TritonRerankerClient, TritonRerankStage
from training.export import export_onnx, quantize_int8

# Merging concurrent requests needs a window wider than the test's request spread on 2 busy cores.
BATCH_WINDOW_US = 100_000
REPO_ROOT = Path(__file__).resolve().parents[2]


def triton_pids(marker: str = "") -> set[int]:
    """Live (non-zombie) tritonserver processes whose command line contains `marker`."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        is_triton = Path(argv[0].decode(errors="replace")).name == "tritonserver"
        if is_triton and state != "Z" and marker.encode() in b"\0".join(argv):
            pids.add(int(proc.name))
    return pids


def group_alive(pgid: int) -> bool:
    """Any non-zombie process left in process group `pgid`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def wait_until(pred, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Module work dir; on teardown (after the servers below) no tritonserver of ours may remain."""
    root = tmp_path_factory.mktemp("triton")
    yield root
    leftover = lambda: triton_pids(str(root))  # noqa: E731
    assert wait_until(lambda: not leftover(), 20), f"leftover tritonserver: {leftover()}"


@pytest.fixture(scope="module")
def onnx_models(workdir: Path) -> tuple[Path, Path]:
    cfg = CrossEncoderConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, dropout=0.0)
    import torch

    torch.manual_seed(0)
    model = build_model(cfg, pretrained_embeddings=False)
    fp32 = export_onnx(model, workdir / "model_fp32.onnx")
    return fp32, quantize_int8(fp32, workdir / "model.onnx")


@pytest.fixture(scope="module")
def repo(workdir: Path, onnx_models: tuple[Path, Path]) -> Path:
    fp32, int8 = onnx_models
    repo = write_model_repository(int8, workdir / "repo", max_queue_delay_us=500,
                                  parameters={"ort_threads": "1"})
    # FP32 twin with a wide batching window: padding/splitting must be exact there (INT8's dynamic
    # activation ranges make batched scores depend slightly on the batch's other rows).
    write_model_repository(
        fp32, repo, model_name="reranker_fp32", stock_twin=False, max_queue_delay_us=BATCH_WINDOW_US
    )
    return repo


@pytest.fixture(scope="module")
def server(repo: Path, workdir: Path) -> Iterator[TritonServer]:
    srv = TritonServer(repo, runtime_dir=workdir / "rt-main", models=("reranker", "reranker_fp32"))
    # Start from a worker thread that then exits: PR_SET_PDEATHSIG must not take the server with it.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(srv.start).result()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def tokenizer() -> PairTokenizer:
    return PairTokenizer(max_length=48)


@pytest.fixture(scope="module")
def sessions(onnx_models: tuple[Path, Path]) -> dict[str, ort.InferenceSession]:
    fp32, int8 = onnx_models
    return {"reranker": ort_session(int8, threads=1), "reranker_fp32": ort_session(fp32, threads=1)}


def ort_score(sess: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return sess.run(["score"], {"input_ids": ids, "attention_mask": mask})[0].reshape(-1)


def random_pairs(rng: np.random.Generator, batch: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    ids = rng.integers(3, 32000, size=(batch, length), dtype=np.int64)
    mask = np.ones_like(ids)
    # Ragged rows inside one request, padded like PairTokenizer pads (PAD_ID 2, mask 0).
    lens = rng.integers(max(1, length // 2), length + 1, size=batch)
    lens[0] = length
    cols = np.arange(length)[None, :]
    mask[cols >= lens[:, None]] = 0
    ids[mask == 0] = 2
    return ids, mask


def test_model_repository_configs_parse(repo: Path, onnx_models: tuple[Path, Path]) -> None:
    py = read_config(repo / "reranker" / "config.pbtxt")
    onnx = read_config(repo / "reranker_onnx" / "config.pbtxt")
    for cfg in (py, onnx):
        assert isinstance(cfg, mc.ModelConfig)
        assert cfg.max_batch_size == 1024
        assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [
            ("input_ids", mc.TYPE_INT64, [-1]),
            ("attention_mask", mc.TYPE_INT64, [-1]),
        ]
        assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == [("score", mc.TYPE_FP32, [1])]
        assert cfg.HasField("dynamic_batching")
        assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
        assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert py.backend == "python" and py.parameters["ort_threads"].string_value == "1"
    assert all(i.allow_ragged_batch for i in py.input)
    assert onnx.platform == "onnxruntime_onnx" and onnx.backend == "onnxruntime"
    assert (repo / "reranker" / "1" / "model.py").read_text().startswith('"""Triton Python-backend model')
    int8 = onnx_models[1]
    for model in ("reranker", "reranker_onnx"):
        assert (repo / model / "1" / "model.onnx").read_bytes() == int8.read_bytes()
    info = json.loads((repo / "MODEL_INFO.json").read_text())
    assert set(info) == {"reranker", "reranker_onnx", "reranker_fp32"}
    version = read_model_info(repo)["version"]
    assert len(version) == 12 and version == py.parameters["model_version"].string_value
    assert read_model_info(repo, "reranker_fp32")["version"] != version


def test_server_binds_loopback_and_model_versions(server: TritonServer, repo: Path) -> None:
    assert server.is_running() and server.url.startswith("127.0.0.1:")
    # The ORT-backend entry is for stock Triton images only; it must not be loaded here.
    client = grpcclient.InferenceServerClient(server.url)
    try:
        index = {m.name: m.state for m in client.get_model_repository_index().models}
    finally:
        client.close()
    assert index["reranker"] == "READY" and index["reranker_fp32"] == "READY"
    assert index.get("reranker_onnx", "") != "READY"

    async def check() -> tuple[bool, str]:
        c = TritonRerankerClient(server.url)
        try:
            return await c.ready(), await c.model_version()
        finally:
            await c.close()

    ready, version = asyncio.run(check())
    assert ready and version == read_model_info(repo)["version"]


@pytest.mark.parametrize("model", ["reranker", "reranker_fp32"])
def test_triton_scores_match_in_process_ort(
    server: TritonServer, sessions: dict[str, ort.InferenceSession], model: str
) -> None:
    rng = np.random.default_rng(0)
    ids, mask = random_pairs(rng, 37, 29)

    async def score() -> np.ndarray:
        c = TritonRerankerClient(server.url, model=model)
        try:
            return await c.score(ids, mask)
        finally:
            await c.close()

    got = asyncio.run(score())
    assert got.dtype == np.float32 and got.shape == (37,)
    np.testing.assert_allclose(got, ort_score(sessions[model], ids, mask), rtol=1e-5, atol=1e-6)


def test_dynamic_batching_of_different_lengths(
    server: TritonServer, sessions: dict[str, ort.InferenceSession]
) -> None:
    rng = np.random.default_rng(1)
    shapes = [(5, 7), (12, 48), (1, 3), (30, 20), (8, 33), (17, 11), (2, 48), (25, 5)]
    requests = [random_pairs(rng, b, n) for b, n in shapes]
    client = grpcclient.InferenceServerClient(server.url)
    before = client.get_inference_statistics("reranker_fp32").model_stats[0]

    async def score_all() -> list[np.ndarray]:
        c = TritonRerankerClient(server.url, model="reranker_fp32", timeout_s=10.0)
        try:
            return await asyncio.gather(*(c.score(ids, mask) for ids, mask in requests))
        finally:
            await c.close()

    results = asyncio.run(score_all())
    after = client.get_inference_statistics("reranker_fp32").model_stats[0]
    client.close()
    for (ids, mask), got in zip(requests, results, strict=True):
        assert got.shape == (len(ids),)
        np.testing.assert_allclose(got, ort_score(sessions["reranker_fp32"], ids, mask), rtol=1e-4, atol=1e-5)
    # Requests were really merged: fewer model executions than requests.
    assert after.inference_count - before.inference_count == sum(b for b, _ in shapes)
    assert after.execution_count - before.execution_count < len(shapes)


def test_rerank_stages_agree(
    server: TritonServer, sessions: dict[str, ort.InferenceSession], tokenizer: PairTokenizer
) -> None:
    docs = ["turquoise velvet accent pillow", "oak dining chair", "marble end table with drawer", "x"] * 5
    query = "turquoise pillows"

    async def run() -> tuple:
        client = TritonRerankerClient(server.url)
        stages: list[RerankStage] = [
            TritonRerankStage(client, tokenizer),
            OrtRerankStage(sessions["reranker"], tokenizer),
        ]
        try:
            return tuple([await s.rerank(query, docs) for s in stages] + [await stages[0].rerank(query, [])])
        finally:
            await client.close()

    triton, local, empty = asyncio.run(run())
    assert triton.scores.shape == (len(docs),) and empty.scores.shape == (0,)
    np.testing.assert_allclose(triton.scores, local.scores, rtol=1e-5, atol=1e-6)
    assert {"tokenize_ms", "infer_ms", "triton_ms"} <= set(triton.timings)
    assert {"tokenize_ms", "infer_ms"} <= set(local.timings)
    assert triton.scores[0] == pytest.approx(triton.scores[4])  # same pair, same score


def test_client_errors_are_reranker_unavailable(server: TritonServer) -> None:
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    ids = np.full((4, 6), 5, np.int64)
    mask = np.ones_like(ids)

    async def expect_unavailable(url: str, **kw: object) -> tuple[float, str | None]:
        timeout_s = kw.pop("timeout_s", 1.0)
        c = TritonRerankerClient(url, timeout_s=1.0, **kw)
        t = time.perf_counter()
        try:
            with pytest.raises(RerankerUnavailable) as err:
                await c.score(ids, mask, timeout_s=timeout_s)
            return time.perf_counter() - t, err.value.status
        finally:
            await c.close()

    async def checks() -> None:
        elapsed, status = await expect_unavailable(dead)
        assert elapsed < 2.0 and status == "StatusCode.UNAVAILABLE"
        c = TritonRerankerClient(dead, timeout_s=1.0)
        assert not await c.ready()
        with pytest.raises(RerankerUnavailable):
            await c.model_version()
        await c.close()
        _, status = await expect_unavailable(server.url, model="no_such_model")
        assert status is not None
        _, status = await expect_unavailable(server.url, timeout_s=1e-4)
        assert status == "StatusCode.DEADLINE_EXCEEDED"

    asyncio.run(checks())
    with pytest.raises(ValueError):
        asyncio.run(TritonRerankerClient(dead).score(ids, mask[:, :3]))


def test_stop_leaves_no_process(repo: Path, workdir: Path) -> None:
    marker = str(workdir / "rt-stop")
    srv = TritonServer(repo, runtime_dir=Path(marker), metrics_port=None)
    with srv:
        # A crashed server can be start()ed again on the same URL (what the app's supervisor does).
        url, first = srv.url, srv.pid
        os.killpg(first, signal.SIGKILL)
        assert wait_until(lambda: not srv.is_running(), 5)
        srv.start()
        pid = srv.pid
        assert srv.url == url and pid != first and not group_alive(first)
        before = triton_pids()
        assert pid in triton_pids(marker) and srv.is_running()
    assert not srv.is_running() and srv.pid is None
    assert not group_alive(pid), "tritonserver or its backend stubs survived stop()"
    assert not triton_pids(marker)
    # Other sessions may run their own tritonserver meanwhile, so check ours, not the global count.
    assert pid not in triton_pids() and pid in before
    srv.stop()  # idempotent


def test_start_error_carries_log_and_cleans_up(workdir: Path) -> None:
    bad = workdir / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    repo = write_model_repository(bad, workdir / "bad-repo", stock_twin=False)
    marker = str(workdir / "rt-bad")
    srv = TritonServer(repo, runtime_dir=Path(marker), startup_timeout_s=60)
    with pytest.raises(TritonStartError, match="reranker"):
        srv.start()
    assert not srv.is_running()
    assert wait_until(lambda: not triton_pids(marker), 5)


class _ExecFails(TritonServer):
    """A server whose exec fails (a binary that cannot run on this host), after its log is open."""

    def _spawn(self, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.spawned_in = self.runtime_dir
        raise OSError(8, "Exec format error")


def test_failed_spawn_leaves_no_open_log_or_temporary_directory(repo: Path) -> None:
    srv = _ExecFails(repo, metrics_port=None)
    with pytest.raises(OSError, match="Exec format"):
        srv.start()
    assert srv.spawned_in is not None and not srv.spawned_in.exists()
    assert srv._log is None and srv.runtime_dir is None and not srv.is_running()


CHILD = """
import sys, time
from pathlib import Path
from engines.triton.server import TritonServer
srv = TritonServer(Path(sys.argv[1]), runtime_dir=Path(sys.argv[2]), stop_grace_s=10)
srv.start()
print(srv.pid, flush=True)
time.sleep(300)
"""


def _spawn_owner(repo: Path, runtime_dir: Path) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(repo), str(runtime_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    line = child.stdout.readline() if child.stdout else ""
    if not line.strip().isdigit():
        child.kill()
        _, err = child.communicate()
        pytest.fail(f"owner process did not start tritonserver: {line!r}\n{err[-3000:]}")
    return child, int(line)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_owner_death_leaves_no_orphan(repo: Path, workdir: Path, sig: signal.Signals) -> None:
    runtime_dir = workdir / f"rt-owner-{sig.name}"
    child, pid = _spawn_owner(repo, runtime_dir)
    try:
        assert pid in triton_pids(str(runtime_dir))
        os.kill(child.pid, sig)
        # SIGTERM is handed back to the owner after cleanup, so it still dies *by SIGTERM*.
        assert child.wait(timeout=30) == -sig
        assert wait_until(lambda: not group_alive(pid), 10), f"orphaned tritonserver after {sig.name}"
    finally:
        child.kill()
        child.communicate()  # reaps it and closes its pipes
        if group_alive(pid):
            os.killpg(pid, signal.SIGKILL)
