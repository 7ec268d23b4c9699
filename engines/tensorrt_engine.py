"""ONNX -> TensorRT engine (FP16, or INT8 calibrated on training pairs) and its Triton `tensorrt_plan` entry.

The GPU deployment's fastest reranker: the exported FP32 ONNX graph (`training.export`, the same graph
the INT8 CPU model is quantised from) built into a TensorRT plan with one optimisation profile over
batch and sequence length, served by the stock Triton image's tensorrt backend as ``reranker_trt``.

TensorRT needs an NVIDIA GPU and the ``tensorrt`` package (the ``gpu`` extra). Neither exists on the
project's CPU machines, and the lent GPU has no TensorRT either, so `build_engine` has never run
here: its test skips where ``tensorrt`` is absent. `write_tensorrt_entry` is plain text and is tested.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from google.protobuf import text_format

from engines.triton.repository import TEMPLATES, file_sha256, read_config

TRT_MODEL_NAME = "reranker_trt"
Precision = Literal["fp16", "int8"]


def _profile_shapes(max_batch: int, max_length: int) -> tuple[tuple[int, int], ...]:
    """(min, opt, max) input shapes: a 100-candidate request of 64 tokens is the serving shape."""
    return (1, 8), (min(128, max_batch), min(64, max_length)), (max_batch, max_length)


def build_engine(
    onnx_fp32: Path,
    plan: Path,
    *,
    precision: Precision = "fp16",
    max_batch: int = 1024,
    max_length: int = 64,
    calibration: Iterator[tuple[np.ndarray, np.ndarray]] | None = None,
    workspace_gib: float = 4.0,
) -> Path:
    """Build a TensorRT plan from the FP32 ONNX model; INT8 needs ``calibration`` batches of
    (input_ids, attention_mask) int64 arrays (train pairs, as the CPU INT8 model's parity gate uses)."""
    import tensorrt as trt

    if precision == "int8" and calibration is None:
        raise ValueError("an INT8 engine needs calibration batches")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT >= 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_fp32).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_fp32}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.set_flag(trt.BuilderFlag.FP16)  # INT8 layers fall back to FP16, not FP32
    profile = builder.create_optimization_profile()
    lo, opt, hi = _profile_shapes(max_batch, max_length)
    for name in ("input_ids", "attention_mask"):
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(trt, calibration, plan.with_suffix(".calib"))
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT engine build failed (see the log above)")
    plan = Path(plan)
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_bytes(bytes(serialized))
    return plan


def _calibrator(trt: Any, batches: Iterator[tuple[np.ndarray, np.ndarray]], cache: Path) -> Any:
    """An entropy calibrator over (input_ids, attention_mask) batches, with an on-disk cache."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches = iter(batches)
            self.keep: list[torch.Tensor] = []
            self.size = 0

        def get_batch_size(self) -> int:
            return self.size or 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                ids, mask = next(self.batches)
            except StopIteration:
                return None
            self.size = len(ids)
            self.keep = [torch.from_numpy(np.ascontiguousarray(a)).cuda() for a in (ids, mask)]
            by_name = dict(zip(("input_ids", "attention_mask"), self.keep, strict=True))
            return [int(by_name[n].data_ptr()) for n in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data: bytes) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()


def write_tensorrt_entry(plan: Path, repo: Path, *, instances: int = 1) -> Path:
    """Add ``reranker_trt`` (the checked-in template, ``model.plan``) to the Triton repository ``repo``."""
    plan, repo = Path(plan), Path(repo)
    if not plan.is_file():
        raise FileNotFoundError(plan)
    cfg = read_config(TEMPLATES / TRT_MODEL_NAME / "config.pbtxt")
    cfg.instance_group[0].count = instances
    cfg.parameters["model_version"].string_value = file_sha256(plan)[:12]

    version_dir = repo / TRT_MODEL_NAME / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    (repo / TRT_MODEL_NAME / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    shutil.copyfile(plan, version_dir / "model.plan")
    return repo / TRT_MODEL_NAME
