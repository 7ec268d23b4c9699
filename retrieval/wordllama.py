"""Offline access to the pretrained WordLlama assets shipped inside the `wordllama` wheel.

`WordLlama.load()` still tries to reach the hub, so the tokenizer config and the 256-d token
embedding table are read from the installed package files directly.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

TOKENIZER_FILE = "l2_supercat_tokenizer_config.json"
WEIGHTS_FILE = "l2_supercat_256.safetensors"
EMBEDDING_DIM = 256
# Llama-2 special tokens: <unk>=0, <s>=1, </s>=2; WordLlama pads with </s>.
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
PAD_ID = EOS_ID


def tokenizer_path() -> Path:
    return Path(str(resources.files("wordllama") / "tokenizers" / TOKENIZER_FILE))


def weights_path() -> Path:
    return Path(str(resources.files("wordllama") / "weights" / WEIGHTS_FILE))


def load_tokenizer() -> Tokenizer:
    """A fresh fast tokenizer (callers may change its padding/truncation state)."""
    tok = Tokenizer.from_file(str(tokenizer_path()))
    tok.no_padding()
    tok.no_truncation()
    return tok


@cache
def load_token_embeddings() -> np.ndarray:
    """The (32000, 256) float32 token embedding table; read once per process, read-only."""
    from safetensors.numpy import load_file

    table = load_file(str(weights_path()))["embedding.weight"].astype(np.float32)
    table.setflags(write=False)
    return table
