"""BM25 query tokenisation: the index's ids, without growing the shared tokenizer."""

from __future__ import annotations

import copy

from retrieval.bm25 import BM25Index

DOCS = ["Turquoise velvet pillow", "Oak dining chair, set of 2", "Brass floor lamps", "glass end table"]
QUERIES = ["turquoise pillows", "OAK chairs", "the lamp", "glasses and tables", "zorblax", "", "of the", "!!"]


def test_query_ids_are_the_tokenizers_and_leave_it_unchanged() -> None:
    index = BM25Index.build(DOCS, progress=False)
    tables = [dict(t) for t in (index.tokenizer.word_to_stem, index.tokenizer.word_to_id,
                                index.tokenizer.stem_to_sid)]
    reference = copy.deepcopy(index.tokenizer)  # bm25s's own query tokenisation, on a private copy
    empty = reference.get_vocab_dict().get("")
    for query in QUERIES:
        want = reference.tokenize([query], update_vocab=False, return_as="ids", show_progress=False)[0]
        assert index._query_ids(query) == [i for i in want if i != empty]
    assert index._query_ids("turquoise pillows") and not index._query_ids("zorblax of the")
    for i in range(500):  # unknown words, and new spellings of known stems ("chairs", "lamp")
        index.search([f"word{i} chairs lamp pillows{i}"], 3)
    assert [index.tokenizer.word_to_stem, index.tokenizer.word_to_id, index.tokenizer.stem_to_sid] == tables
