"""What a served model directory holds, read the same way by building, serving and the harnesses.

``<model_dir>/hf/`` is the PyTorch checkpoint: either the in-house cross-encoder (its `rankserve.json`
config, WordLlama pieces) or any BERT-family Hugging Face cross-encoder (`engines.hf_cross_encoder`, its
own WordPiece tokenizer.json). Beside it: ``model.onnx`` (INT8, served), ``model_fp32.onnx``, the
list-fusion head and the Triton repository ``triton/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from engines.cross_encoder import CONFIG_FILE, CrossEncoder, load_model, read_config
from engines.hf_cross_encoder import HfCrossEncoder, load_hf_cross_encoder, pair_limits
from engines.pair_tokenizer import PairTokenizer
from engines.triton.repository import MODEL_NAME, repository_versions, write_model_repository
from engines.triton.repository import read_config as read_triton_config

HEAD_FILE = "list_fusion.json"  # pipeline.fuse.FILE_NAME (engines do not import the pipeline)
VERSIONS_DIR = "versions"  # <model_dir>/versions/<n>/: what version n of the repository needs besides ONNX

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
        files.append(entry / "config.pbtxt")
        for version in repository_versions(Path(repo), triton_model) or [1]:
            files.append(entry / str(version) / "model.onnx")
            if triton_model == MODEL_NAME:  # the Python-backend entry runs its own model.py
                files.append(entry / str(version) / "model.py")
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


def tokenizer_fingerprint(model_dir: Path) -> str:
    """What decides the token ids a model expects: its vocabulary and normalisation and the pair limits
    (padding and truncation settings saved inside tokenizer.json are left out: serving sets its own)."""
    hf = Path(model_dir) / "hf"
    if is_in_house(model_dir):
        parts: object = json.loads((hf / CONFIG_FILE).read_text())
    else:
        tok = json.loads((hf / "tokenizer.json").read_text())
        parts = [{k: v for k, v in tok.items() if k not in ("truncation", "padding")}, pair_limits(hf)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def stage_version(new_model_dir: Path, served_model_dir: Path) -> int:
    """Add ``new_model_dir``'s ONNX as the next version of ``served_model_dir``'s Triton repository, its
    list-fusion head under ``versions/<n>/``; returns n. Serving tokenizes once per request with the
    served model's tokenizer, so a version must expect the same token ids (ValueError otherwise). The
    model's config (shared by its versions) keeps its instances, batching delay and parameters."""
    new, served = Path(new_model_dir), Path(served_model_dir)
    if tokenizer_fingerprint(new) != tokenizer_fingerprint(served):
        raise ValueError(f"{new}: its tokenizer or pair limits differ from {served}'s; serve it as a model "
                         "of its own, not as a version")
    repo = served / "triton"
    version = max(repository_versions(repo), default=0) + 1
    current = read_triton_config(repo / MODEL_NAME / "config.pbtxt")
    kept = {k: v.string_value for k, v in current.parameters.items() if k != "model_version"}
    extra = served / VERSIONS_DIR / str(version)
    extra.mkdir(parents=True, exist_ok=True)
    if (new / HEAD_FILE).exists():
        shutil.copyfile(new / HEAD_FILE, extra / HEAD_FILE)
    write_model_repository(new / "model.onnx", repo, version=version,
                           instances=current.instance_group[0].count,
                           max_queue_delay_us=current.dynamic_batching.max_queue_delay_microseconds,
                           parameters=kept)
    return version


def version_dir(model_dir: Path, version: str) -> Path:
    """Where version ``version``'s extras live (version 1 is the model directory itself)."""
    return Path(model_dir) if version in ("", "1") else Path(model_dir) / VERSIONS_DIR / version
