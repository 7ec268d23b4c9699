"""The build's publish step: a model directory appears only once a build has finished."""

from __future__ import annotations

from pathlib import Path

from training.build import _publish


def test_a_finished_build_replaces_the_old_one_and_leaves_no_partial(tmp_path: Path) -> None:
    final, partial = tmp_path / "model", tmp_path / "model.partial"
    (final / "hf").mkdir(parents=True)
    (final / "hf" / "stale.bin").write_text("old weights")
    (final / "model.onnx").write_text("old")
    (final / "keep.txt").write_text("not part of a build")
    (partial / "hf").mkdir(parents=True)
    (partial / "hf" / "model.safetensors").write_text("new weights")
    (partial / "model.onnx").write_text("new")
    _publish(partial, final)
    assert not partial.exists()
    assert (final / "model.onnx").read_text() == "new"
    assert sorted(p.name for p in (final / "hf").iterdir()) == ["model.safetensors"]  # no stale mix
    assert (final / "keep.txt").read_text() == "not part of a build"


def test_publish_into_a_new_directory(tmp_path: Path) -> None:
    partial = tmp_path / "m.partial"
    partial.mkdir()
    (partial / "model.onnx").write_text("x")
    _publish(partial, tmp_path / "nested" / "m")
    assert (tmp_path / "nested" / "m" / "model.onnx").read_text() == "x" and not partial.exists()
