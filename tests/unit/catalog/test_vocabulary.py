"""Vocabulary: class nouns derived from names, and the lexicon tables built from catalog/data."""

from __future__ import annotations

from catalog.vocabulary import (
    ATTRIBUTES,
    DEPARTMENT_PRICE,
    EXTRA_CLASSES,
    GENERIC_NOUNS,
    NOUN_SYNONYMS,
    STOPWORDS,
    brand_names,
    category_of,
    collection_names,
    derive_nouns,
    singular,
)


def test_derive_nouns() -> None:
    assert derive_nouns("Coffee & Cocktail Tables") == ["coffee table", "cocktail table"]
    assert derive_nouns("Daybeds & Guest Beds") == ["daybed", "guest bed"]
    assert derive_nouns("Vases, Urns, Jars, & Bottles") == ["vase", "urn", "jar", "bottle"]
    assert derive_nouns("Cabinet and Drawer Pulls") == ["cabinet pull", "drawer pull"]
    assert derive_nouns("Hammocks") == ["hammock"]


def test_tables_from_data_files_keep_types_and_order() -> None:
    # Callers rely on these types (hashable tuples, frozenset lookups) and on the order (random picks).
    assert list(ATTRIBUTES)[:3] == ["color", "material", "style"]
    assert list(ATTRIBUTES["color"])[:2] == ["black", "white"]
    assert ATTRIBUTES["color"]["gray"] == ("grey", "heather gray")
    assert NOUN_SYNONYMS["sofa"] == ("couch", "loveseat", "love seat")
    assert EXTRA_CLASSES[0] == "Mugs & Teacups" and isinstance(EXTRA_CLASSES, tuple)
    assert isinstance(STOPWORDS, frozenset) and "the" in STOPWORDS and "sofa" not in STOPWORDS
    assert isinstance(GENERIC_NOUNS, frozenset) and "furniture" in GENERIC_NOUNS
    assert DEPARTMENT_PRICE["Furniture"] == 320.0 and isinstance(DEPARTMENT_PRICE["Furniture"], float)


def test_rules_and_names_from_data_files() -> None:
    assert singular("shelves") == "shelf" and singular("glasses") == "glass"  # irregular table
    assert category_of("Outdoor Wall Lights") == ("Outdoor", "Outdoor Lighting")  # first matching rule wins
    assert category_of("Zorblax") == ("Home Goods", "More Home Goods")
    assert collection_names([])[:2] == ["Hillsby", "Hillford"]
    assert "Hillsby" not in collection_names(["hillsby"])
    assert brand_names()[0] == "Arden Lane" and len(brand_names()) == 28 * 16
