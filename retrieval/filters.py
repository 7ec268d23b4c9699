"""Structured search filters and the per-item columns they are evaluated against.

Category matching (case-insensitive, surrounding whitespace ignored) accepts either
  * a `product_class` ("Accent Pillows") or one part of a multi-valued class ("Rugs" matches "Rugs|Mats";
    parts as `catalog.io.class_parts` splits them); class names that differ only in case or spacing are
    one category, or
  * a prefix of `category_hierarchy` at level boundaries: "Furniture" or
    "Furniture / Living Room Furniture" match every item whose hierarchy starts with those levels
    (levels are split on "/"; spacing around the slashes does not matter).
A name that is both a class and a hierarchy prefix matches the union of the two. A blank category means
"any"; one that is not blank but normalises to nothing ("/", " // ") names no category: FilterError.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from catalog.io import class_parts


class FilterError(ValueError):
    """An invalid filter value; `field` names the offending Filters field (for INVALID_ARGUMENT)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Filters:
    """Hard constraints on the candidate set. A blank category means "any" (proto3 default "")."""

    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    in_stock_only: bool = False

    def __post_init__(self) -> None:
        if self.category is not None and not self.category.strip():
            object.__setattr__(self, "category", None)
        for name in ("min_price", "max_price"):
            value = getattr(self, name)
            if value is None:
                continue
            if not math.isfinite(value):
                raise FilterError(name, f"must be a finite number, got {value}")
            if value < 0:
                raise FilterError(name, f"must be >= 0, got {value}")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise FilterError("min_price", f"min_price {self.min_price} > max_price {self.max_price}")

    @property
    def empty(self) -> bool:
        return (
            self.category is None
            and self.min_price is None
            and self.max_price is None
            and not self.in_stock_only
        )


def normalize_category(name: str) -> str:
    """Case/spacing-insensitive key for class names and hierarchy paths."""
    return " / ".join(" ".join(part.split()).lower() for part in name.split("/") if part.strip())


def _hierarchy_prefixes(path: str) -> list[str]:
    levels = [level for level in normalize_category(path).split(" / ") if level]  # "" names nothing
    return [" / ".join(levels[: i + 1]) for i in range(len(levels))]


