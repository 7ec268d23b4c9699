"""Query rules: what a query's Exact products must hold, and which products hold it.

A rule is the query's class plus every attribute its modifiers require; `exact_pairs` tests products
against all rules at once, which is how the builder keeps Exact judgments complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from catalog.parse import ParsedQuery, infer_class, parse_query
from catalog.vocabulary import EXTRA_CLASSES, Lexicon, normalize

Attr = tuple[str, str]  # (family, canonical value)


@dataclass(frozen=True)
class QueryRule:
    """A query's Exact rule: products of `product_class` holding every `required` attribute."""

    query_id: int
    text: str
    product_class: str
    required: tuple[Attr, ...]
    parsed: ParsedQuery
    inferred: bool = False  # class inferred because the query file left it empty


def catalog_classes(query_classes: Iterable[str]) -> list[str]:
    """Query classes plus built-in distractor classes, deduplicated by normalised name, sorted."""
    seen: dict[str, str] = {}
    for c in [*sorted(set(query_classes)), *EXTRA_CLASSES]:
        if c.strip():
            seen.setdefault(normalize(c), c)
    return sorted(seen.values())


def query_rules(queries: pd.DataFrame) -> tuple[list[QueryRule], Lexicon]:
    """Parse every query (first row of a duplicated query_id wins) into its Exact rule."""
    rows = queries.drop_duplicates("query_id", keep="first")
    given = [c for c in rows["query_class"] if c.strip()]
    base = Lexicon.build(catalog_classes(given))
    query_file_lex = Lexicon.build(sorted(set(given))) if given else base
    classes: list[str] = []
    inferred: list[bool] = []
    for text, cls in zip(rows["query"], rows["query_class"], strict=True):
        if cls.strip():
            classes.append(cls)
            inferred.append(False)
        else:
            # Query-file classes first so a query never lands in a distractor class.
            classes.append(infer_class(text, query_file_lex) if given else infer_class(text, base))
            inferred.append(True)
    lex = Lexicon.build(catalog_classes([*given, *classes]))
    rules = []
    for qid, text, cls, inf in zip(rows["query_id"], rows["query"], classes, inferred, strict=True):
        parsed = parse_query(text, cls, lex)
        rules.append(QueryRule(int(qid), text, cls, parsed.required(), parsed, inf))
    return rules, lex


# --- exact-rule check --------------------------------------------------------------------------------------


def exact_pairs(product_classes: Sequence[str], product_attrs: Sequence[Iterable[Attr]],
                rules: Sequence[QueryRule]) -> list[tuple[int, int]]:
    """All (rule index, product index) pairs where the product satisfies the rule, indexed by class so
    it costs one pass over the products plus a small boolean matrix per class."""
    by_class: dict[str, list[int]] = {}
    for r, rule in enumerate(rules):
        by_class.setdefault(rule.product_class, []).append(r)
    rows_of: dict[str, list[int]] = {c: [] for c in by_class}
    for p, c in enumerate(product_classes):
        if c in rows_of:
            rows_of[c].append(p)
    out: list[tuple[int, int]] = []
    for cls, ridx in by_class.items():
        prods = rows_of[cls]
        if not prods:
            continue
        cols: dict[Attr, int] = {}
        for r in ridx:
            for a in rules[r].required:
                cols.setdefault(a, len(cols))
        held = np.zeros((len(prods), max(len(cols), 1)), dtype=bool)
        for row, p in enumerate(prods):
            for a in product_attrs[p]:
                j = cols.get(a)
                if j is not None:
                    held[row, j] = True
        pid = np.asarray(prods)
        for r in ridx:
            need = [cols[a] for a in rules[r].required]
            ok = held[:, need].all(axis=1) if need else np.ones(len(prods), dtype=bool)
            out.extend((r, int(p)) for p in pid[ok])
    return out
