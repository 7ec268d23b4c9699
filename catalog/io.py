"""Reading and writing WANDS-format catalog files (tab-separated, CSV quoting for fields with quotes)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

PRODUCT_COLUMNS = ["product_id", "product_name", "product_class", "category_hierarchy", "product_description",
                   "product_features", "rating_count", "average_rating", "review_count", "price", "in_stock"]
QUERY_COLUMNS = ["query_id", "query", "query_class"]
LABEL_COLUMNS = ["id", "query_id", "product_id", "label"]
LABELS = ("Exact", "Partial", "Irrelevant")
LABEL_GAIN = {"Exact": 2, "Partial": 1, "Irrelevant": 0}
_WORD = re.compile(r"[a-z0-9]+")  # a word: what `words` splits text into
CATALOG_FILES = ("product.csv", "query.csv", "label.csv", "catalog.json")  # what `load_catalog` reads

_PRODUCT_DTYPES = {"product_id": "int64", "product_name": str, "product_class": str,
                   "category_hierarchy": str, "product_description": str, "product_features": str,
                   "rating_count": "Int64", "average_rating": "float64", "review_count": "Int64",
                   "price": "float64", "in_stock": "Int64"}  # nullable: `load_catalog` fills empty fields


class ArtifactError(RuntimeError):
    """A file that serving reads is missing, truncated or corrupt; the message names it."""


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Re-raise whatever reading ``path`` raises as an ArtifactError naming the file."""
    try:
        yield
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc


def _read_tsv(path: Path, dtype: dict[str, object]) -> pd.DataFrame:
    with reading(path):
        return _parse_tsv(path, dtype)


def _parse_tsv(path: Path, dtype: dict[str, object]) -> pd.DataFrame:
    # QUOTE_MINIMAL reads WANDS's `"writing desk 48"""` as `writing desk 48"`; keep_default_na=False keeps a
    # query such as "NA" or an empty class as text.
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_MINIMAL, dtype=dtype, keep_default_na=False,
                       na_values={k: [""] for k, v in dtype.items() if v is not str})


def write_tsv(df: pd.DataFrame, path: Path) -> None:
    """Tab-separated, quoting only fields that need it (those with a quote character), LF line ends."""
    df.to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")


def read_queries(path: Path) -> pd.DataFrame:
    """A WANDS query file: query_id (int), query, query_class (may be empty)."""
    df = _read_tsv(Path(path), {"query_id": str, "query": str, "query_class": str})
    missing = [c for c in QUERY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {QUERY_COLUMNS}")
    ids = pd.to_numeric(df["query_id"].str.strip(), errors="coerce")
    if ids.isna().any():
        bad = df.loc[ids.isna(), "query_id"].tolist()[:5]
        raise ValueError(f"{path}: query_id must be an integer, got {bad}")
    df["query_id"] = ids.astype("int64")
    return df[QUERY_COLUMNS].reset_index(drop=True)


def class_parts(product_class: object, sep: str = "|") -> tuple[str, ...]:
    """A product class as its parts: ``"A|B"`` (multi-valued, as WANDS has) -> ("A", "B"); empty or
    missing -> ()."""
    if not isinstance(product_class, str):
        return ()
    return tuple(p.strip() for p in product_class.split(sep) if p.strip())


def format_features(pairs: Iterable[tuple[str, str]]) -> str:
    """`key:value|key:value`; values never contain the separators (they come from normalised words)."""
    out = []
    for k, v in pairs:
        v = v.replace("|", " ").replace(":", " ").replace("\t", " ")
        out.append(f"{k}:{v}")
    return "|".join(out)


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: the word split shared by the item text and match features."""
    return _WORD.findall(text.lower())


def parse_features(text: object) -> list[tuple[str, str]]:
    """Inverse of `format_features` (keys keep their `_2` suffixes); a missing list (empty, None, or a
    pandas NaN, as a real catalog leaves it) has no features. Empty fragments are skipped and a fragment
    without ":" is the value of key ""."""
    if not isinstance(text, str) or not text:
        return []
    pairs: list[tuple[str, str]] = []
    for item in text.split("|"):
        if not item.strip():  # "color:red|": a trailing or doubled separator
            continue
        key, colon, value = item.partition(":")
        # A fragment without a key ("color:red|blue") is kept as a value of no known attribute: which key
        # it belongs to is a guess, but its words still describe the item.
        pairs.append((key, value) if colon else ("", item))
    return pairs


def feature_attrs(text: str) -> set[tuple[str, str]]:
    """(family, value) pairs of a features string: `color_2:peach` is family color."""
    out = set()
    for key, value in parse_features(text):
        family, _, suffix = key.rpartition("_")
        out.add((family, value) if family and suffix.isdigit() else (key, value))
    return out


@dataclass(frozen=True)
class Catalog:
    root: Path
    products: pd.DataFrame  # indexed 0..N-1 by product_id (column kept); in_stock as bool, counts int64
    queries: pd.DataFrame
    labels: pd.DataFrame
    meta: dict

    def categories(self) -> list[str]:
        """Distinct product classes, sorted (`retrieval.filters.FilterColumns.categories` lists what a
        category filter takes)."""
        return sorted(self.products["product_class"].unique().tolist())


def load_catalog(root: Path) -> Catalog:
    """The catalog files under ``root``. An empty rating_count or review_count reads as 0 (no ratings);
    an empty in_stock reads as True: unknown stock must not hide an item from `in_stock_only` searches.
    An empty average_rating or price stays NaN (no rating, no price: price filters then exclude it)."""
    root = Path(root)
    products = _read_tsv(root / "product.csv", _PRODUCT_DTYPES)
    products = products.sort_values("product_id").reset_index(drop=True)
    if not (products["product_id"].to_numpy() == range(len(products))).all():
        raise ValueError(f"{root}/product.csv: product_id must be contiguous 0..N-1")
    for column in ("rating_count", "review_count"):
        products[column] = products[column].fillna(0).astype("int64")
    products["in_stock"] = products["in_stock"].fillna(1).astype(bool)
    queries = read_queries(root / "query.csv")
    labels = _read_tsv(root / "label.csv", {"id": "int64", "query_id": "int64", "product_id": "int64",
                                            "label": str})
    with reading(root / "catalog.json"):
        meta = json.loads((root / "catalog.json").read_text())
    return Catalog(root, products, queries, labels, meta)


def item_texts(products: pd.DataFrame) -> list[str]:
    """Text embedded for retrieval and given to the reranker: `title | class | feature values`. Every
    feature value is kept (a brand, a collection, a colour) except one whose words the title already
    holds all of: it would add nothing but a second count of the same words. Nothing here knows which
    keys a catalog fills or where its titles put them. A "|" inside a field (a title "Sofa | Grey", a
    multi-valued class "Rugs|Mats") becomes "/", so `split_fields` only ever splits at the separators."""
    out: list[str] = []
    names: Sequence[str] = products["product_name"].tolist()
    classes: Sequence[str] = products["product_class"].tolist()
    for name, cls, feats in zip(names, classes, products["product_features"].tolist(), strict=True):
        title = set(words(str(name)))
        values = " ".join(v for _, v in parse_features(feats) if not set(words(v)) <= title)
        out.append(" | ".join(str(f).replace("|", "/") for f in (name, cls, values)))
    return out
