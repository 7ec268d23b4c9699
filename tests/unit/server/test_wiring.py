"""What serving without building checks for before it starts (`missing_artifacts`)."""

from __future__ import annotations

from pathlib import Path

from server.config import Settings
from server.wiring import missing_artifacts


def layout(root: Path, files: list[str]) -> None:
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("x")


CATALOG = ["catalog/product.csv", "catalog/query.csv", "catalog/label.csv", "catalog/catalog.json",
           "catalog/index.json", "catalog/items.faiss", "catalog/item_vectors.npy", "catalog/filters.npz"]
HF = ["model/hf/config.json", "model/hf/tokenizer.json"]
TRITON = ["model/triton/reranker/config.pbtxt", "model/triton/reranker/1/model.onnx",
          "model/triton/reranker/1/model.py"]


def settings(root: Path, **kw: object) -> Settings:
    return Settings(catalog_dir=root / "catalog", model_dir=root / "model", **kw)  # type: ignore[arg-type]


def test_everything_present_is_nothing_missing(tmp_path: Path) -> None:
    layout(tmp_path, CATALOG + HF + TRITON)
    assert missing_artifacts(settings(tmp_path)) == []


def test_each_missing_file_is_named(tmp_path: Path) -> None:
    layout(tmp_path, CATALOG[1:] + HF + TRITON[:1])
    missing = missing_artifacts(settings(tmp_path))
    assert missing == [tmp_path / CATALOG[0], tmp_path / TRITON[1], tmp_path / TRITON[2]]


def test_engine_decides_what_the_model_directory_must_hold(tmp_path: Path) -> None:
    layout(tmp_path, CATALOG + HF)
    # An external Triton holds the repository: only the tokenizer side is read here.
    assert missing_artifacts(settings(tmp_path, triton_url="triton:8001")) == []
    # The in-process torch engine loads the weights.
    assert missing_artifacts(settings(tmp_path, reranker_engine="torch")) == [
        tmp_path / "model/hf/model.safetensors"]
    # The stock ORT entry has no model.py.
    layout(tmp_path, ["model/triton/reranker_onnx/config.pbtxt", "model/triton/reranker_onnx/1/model.onnx"])
    assert missing_artifacts(settings(tmp_path, triton_model="reranker_onnx")) == []