@dataclass(frozen=True)
class FilterColumns:
    """Per-item filter columns, row i = product_id i, built once from the catalog.

    `class_codes` index `class_names` (the distinct full product_class strings); `hierarchy_codes` index
    `hierarchy_names` (the distinct full category_hierarchy strings), so a class, class part or prefix
    match reduces to an `isin` over the few codes whose names it selects.
    """

    class_codes: np.ndarray  # int32 (n,)
    price: np.ndarray  # float32 (n,)
    in_stock: np.ndarray  # bool (n,)
    class_names: tuple[str, ...]
    hierarchy_codes: np.ndarray  # int32 (n,)
    hierarchy_names: tuple[str, ...]
    # normalized name -> class codes / hierarchy codes it selects
    _class_lookup: dict[str, np.ndarray] = field(init=False, repr=False, compare=False)
    _prefix_lookup: dict[str, np.ndarray] = field(init=False, repr=False, compare=False)
    _class_shown: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.class_codes)
        for name in ("price", "in_stock", "hierarchy_codes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"column {name} has {len(getattr(self, name))} rows, expected {n}")
        classes: dict[str, list[int]] = {}
        shown: dict[str, str] = {}  # key -> the first spelling met, what `categories` lists
        for code, name in enumerate(self.class_names):
            # The whole class and each of its parts; "" (an empty class) is no category one can ask for.
            for part in (name, *class_parts(name)):
                key = normalize_category(part)
                if key and code not in classes.setdefault(key, []):
                    classes[key].append(code)
                    shown.setdefault(key, part.strip())
        prefixes: dict[str, list[int]] = {}
        for code, path in enumerate(self.hierarchy_names):
            for prefix in _hierarchy_prefixes(path):
                prefixes.setdefault(prefix, []).append(code)
        object.__setattr__(self, "_class_lookup", _code_arrays(classes))
        object.__setattr__(self, "_class_shown", shown)
        object.__setattr__(self, "_prefix_lookup", _code_arrays(prefixes))

    @property
    def n(self) -> int:
        return len(self.class_codes)

    @classmethod
    def from_products(cls, products: pd.DataFrame) -> FilterColumns:
        """Products must be indexed by product_id 0..n-1 in order (the catalog contract)."""
        ids = products["product_id"].to_numpy() if "product_id" in products else products.index.to_numpy()
        if not np.array_equal(ids, np.arange(len(products))):
            raise ValueError("products must be ordered by product_id 0..n-1")
        classes = pd.Categorical(products["product_class"].fillna("").astype(str))
        hierarchy = pd.Categorical(products["category_hierarchy"].fillna("").astype(str))
        return cls(
            class_codes=classes.codes.astype(np.int32),
            price=products["price"].to_numpy(dtype=np.float32),
            in_stock=products["in_stock"].to_numpy(dtype=bool),
            class_names=tuple(classes.categories),
            hierarchy_codes=hierarchy.codes.astype(np.int32),
            hierarchy_names=tuple(hierarchy.categories),
        )

    def categories(self) -> list[str]:
        """The class names a category filter takes, sorted (what `Info` lists): each class and each part
        of a multi-valued one ("A|B" lists "A|B", "A" and "B"), one spelling per name, none for an empty
        class or one that names nothing ("/")."""
        return sorted(self._class_shown.values())

    def category_mask(self, category: str) -> np.ndarray:
        """Items of that product class (or class part) or under that hierarchy prefix; FilterError if it
        names neither (a name that normalises to "" never does)."""
        key = normalize_category(category)
        class_codes = self._class_lookup.get(key)
        prefix_codes = self._prefix_lookup.get(key)
        if class_codes is None and prefix_codes is None:
            raise FilterError("category", f"unknown category {category!r}")
        mask = np.zeros(self.n, dtype=bool)
        if class_codes is not None:
            mask |= np.isin(self.class_codes, class_codes)
        if prefix_codes is not None:
            mask |= np.isin(self.hierarchy_codes, prefix_codes)
        return mask

    def mask(self, filters: Filters | None) -> np.ndarray | None:
        """Boolean (n,) mask of allowed items, or None when nothing is filtered. The one place filters are
        checked against the catalog: FilterError for a category it does not have."""
        if filters is None or filters.empty:
            return None
        mask = np.ones(self.n, dtype=bool)
        if filters.category is not None:
            mask &= self.category_mask(filters.category)
        # float32 prices vs float64 bounds: compare in float32 so a bound equal to a stored price matches.
        if filters.min_price is not None:
            mask &= self.price >= np.float32(filters.min_price)
        if filters.max_price is not None:
            mask &= self.price <= np.float32(filters.max_price)
        if filters.in_stock_only:
            mask &= self.in_stock
        return mask

    def save(self, path: Path) -> None:
        # A file object stops np.savez from appending ".npz" to the name.
        with open(path, "wb") as f:
            np.savez(
                f,
                class_codes=self.class_codes,
                price=self.price,
                in_stock=self.in_stock,
                class_names=np.asarray(self.class_names, dtype=str),
                hierarchy_codes=self.hierarchy_codes,
                hierarchy_names=np.asarray(self.hierarchy_names, dtype=str),
            )

    @classmethod
    def load(cls, path: Path) -> FilterColumns:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                class_codes=z["class_codes"],
                price=z["price"],
                in_stock=z["in_stock"],
                class_names=_strs(z["class_names"]),
                hierarchy_codes=z["hierarchy_codes"],
                hierarchy_names=_strs(z["hierarchy_names"]),
            )


def _code_arrays(lookup: dict[str, list[int]]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.int32) for k, v in lookup.items()}


def _strs(values: Iterable[object]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)
