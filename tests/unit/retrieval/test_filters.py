"""Category filters against real-catalog class names: multi-valued classes, case variants, empty names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrieval.filters import FilterColumns, FilterError, Filters


def columns_of(classes: list[str]) -> FilterColumns:
    n = len(classes)
    return FilterColumns.from_products(pd.DataFrame({
        "product_id": np.arange(n),
        "product_class": classes,
        "category_hierarchy": ["Furniture / Rugs"] * (n - 1) + [""],
        "price": np.ones(n),
        "in_stock": np.ones(n, dtype=bool),
    }))


def test_category_matches_each_part_of_a_multi_valued_class() -> None:
    columns = columns_of(["Rugs|Mats", "Rugs", "Door Mats", "Mats | Runners", ""])
    np.testing.assert_array_equal(columns.mask(Filters(category="rugs")), [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(columns.mask(Filters(category="Mats")), [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(columns.mask(Filters(category="Rugs|Mats")), [1, 0, 0, 0, 0])  # the whole
    with pytest.raises(FilterError):  # one word of a class is no category
        columns.mask(Filters(category="Door"))


def test_category_matches_every_class_spelt_the_same_way() -> None:
    columns = columns_of(["Area Rugs", "area rugs", "AREA  RUGS", "Runners", ""])
    for spelling in ("Area Rugs", "area rugs", " area   RUGS "):
        np.testing.assert_array_equal(columns.mask(Filters(category=spelling)), [1, 1, 1, 0, 0])


@pytest.mark.parametrize("category", ["/", " / ", "//", " /  / "])
def test_category_of_slashes_only_is_unknown_not_the_empty_class(category: str) -> None:
    columns = columns_of(["Rugs", "", "Runners", ""])
    with pytest.raises(FilterError) as e:
        columns.mask(Filters(category=category))
    assert e.value.field == "category"


def test_listed_categories_are_the_ones_the_filter_takes() -> None:
    columns = columns_of(["Rugs|Mats", "Rugs", "rugs", "", "/", "Runners"])
    listed = columns.categories()
    assert listed == ["Mats", "Rugs", "Rugs|Mats", "Runners"]  # parts too; one spelling; no "" or "/"
    for name in listed:  # what Info lists, a filter takes (the server warms up with the first ones)
        assert columns.mask(Filters(category=name)).any()
    with pytest.raises(FilterError):
        columns.mask(Filters(category="/"))  # a class "/" names nothing
    slashes = FilterColumns.from_products(pd.DataFrame({
        "product_id": [0, 1], "product_class": ["Rugs", "Mats"], "category_hierarchy": [" / ", "Home / Mats"],
        "price": [1.0, 1.0], "in_stock": [True, True]}))
    with pytest.raises(FilterError):
        slashes.mask(Filters(category="/"))  # nor does a hierarchy of slashes
