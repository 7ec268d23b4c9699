"""Writes the Triton model repository that serves the INT8 cross-encoder, from checked-in templates.

Layout (`repo/`), each config from `engines/triton/templates/<model>/config.pbtxt`:
  reranker/config.pbtxt        Python backend + onnxruntime, loaded by our CPU Triton (pytriton wheel)
  reranker/<n>/model.py        copy of engines/triton/model.py
  reranker/<n>/model.onnx      hardlink/copy of the INT8 ONNX of version n (the build writes 1;
                               `rankserve model stage` adds 2, 3, ... beside it)
  reranker_onnx/...            same model for the stock Triton image's onnxruntime backend; the
                               pytriton wheel has no ORT backend, so `TritonServer` starts Triton with
                               `--model-control-mode explicit --load-model reranker` and never loads it.
  MODEL_INFO.json              {model name: {"version": sha256[:12] of the newest write, ...,
                               "versions": {"<n>": {"version": sha256[:12], ...}}}}
Versions are immutable once served: a new model is a new version number, so a version label names one
set of weights for as long as a server runs (caches and experiment arms rely on it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

MODEL_NAME = "reranker"
ONNX_MODEL_NAME = "reranker_onnx"
MODEL_INFO_FILE = "MODEL_INFO.json"
TEMPLATES = Path(__file__).parent / "templates"
MODEL_PY = Path(__file__).parent / "model.py"


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
    version: int = 1,
    model_name: str = MODEL_NAME,
    stock_twin: bool = True,
    instances: int = 1,
    max_queue_delay_us: int | None = None,
    parameters: Mapping[str, str] | None = None,
) -> Path:
    """Write (or refresh) ``version`` of ``model_name`` from the checked-in template, and its stock-Triton
    twin, into ``repo``; returns ``repo``. Several models can share one repository (call again with
    another name).

    ``max_queue_delay_us`` and ``parameters`` (model.py's: ort_threads, bucket_rows, bucket_parallel,
    ort_spinning, ...) override the template's, for benchmarks and tests that compare settings.
    """
    onnx_int8, repo = Path(onnx_int8), Path(repo)
    if not onnx_int8.is_file():
        raise FileNotFoundError(onnx_int8)
    if instances <= 0:
        raise ValueError("instances must be positive")
    if version <= 0:
        raise ValueError("Triton versions are positive integers")
    sha = file_sha256(onnx_int8)
    models = {model_name: (MODEL_NAME, True)}
    if stock_twin:
        models[ONNX_MODEL_NAME] = (ONNX_MODEL_NAME, False)
    for name, (template, python_backend) in models.items():
        cfg = read_config(TEMPLATES / template / "config.pbtxt")
        cfg.name = name
        cfg.instance_group[0].count = instances
        cfg.parameters["model_version"].string_value = sha[:12]
        if max_queue_delay_us is not None:
            cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
        for key, value in (parameters or {}).items() if python_backend else ():
            cfg.parameters[key].string_value = value
        version_dir = repo / name / str(version)
        version_dir.mkdir(parents=True, exist_ok=True)
        (repo / name / "config.pbtxt").write_text(text_format.MessageToString(cfg))
        if python_backend:
            shutil.copyfile(MODEL_PY, version_dir / "model.py")
        _link_or_copy(onnx_int8, version_dir / "model.onnx")
    _record_info(repo, list(models), version, sha, onnx_int8, max_batch_size=cfg.max_batch_size,
                 instances=instances)
    return repo


def repository_versions(repo: Path, model: str = MODEL_NAME) -> list[int]:
    """The version numbers ``model`` has in ``repo`` (its numbered directories), ascending."""
    entry = Path(repo) / model
    if not entry.is_dir():
        return []
    return sorted(int(d.name) for d in entry.iterdir() if d.is_dir() and d.name.isdigit() and int(d.name) > 0)


def _record_info(repo: Path, models: list[str], version: int, sha: str, source: Path, **extra: int) -> None:
    path = repo / MODEL_INFO_FILE
    info = json.loads(path.read_text()) if path.exists() else {}
    entry = {"version": sha[:12], "onnx_sha256": sha, "onnx_source": str(source.resolve()),
             "created": datetime.now(UTC).isoformat(timespec="seconds"), **extra}
    for model in models:
        versions = {**info.get(model, {}).get("versions", {}), str(version): entry}
        info[model] = {**entry, "versions": dict(sorted(versions.items(), key=lambda kv: int(kv[0])))}
    path.write_text(json.dumps(info, indent=2) + "\n")
