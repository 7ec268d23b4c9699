"""Writes the Triton model repository that serves the INT8 cross-encoder.

Layout (`repo/`):
  reranker/config.pbtxt        Python backend + onnxruntime, loaded by our CPU Triton (pytriton wheel)
  reranker/1/model.py          copy of engines/triton/model.py
  reranker/1/model.onnx        hardlink/copy of the INT8 ONNX
  reranker_onnx/...            same model for the stock Triton image's onnxruntime backend; the
                               pytriton wheel has no ORT backend, so `TritonServer` starts Triton with
                               `--model-control-mode explicit --load-model reranker` and never loads it.
  MODEL_INFO.json              {model name: {"version": sha256[:12], ...}} so servers can report it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

MODEL_NAME = "reranker"
ONNX_MODEL_NAME = "reranker_onnx"
MODEL_INFO_FILE = "MODEL_INFO.json"
TEMPLATE = Path(__file__).parent / "model.py"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)  # free and instant on the same filesystem
    except OSError:
        shutil.copy2(src, dst)


def _base_config(
    name: str,
    *,
    max_batch_size: int,
    preferred_batch_sizes: Sequence[int],
    max_queue_delay_us: int,
    instances: int,
    kind: int,
    version: str,
) -> mc.ModelConfig:
    cfg = mc.ModelConfig(name=name, max_batch_size=max_batch_size)
    # Batch dim is implicit (max_batch_size > 0); sequence length varies per request.
    cfg.input.add(name="input_ids", data_type=mc.TYPE_INT64, dims=[-1])
    cfg.input.add(name="attention_mask", data_type=mc.TYPE_INT64, dims=[-1])
    cfg.output.add(name="score", data_type=mc.TYPE_FP32, dims=[1])
    cfg.dynamic_batching.SetInParent()
    cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    cfg.dynamic_batching.preferred_batch_size.extend(
        sorted({b for b in preferred_batch_sizes if 0 < b <= max_batch_size})
    )
    cfg.instance_group.add(count=instances, kind=kind)
    cfg.parameters["model_version"].string_value = version
    return cfg


def write_config(cfg: mc.ModelConfig, model_dir: Path) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "config.pbtxt"
    path.write_text(text_format.MessageToString(cfg))
    return path


def read_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def read_model_info(repo: Path, model: str = MODEL_NAME) -> dict:
    """The MODEL_INFO.json entry of `model` ({} when the repository has none)."""
    path = Path(repo) / MODEL_INFO_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text()).get(model, {})


def write_model_repository(
    onnx_int8: Path,
    repo: Path,
    *,
    model_name: str = MODEL_NAME,
    onnx_model_name: str | None = ONNX_MODEL_NAME,
    instances: int = 1,
    max_batch_size: int = 1024,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 500,
    ort_threads: int = 0,
    pad_token_id: int = 2,
    onnx_instance_kind: str = "KIND_CPU",
    bucket_rows: int = 16,
    bucket_parallel: bool = True,
    ort_spinning: bool = False,
) -> Path:
    """Write (or refresh) `model_name` and its stock-Triton twin into `repo`; returns `repo`.

    `max_batch_size` counts (query, doc) pairs across all batched requests. `ort_threads=0` lets
    the model pick cpu_count // instances on the serving host. `pad_token_id` pads shorter
    requests when batching: use the tokenizer's pad id so batched padding matches in-process runs.
    Several models can share one repository (call again with another `model_name`).
    `bucket_rows` > 0: the Python model sorts a batch of at least 2 x bucket_rows pairs by length and runs
    it in buckets of that many rows, each padded only to its own longest row (0 = one padded batch).
    `bucket_parallel` runs the buckets side by side on the instance's cores, one ORT thread each
    (off: one bucket at a time, ORT's intra-op threads split each one).
    `ort_spinning` lets idle ORT threads spin (off: they yield the cores to the rest of the host).
    """
    onnx_int8, repo = Path(onnx_int8), Path(repo)
    if not onnx_int8.is_file():
        raise FileNotFoundError(onnx_int8)
    if max_batch_size <= 0 or instances <= 0:
        raise ValueError("max_batch_size and instances must be positive")
    sha = file_sha256(onnx_int8)
    version = sha[:12]
    common = dict(
        max_batch_size=max_batch_size,
        preferred_batch_sizes=preferred_batch_sizes,
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        version=version,
    )

    cfg = _base_config(model_name, kind=mc.ModelInstanceGroup.KIND_CPU, **common)
    cfg.backend = "python"
    # Without ragged batching Triton only merges requests of equal sequence length; model.py pads.
    for tensor in cfg.input:
        tensor.allow_ragged_batch = True
    cfg.parameters["ort_threads"].string_value = str(ort_threads)
    cfg.parameters["pad_token_id"].string_value = str(pad_token_id)
    cfg.parameters["onnx_file"].string_value = "model.onnx"
    cfg.parameters["bucket_rows"].string_value = str(bucket_rows)
    cfg.parameters["bucket_parallel"].string_value = "1" if bucket_parallel else "0"
    cfg.parameters["ort_spinning"].string_value = "1" if ort_spinning else "0"
    model_dir = repo / model_name
    write_config(cfg, model_dir)
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TEMPLATE, model_dir / "1" / "model.py")
    _link_or_copy(onnx_int8, model_dir / "1" / "model.onnx")

    models = [model_name]
    if onnx_model_name:
        kind = mc.ModelInstanceGroup.Kind.Value(onnx_instance_kind)
        onnx_cfg = _base_config(onnx_model_name, kind=kind, **common)
        onnx_cfg.platform = "onnxruntime_onnx"
        onnx_cfg.backend = "onnxruntime"
        if ort_threads > 0:
            onnx_cfg.parameters["intra_op_thread_count"].string_value = str(ort_threads)
        onnx_dir = repo / onnx_model_name
        write_config(onnx_cfg, onnx_dir)
        (onnx_dir / "1").mkdir(parents=True, exist_ok=True)
        _link_or_copy(onnx_int8, onnx_dir / "1" / "model.onnx")
        models.append(onnx_model_name)

    info_path = repo / MODEL_INFO_FILE
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    entry = {
        "version": version,
        "onnx_sha256": sha,
        "onnx_source": str(onnx_int8.resolve()),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "max_batch_size": max_batch_size,
        "instances": instances,
    }
    for name in models:
        info[name] = entry
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return repo
