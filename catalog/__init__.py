"""Generated WANDS-format catalogs: products, queries and graded judgments built from a query file.

See docs/catalog.md for the generation rules.
"""

from __future__ import annotations

from catalog.builder import BUILDER_VERSION, build_catalog
from catalog.io import LABEL_GAIN, LABELS, Catalog, feature_attrs, item_texts, load_catalog
from catalog.rules import QueryRule, exact_pairs, query_rules

__all__ = [
    "BUILDER_VERSION",
    "LABELS",
    "LABEL_GAIN",
    "Catalog",
    "QueryRule",
    "build_catalog",
    "exact_pairs",
    "feature_attrs",
    "item_texts",
    "load_catalog",
    "query_rules",
]
