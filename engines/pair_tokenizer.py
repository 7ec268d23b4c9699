"""(query, document) pair tokenisation for the cross-encoder.

Layout of every row: ``CLS query SEP doc SEP`` followed by padding up to the batch's longest pair:
``<s> q </s> d </s>`` over the WordLlama (Llama-2) vocabulary of the in-house model, ``[CLS] q [SEP] d
[SEP]`` over a BERT WordPiece vocabulary (`PairTokenizer.from_file`, a Hugging Face tokenizer.json).
The query is capped first (``max_query_tokens``) so a long query can't starve the doc; the doc is then
truncated to what is left of ``max_length``. Sub-word tokenisation is done by the Rust fast tokenizer
(``encode_batch``); rows are assembled with numpy index arithmetic, never Python loops over tokens.
Text that spells a special token ("</s>", "[SEP]") is split as ordinary text: only the layout places
special ids, so a query or title can't move the segment boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from cachetools import LRUCache
from tokenizers import Tokenizer, normalizers

from retrieval.wordllama import BOS_ID, EOS_ID, PAD_ID, load_tokenizer

# CLS, SEP, SEP
NUM_SPECIAL = 3


@dataclass(frozen=True)
class PairLayout:
    """The special token ids a pair is laid out with."""

    cls_id: int
    sep_id: int
    pad_id: int


WORDLLAMA = PairLayout(BOS_ID, EOS_ID, PAD_ID)


def _with_starts(flat: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(flat, starts, lens)``: the ragged layout every encoder returns."""
    starts = np.zeros_like(lens)
    np.cumsum(lens[:-1], out=starts[1:])
    return flat, starts, lens


