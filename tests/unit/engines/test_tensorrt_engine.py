"""The TensorRT path: its Triton entry (plain text, tested here) and the engine build (needs TensorRT and an
NVIDIA GPU, which no project machine has: that test skips)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.tensorrt_engine import TRT_MODEL_NAME, _profile_shapes, build_engine, write_tensorrt_entry
from engines.triton.repository import file_sha256, read_config


def test_tensorrt_entry_is_a_standard_plan_model(tmp_path: Path) -> None:
    plan = tmp_path / "engine.plan"
    plan.write_bytes(b"not a real engine, only bytes to place")
    entry = write_tensorrt_entry(plan, tmp_path / "repo", instances=2)
    cfg = read_config(entry / "config.pbtxt")
    assert cfg.name == TRT_MODEL_NAME and cfg.platform == "tensorrt_plan"
    assert [i.name for i in cfg.input] == ["input_ids", "attention_mask"] and cfg.output[0].name == "score"
    assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU
    assert cfg.parameters["model_version"].string_value == file_sha256(plan)[:12]
    assert (entry / "1" / "model.plan").read_bytes() == plan.read_bytes()
    with pytest.raises(FileNotFoundError):
        write_tensorrt_entry(tmp_path / "missing.plan", tmp_path / "repo")


def test_profile_covers_the_serving_shape() -> None:
    lo, opt, hi = _profile_shapes(1024, 64)
    assert lo <= opt <= hi and opt == (128, 64) and hi == (1024, 64)
    assert _profile_shapes(32, 48)[1] == (32, 48)  # never above the max


def test_int8_without_calibration_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (no project machine has it)")
    with pytest.raises(ValueError, match="calibration"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.plan", precision="int8")


def test_fp16_engine_builds_from_the_exported_model(artifacts, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (no project machine has it)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs an NVIDIA GPU")
    trt = pytest.importorskip("tensorrt")
    plan = build_engine(artifacts.model / "model_fp32.onnx", tmp_path / "m.plan", max_batch=128)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert names == ["input_ids", "attention_mask", "score"]
