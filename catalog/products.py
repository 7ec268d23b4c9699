"""Making products: one Exact, Partial or Irrelevant product for a query rule, or an unjudged filler.

Every random choice goes through one `Rand`, in a fixed call order, so a seed fixes the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from catalog.parse import Modifier
from catalog.rules import Attr, QueryRule
from catalog.vocabulary import (
    ATTRIBUTES,
    NUMBER_FAMILIES,
    RANDOM_FAMILIES,
    ClassInfo,
    Lexicon,
    key_of,
    normalize,
    number_siblings,
    singular,
    stable_unit,
)

T = TypeVar("T")


@dataclass
class Product:
    product_class: str
    noun: str  # title noun as written
    attrs: list[tuple[str, str, str, bool]] = field(default_factory=list)  # family, value, surface, in title
    brand: str = ""

    def attr_set(self) -> set[Attr]:
        return {(f, v) for f, v, _, _ in self.attrs}


class Rand:
    """Buffered uniforms from a seeded numpy Generator: cheap scalar draws, deterministic call order."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.buf = rng.random(1 << 16)
        self.i = 0

    def u(self) -> float:
        if self.i >= len(self.buf):
            self.buf = self.rng.random(1 << 16)
            self.i = 0
        self.i += 1
        return float(self.buf[self.i - 1])

    def pick(self, seq: Sequence[T]) -> T:
        return seq[int(self.u() * len(seq))]

    def chance(self, p: float) -> bool:
        return self.u() < p

    def subset(self, seq: Sequence[T]) -> list[T]:
        """A random non-empty subset, original order kept."""
        out = [x for x in seq if self.chance(0.5)]
        return out or [self.pick(seq)]


@dataclass
class Context:
    """What product making reads: the lexicon, the seeded draws, classes and the name pools."""

    lex: Lexicon
    rand: Rand
    classes: list[str]
    infos: dict[str, ClassInfo]
    related: dict[str, list[str]]
    collections: list[str]
    brands: list[str]
    all_nouns: list[str]


def related_classes(infos: dict[str, ClassInfo]) -> dict[str, list[str]]:
    """Closely related classes: same category parent or a shared head noun; else same department."""
    out: dict[str, list[str]] = {}
    names = sorted(infos)
    for c in names:
        a = infos[c]
        others = [o for o in names if o != c]
        rel = [o for o in others if infos[o].parent == a.parent or set(infos[o].heads) & set(a.heads)]
        rel = rel or [o for o in others if infos[o].department == a.department]
        # Last resort: three fixed others, so most classes stay unrelated (hard-negative pool).
        out[c] = rel or sorted(others, key=lambda o, c=c: stable_unit(c + "|" + o))[:3]
    return out


def _surface(ctx: Context, family: str, value: str, typed: str | None, use_typed: bool) -> str:
    """Title spelling of a value: the typed query word, or a synonym (the word itself if it has none)."""
    options = ctx.lex.surfaces(family, value)
    if typed is not None:
        if use_typed:
            return typed
        others = [s for s in options if key_of(s) != key_of(typed)]
        return ctx.rand.pick(others) if others else typed
    return ctx.rand.pick(options) if ctx.rand.chance(0.5) else options[0]


def _sibling(ctx: Context, family: str, value: str) -> str:
    if family in ATTRIBUTES and value in ATTRIBUTES[family]:
        return ctx.rand.pick([v for v in ATTRIBUTES[family] if v != value])
    if family in NUMBER_FAMILIES:
        sibs = number_siblings(family, value)
        return ctx.rand.pick(sibs)
    if family == "type":
        return ctx.rand.pick([n for n in ctx.all_nouns if n != value])
    return normalize(ctx.rand.pick(ctx.collections))  # collection / theme: another brand-like name


def _noun(ctx: Context, cls: str, typed: str | None = None, use_typed: bool = False) -> str:
    info = ctx.infos[cls]
    if typed is not None and use_typed:
        words = typed.split()
        return " ".join([*words[:-1], singular(words[-1])])
    if typed is not None:  # the other half of the Exact titles: a synonym of the typed noun
        others = [n for n in info.nouns if key_of(n) != key_of(typed)]
        return ctx.rand.pick(others) if others else typed
    # Derived nouns read most like listings; synonyms add variety.
    return ctx.rand.pick(info.nouns) if ctx.rand.chance(0.35) else ctx.rand.pick(info.derived)


