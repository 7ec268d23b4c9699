"""The embed stage: static WordLlama sentence embeddings, mean of pretrained 256-d token vectors,
L2-normalised.

No model forward pass: tokenising with the fast (Rust) tokenizer and one gather + segment sum per batch
is all it takes, so 40k item texts embed in a few seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Protocol

import numpy as np
from rich.progress import Progress
from tokenizers import Tokenizer

from retrieval.wordllama import EMBEDDING_DIM, EOS_ID, load_token_embeddings, load_tokenizer

DEFAULT_MAX_TOKENS = 64


class Embedder(Protocol):
    """The embed stage: one query text -> its (dim,) float32 vector in the index's space."""

    def embed_query(self, text: str) -> np.ndarray: ...


@dataclass
class WordLlamaEmbedder:
    """Average-pooled, L2-normalised WordLlama (l2_supercat, 256-d) embeddings.

    Texts are tokenised without special tokens (<s>/</s> would add the same vector to every text and
    shrink the differences between them) and truncated at `max_tokens`. Empty or all-padding texts map
    to the zero vector, whose inner product with anything is 0 (never NaN).
    """

    max_tokens: int = DEFAULT_MAX_TOKENS
    _tokenizer: Tokenizer = field(init=False, repr=False)
    _table: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        self._tokenizer = load_tokenizer()
        self._tokenizer.enable_truncation(max_length=self.max_tokens)
        self._table = load_token_embeddings()

    @property
    def dim(self) -> int:
        return EMBEDDING_DIM

    @property
    def id(self) -> str:
        """Identifies the vector space; an index built with another id is not comparable."""
        return f"wordllama-l2_supercat-{EMBEDDING_DIM}-mean-l2norm-t{self.max_tokens}"

    def embed(self, texts: Sequence[str], *, batch_size: int = 1024, progress: bool = False) -> np.ndarray:
        """Embed `texts` -> (n, dim) float32, rows unit-norm (or zero for empty texts)."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("embedding", total=len(texts))
            for start in starts:
                batch = [str(t) for t in texts[start : start + batch_size]]
                out[start : start + len(batch)] = self._embed_batch(batch)
                bar.advance(task, len(batch))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One text -> (dim,) float32 (no progress bar, no batching: the per-request path)."""
        return self._embed_batch([str(text)])[0]

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        # Strip so whitespace-only text is empty (the tokenizer would emit a lone "▁" token for it).
        encodings = self._tokenizer.encode_batch([t.strip() for t in texts], add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        # chain.from_iterable flattens in C: no per-token Python bytecode.
        flat = chain.from_iterable(e.ids for e in encodings)
        ids = np.fromiter(flat, dtype=np.int64, count=int(lengths.sum()))
        # Drop <unk>/<s>/</s>: they carry no meaning, so an all-unknown text pools to the zero vector.
        keep = ids > EOS_ID
        rows = np.repeat(np.arange(len(texts)), lengths)[keep]
        ids = ids[keep]
        counts = np.bincount(rows, minlength=len(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        nonempty = counts > 0
        if not nonempty.any():
            return out
        # reduceat mis-handles empty segments, so sum only the non-empty ones: their offsets are distinct.
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))[nonempty]
        sums = np.add.reduceat(self._table[ids], offsets, axis=0)
        # The mean's 1/len factor cancels under L2 normalisation; guard exact-zero sums anyway.
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        out[nonempty] = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)
        return out
