"""Generated WANDS-format catalogs: products, queries and graded judgments built from a query file.

See docs/catalog.md for the generation rules.
"""

from __future__ import annotations

from catalog.builder import BUILDER_VERSION, QueryRule, build_catalog, exact_pairs, query_rules
from catalog.io import LABEL_GAIN, LABELS, Catalog, feature_attrs, item_texts, load_catalog

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