def _add_extras(ctx: Context, prod: Product, exclude: set[str]) -> None:
    """Random attributes of families the product does not constrain, so titles/features look real."""
    for family, p in RANDOM_FAMILIES:
        if family in exclude or not ctx.rand.chance(p):
            continue
        value = ctx.rand.pick(list(ATTRIBUTES[family]))
        in_title = ctx.rand.chance(0.7 if family in ("color", "material") else 0.35)
        prod.attrs.append((family, value, _surface(ctx, family, value, None, False), in_title))
    dept = ctx.infos[prod.product_class].department
    sized = dept in ("Furniture", "Outdoor", "Rugs", "Bath")
    if "dimension" not in exclude and sized and ctx.rand.chance(0.3):
        inches = 18 + 6 * int(ctx.rand.u() * 14)
        value = f"{inches} in"
        prod.attrs.append(("dimension", value, _surface(ctx, "dimension", value, None, False), True))


def _finish(ctx: Context, prod: Product, exclude: set[str]) -> Product:
    if not any(f == "collection" for f, *_ in prod.attrs):
        name = ctx.rand.pick(ctx.collections)
        prod.attrs.insert(0, ("collection", normalize(name), name, True))
    _add_extras(ctx, prod, exclude)
    prod.brand = ctx.rand.pick(ctx.brands)
    return prod


def _with_modifiers(ctx: Context, cls: str, mods: Sequence[Modifier], use_typed: bool) -> Product:
    prod = Product(cls, _noun(ctx, cls))
    for m in mods:
        prod.attrs.append((m.family, m.value, _surface(ctx, m.family, m.value, m.surface, use_typed), True))
    return prod


def exact_product(ctx: Context, rule: QueryRule, k: int) -> Product:
    """The rule's class with every modifier: the k-th Exact product of the query."""
    use_typed = k % 2 == 0  # half the Exact titles use the query's words, half synonyms
    mods = rule.parsed.modifiers
    prod = _with_modifiers(ctx, rule.product_class, mods, use_typed)
    prod.noun = _noun(ctx, rule.product_class, rule.parsed.head, use_typed)
    return _finish(ctx, prod, {m.family for m in mods})


def partial_product(ctx: Context, rule: QueryRule, k: int) -> Product:
    """One modifier contradicted or missing, or a related class with all of them (k picks which)."""
    mods = list(rule.parsed.modifiers)
    families = {m.family for m in mods}
    mode = k % 3 if mods else 2
    if mode == 2:  # a closely related class with every modifier
        cls = ctx.rand.pick(ctx.related[rule.product_class])
        return _finish(ctx, _with_modifiers(ctx, cls, mods, ctx.rand.chance(0.5)), families)
    j = int(ctx.rand.u() * len(mods))
    changed = mods.pop(j)
    prod = _with_modifiers(ctx, rule.product_class, mods, ctx.rand.chance(0.5))
    if mode == 0:  # contradicted by a sibling value
        sib = _sibling(ctx, changed.family, changed.value)
        prod.attrs.append((changed.family, sib, _surface(ctx, changed.family, sib, None, False), True))
    return _finish(ctx, prod, families)


def irrelevant_product(ctx: Context, rule: QueryRule, k: int, sharing: list[str],
                       unrelated: list[str]) -> Product:
    """A hard negative: an unrelated class that carries the query's words."""
    cls = ctx.rand.pick(sharing) if sharing and k % 3 == 0 else ctx.rand.pick(unrelated)
    mods = list(rule.parsed.modifiers)
    families = {m.family for m in mods}
    flavour = k % 4
    if mods and flavour in (0, 1):  # another class with the query's modifiers ("marble coaster")
        chosen = mods if flavour == 0 else ctx.rand.subset(mods)
        return _finish(ctx, _with_modifiers(ctx, cls, chosen, ctx.rand.chance(0.5)), families)
    prod = Product(cls, _noun(ctx, cls))
    words = [w for w in key_of(rule.parsed.head or "") if w not in ctx.infos[cls].heads]
    if words and flavour == 2:  # a query noun word as the theme of another class ("coffee mug")
        w = ctx.rand.pick(words)
        prod.attrs.append(("theme", w, w, True))
    elif mods:
        m = ctx.rand.pick(mods)
        prod.attrs.append((m.family, m.value, _surface(ctx, m.family, m.value, m.surface, True), True))
    return _finish(ctx, prod, families)


def filler_product(ctx: Context, classes: list[str]) -> Product:
    """An unjudged product of a random class."""
    cls = ctx.rand.pick(classes)
    return _finish(ctx, Product(cls, _noun(ctx, cls)), set())
