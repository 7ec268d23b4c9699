"""Query parsing: head noun and modifiers, numbers with units, brand-like words, other classes as types."""

from __future__ import annotations

from catalog.parse import parse_query
from catalog.vocabulary import Lexicon


def test_parse_query_examples() -> None:
    lex = Lexicon.build(["Dressers & Chests", "Dining Chairs", "Desks", "Coffee & Cocktail Tables",
                         "Outdoor Fireplaces"])
    q = parse_query("black 5 drawer dresser by guilford", "Dressers & Chests", lex)
    assert q.head == "dresser"
    assert q.required() == (("collection", "guilford"), ("color", "black"), ("drawers", "5 drawer"))
    brand = parse_query("oliver parsons", "Dining Chairs", lex)
    assert brand.head is None and brand.required() == (("collection", "oliver parsons"),)
    assert parse_query('writing desk 48"', "Desks", lex).required() == (
        ("collection", "writing"), ("dimension", "48 in"))
    grey, gray = (parse_query(t, "Desks", lex).required() for t in ("grey desk", "gray desks"))
    assert grey == gray == (("color", "gray"),)
    fire = parse_query("coffee table fire pit", "Outdoor Fireplaces", lex)
    assert fire.head == "fire pit" and fire.required() == (("type", "coffee table"),)