def _ragged(encodings: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened ids, row starts and row lengths of a batch of `tokenizers.Encoding`s."""
    lens = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    flat = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=int(lens.sum()))
    return _with_starts(flat, lens)


def assemble_pairs(
    q_flat: np.ndarray,
    q_starts: np.ndarray,
    q_lens: np.ndarray,
    d_flat: np.ndarray,
    d_starts: np.ndarray,
    d_lens: np.ndarray,
    layout: PairLayout = WORDLLAMA,
) -> tuple[np.ndarray, np.ndarray]:
    """Lay out rows ``CLS q SEP d SEP`` from ragged (already truncated) query/doc token ids.

    ``q_starts`` may repeat (one query shared by all rows). Returns int64 ``(ids, mask)`` of shape
    ``(n, L)`` with L the longest row.
    """
    n = len(d_lens)
    if n == 0:
        return np.zeros((0, NUM_SPECIAL), np.int64), np.zeros((0, NUM_SPECIAL), np.int64)
    total = q_lens + d_lens + NUM_SPECIAL
    width = int(total.max())
    col = np.arange(width, dtype=np.int64)[None, :]
    ql = q_lens[:, None]
    dl = d_lens[:, None]
    ids = np.full((n, width), layout.pad_id, dtype=np.int64)

    in_q = (col >= 1) & (col <= ql)
    d_off = col - ql - 2
    in_d = (d_off >= 0) & (d_off < dl)
    # Clip the gather indices so out-of-region cells read a valid (ignored) element.
    q_idx = np.clip(q_starts[:, None] + col - 1, 0, max(len(q_flat) - 1, 0))
    d_idx = np.clip(d_starts[:, None] + d_off, 0, max(len(d_flat) - 1, 0))
    if len(q_flat):
        ids = np.where(in_q, q_flat[q_idx], ids)
    if len(d_flat):
        ids = np.where(in_d, d_flat[d_idx], ids)
    ids[:, 0] = layout.cls_id
    rows = np.arange(n)
    ids[rows, q_lens + 1] = layout.sep_id
    ids[rows, total - 1] = layout.sep_id
    mask = (col < total[:, None]).astype(np.int64)
    return ids, mask


class PairTokenizer:
    """Batched pair encoder over a fast tokenizer: WordLlama's (Llama-2) by default, or any BERT-family
    tokenizer.json (`from_file`).

    ``doc_cache_size`` > 0 memoises the token ids of up to that many distinct doc texts (least
    recently used evicted first). Served docs are catalog texts that repeat across queries, so a warm cache
    leaves only the query to tokenize per request.

    Text is lower-cased first (``lowercase``): the cased Llama vocabulary splits "Navy" and "navy"
    into different pieces, and the reranker matches query words against product words.
    """

    def __init__(
        self,
        max_length: int = 48,
        max_query_tokens: int = 16,
        *,
        doc_cache_size: int = 0,
        lowercase: bool = True,
        tokenizer: Tokenizer | None = None,
        layout: PairLayout = WORDLLAMA,
    ) -> None:
        if max_length < max_query_tokens + NUM_SPECIAL + 1:
            raise ValueError("max_length must leave room for the query, a doc token and 3 specials")
        if doc_cache_size < 0:
            raise ValueError("doc_cache_size must be >= 0")
        self.max_length = max_length
        self.max_query_tokens = max_query_tokens
        self.doc_cache_size = doc_cache_size
        self._doc_ids: LRUCache[str, np.ndarray] | None = LRUCache(doc_cache_size) if doc_cache_size else None
        self.layout = layout
        self._tok = tokenizer or load_tokenizer()
        self._tok.no_padding()
        # Without this the fast tokenizer turns a literal "[SEP]" / "</s>" in user text into the special id.
        self._tok.encode_special_tokens = True
        if lowercase:
            self._tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), self._tok.normalizer])
        # Rust-side cap so very long docs are never fully materialised; the exact per-row cap
        # (which depends on the query length) is applied in numpy.
        self._tok.enable_truncation(max_length - NUM_SPECIAL - 1)

    def _encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _ragged(self._tok.encode_batch(list(texts), add_special_tokens=False))

    def _encode_docs(self, docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cache = self._doc_ids
        if cache is None:
            return self._encode(docs)
        known = {d: cache.get(d) for d in dict.fromkeys(docs)}
        missing = [d for d, ids in known.items() if ids is None]
        encoded = self._tok.encode_batch(missing, add_special_tokens=False) if missing else []
        for d, e in zip(missing, encoded, strict=True):
            known[d] = cache[d] = np.asarray(e.ids, dtype=np.int64)
        rows = [known[d] for d in docs]
        lens = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        # Cached rows are arrays: concatenating them is ~10x faster than `_ragged`'s fromiter.
        return _with_starts(np.concatenate(rows) if rows else np.zeros(0, np.int64), lens)

    def _finish(
        self, q: tuple[np.ndarray, np.ndarray, np.ndarray], d: tuple[np.ndarray, np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        q_flat, q_starts, q_lens = q
        d_flat, d_starts, d_lens = d
        q_lens = np.minimum(q_lens, self.max_query_tokens)
        d_lens = np.minimum(d_lens, self.max_length - NUM_SPECIAL - q_lens)
        return assemble_pairs(q_flat, q_starts, q_lens, d_flat, d_starts, d_lens, self.layout)

    def encode(self, query: str, docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)``, int64, shape ``(len(docs), L)``, L = longest pair."""
        q_flat, _, q_len = self._encode([query])
        n = len(docs)
        q = (q_flat, np.zeros(n, np.int64), np.repeat(q_len, n))
        return self._finish(q, self._encode_docs(docs))

    def encode_pairs(self, queries: Sequence[str], docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Like `encode` but one query per doc (training / evaluation batches)."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries for {len(docs)} docs")
        return self._finish(self._encode(queries), self._encode(docs))

    @classmethod
    def from_file(cls, path: Path, max_length: int = 64, max_query_tokens: int = 16, *,
                  doc_cache_size: int = 0) -> PairTokenizer:
        """A BERT-family tokenizer.json: ``[CLS] q [SEP] d [SEP]``, padded with its ``[PAD]``. Its own
        normalizer decides casing (an uncased WordPiece vocabulary lower-cases already)."""
        tok = Tokenizer.from_file(str(path))
        ids = {name: tok.token_to_id(name) for name in ("[CLS]", "[SEP]", "[PAD]")}
        if None in ids.values():
            missing = [name for name, i in ids.items() if i is None]
            raise ValueError(f"{path}: not a BERT-family tokenizer (no {missing})")
        return cls(max_length, max_query_tokens, doc_cache_size=doc_cache_size, lowercase=False,
                   tokenizer=tok, layout=PairLayout(ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]))
