"""What a served model directory holds, read the same way by building, serving and the harnesses.

``<model_dir>/hf/`` is the PyTorch checkpoint: either the in-house cross-encoder (its `rankserve.json`
config, WordLlama pieces) or any BERT-family Hugging Face cross-encoder (`engines.hf_cross_encoder`, its
own WordPiece tokenizer.json). Beside it: ``model.onnx`` (INT8, served), ``model_fp32.onnx``, the
list-fusion head and the Triton repository ``triton/``.
"""

from __future__ import annotations

from pathlib import Path

from engines.cross_encoder import CONFIG_FILE, CrossEncoder, load_model, read_config
from engines.hf_cross_encoder import HfCrossEncoder, load_hf_cross_encoder, pair_limits
from engines.pair_tokenizer import PairTokenizer
from engines.triton.repository import MODEL_NAME, write_model_repository

# Both take (input_ids, attention_mask) and give one logit per pair, and offer `score`,
# `pair_tokenizer` and `int8_embeddings`: export, quantisation and the parity gate treat them alike.
ServedModel = CrossEncoder | HfCrossEncoder


def served_files(model_dir: Path, *, engine: str, triton_model: str, repo: Path | None) -> list[Path]:
    """What serving ``model_dir`` with ``engine`` reads, as written by `rankserve build`: the
    checkpoint's config and tokenizer always (the pair tokenizer and pad id come from it), the weights
    for the in-process torch engine, and for Triton the entry in ``repo`` (None: an external Triton
    holds the repository)."""
    model_dir = Path(model_dir)
    hf = model_dir / "hf"
    if is_in_house(model_dir):
        files = [hf / CONFIG_FILE]
    else:
        files = [hf / "config.json", hf / "tokenizer.json"]
        if engine == "torch":
            files.append(hf / "model.safetensors")
    if engine == "triton" and repo is not None:
        entry = Path(repo) / triton_model
        files += [entry / "config.pbtxt", entry / "1" / "model.onnx"]
        if triton_model == MODEL_NAME:  # the Python-backend entry runs its own model.py
            files.append(entry / "1" / "model.py")
    return files


def is_in_house(model_dir: Path) -> bool:
    return (Path(model_dir) / "hf" / CONFIG_FILE).exists()


def load_served_model(model_dir: Path) -> ServedModel:
    """The PyTorch model behind ``model_dir``, in eval mode."""
    hf = Path(model_dir) / "hf"
    return load_model(hf) if is_in_house(model_dir) else load_hf_cross_encoder(hf)


def pair_tokenizer_for(model_dir: Path, doc_cache_size: int = 0) -> PairTokenizer:
    """The pair tokenizer the model was built with, without loading its weights."""
    hf = Path(model_dir) / "hf"
    if is_in_house(model_dir):
        return read_config(hf).pair_tokenizer(doc_cache_size)
    return PairTokenizer.from_file(hf / "tokenizer.json", **pair_limits(hf), doc_cache_size=doc_cache_size)


def write_served_repository(model_dir: Path, repo: Path | None = None, *, instances: int = 1) -> Path:
    """The Triton repository for ``model_dir/model.onnx``, padding batches with the model's own pad id."""
    model_dir = Path(model_dir)
    pad = pair_tokenizer_for(model_dir).layout.pad_id
    return write_model_repository(model_dir / "model.onnx", repo or model_dir / "triton", instances=instances,
                                  parameters={"pad_token_id": str(pad)})
