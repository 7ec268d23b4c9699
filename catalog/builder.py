"""Generate a WANDS-format catalog (products + graded judgments) from a WANDS-format query file.

Per query: ~20% Exact (its class, every modifier held), ~30% Partial (one modifier contradicted or missing,
or a related class with all modifiers), ~50% Irrelevant hard negatives (other classes sharing query words).
Then unjudged fillers of every class up to the product count. Exact judgments are complete: every product is
tested against every query's Exact rule; a filler that would satisfy one loses the matching attributes, a
judged product that satisfies another query's rule is also labelled Exact for that query.
See docs/catalog.md for the rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from catalog.io import (
    LABEL_COLUMNS,
    PRODUCT_COLUMNS,
    QUERY_COLUMNS,
    format_features,
    read_queries,
    write_tsv,
)
from catalog.parse import Modifier, ParsedQuery, infer_class, parse_query, tokenize
from catalog.vocabulary import (
    ATTRIBUTES,
    DEPARTMENT_PRICE,
    EXTRA_CLASSES,
    NUMBER_FAMILIES,
    RANDOM_FAMILIES,
    STOPWORDS,
    TITLE_ORDER,
    ClassInfo,
    Lexicon,
    brand_names,
    collection_names,
    key_of,
    normalize,
    number_siblings,
    singular,
    stable_unit,
    title_case,
)

BUILDER_VERSION = "1.0.0"
JUDGED_PER_QUERY = 60
EXACT_FRACTION, PARTIAL_FRACTION = 0.2, 0.3
_ORDER = {f: i for i, f in enumerate(TITLE_ORDER)}

Attr = tuple[str, str]  # (family, canonical value)
T = TypeVar("T")


@dataclass(frozen=True)
class QueryRule:
    """A query's Exact rule: products of `product_class` holding every `required` attribute."""

    query_id: int
    text: str
    product_class: str
    required: tuple[Attr, ...]
    parsed: ParsedQuery
    inferred: bool = False  # class inferred because the query file left it empty


@dataclass
class Product:
    product_class: str
    noun: str  # title noun as written
    attrs: list[tuple[str, str, str, bool]] = field(default_factory=list)  # family, value, surface, in title
    brand: str = ""

    def attr_set(self) -> set[Attr]:
        return {(f, v) for f, v, _, _ in self.attrs}


class _Rand:
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


# --- query rules -----------------------------------------------------------------------------------------


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


# --- generation -------------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    lex: Lexicon
    rand: _Rand
    classes: list[str]
    infos: dict[str, ClassInfo]
    related: dict[str, list[str]]
    collections: list[str]
    brands: list[str]
    all_nouns: list[str]


def _related(infos: dict[str, ClassInfo]) -> dict[str, list[str]]:
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


def _surface(ctx: _Ctx, family: str, value: str, typed: str | None, use_typed: bool) -> str:
    """Title spelling of a value: the typed query word, or a synonym (the word itself if it has none)."""
    options = ctx.lex.surfaces(family, value)
    if typed is not None:
        if use_typed:
            return typed
        others = [s for s in options if key_of(s) != key_of(typed)]
        return ctx.rand.pick(others) if others else typed
    return ctx.rand.pick(options) if ctx.rand.chance(0.5) else options[0]


def _sibling(ctx: _Ctx, family: str, value: str) -> str:
    if family in ATTRIBUTES and value in ATTRIBUTES[family]:
        return ctx.rand.pick([v for v in ATTRIBUTES[family] if v != value])
    if family in NUMBER_FAMILIES:
        sibs = number_siblings(family, value)
        return ctx.rand.pick(sibs)
    if family == "type":
        return ctx.rand.pick([n for n in ctx.all_nouns if n != value])
    return normalize(ctx.rand.pick(ctx.collections))  # collection / theme: another brand-like name


def _noun(ctx: _Ctx, cls: str, typed: str | None = None, use_typed: bool = False) -> str:
    info = ctx.infos[cls]
    if typed is not None and use_typed:
        words = typed.split()
        return " ".join([*words[:-1], singular(words[-1])])
    if typed is not None:  # the other half of the Exact titles: a synonym of the typed noun
        others = [n for n in info.nouns if key_of(n) != key_of(typed)]
        return ctx.rand.pick(others) if others else typed
    # Derived nouns read most like listings; synonyms add variety.
    return ctx.rand.pick(info.nouns) if ctx.rand.chance(0.35) else ctx.rand.pick(info.derived)


def _add_extras(ctx: _Ctx, prod: Product, exclude: set[str]) -> None:
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


def _finish(ctx: _Ctx, prod: Product, exclude: set[str]) -> Product:
    if not any(f == "collection" for f, *_ in prod.attrs):
        name = ctx.rand.pick(ctx.collections)
        prod.attrs.insert(0, ("collection", normalize(name), name, True))
    _add_extras(ctx, prod, exclude)
    prod.brand = ctx.rand.pick(ctx.brands)
    return prod


def _with_modifiers(ctx: _Ctx, cls: str, mods: Sequence[Modifier], use_typed: bool) -> Product:
    prod = Product(cls, _noun(ctx, cls))
    for m in mods:
        prod.attrs.append((m.family, m.value, _surface(ctx, m.family, m.value, m.surface, use_typed), True))
    return prod


def _exact(ctx: _Ctx, rule: QueryRule, k: int) -> Product:
    use_typed = k % 2 == 0  # half the Exact titles use the query's words, half synonyms
    mods = rule.parsed.modifiers
    prod = _with_modifiers(ctx, rule.product_class, mods, use_typed)
    prod.noun = _noun(ctx, rule.product_class, rule.parsed.head, use_typed)
    return _finish(ctx, prod, {m.family for m in mods})


def _partial(ctx: _Ctx, rule: QueryRule, k: int) -> Product:
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


def _irrelevant(ctx: _Ctx, rule: QueryRule, k: int, sharing: list[str], unrelated: list[str]) -> Product:
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


def _filler(ctx: _Ctx, classes: list[str]) -> Product:
    cls = ctx.rand.pick(classes)
    return _finish(ctx, Product(cls, _noun(ctx, cls)), set())


# --- rendering --------------------------------------------------------------------------------------------


def _feature_list(prod: Product) -> list[tuple[str, str]]:
    ordered = sorted(prod.attrs, key=lambda a: _ORDER.get(a[0], len(_ORDER)))
    out: list[tuple[str, str]] = []
    count: dict[str, int] = {}
    for family, value, _, _ in ordered:
        count[family] = count.get(family, 0) + 1
        out.append((family if count[family] == 1 else f"{family}_{count[family]}", value))
    out.append(("brand", prod.brand.lower()))
    return out


def _title(prod: Product) -> str:
    parts = []
    for family, _, surface, in_title in sorted(prod.attrs, key=lambda a: _ORDER.get(a[0], len(_ORDER))):
        if in_title:
            parts.append(surface if family in NUMBER_FAMILIES else title_case(surface))
    parts.append(title_case(prod.noun))
    return " ".join(dict.fromkeys(parts))


def _description(prod: Product, info: ClassInfo, rand: _Rand) -> str:
    vals: dict[str, list[str]] = {}
    for family, value, _, _ in prod.attrs:
        vals.setdefault(family, []).append(value)
    coll = title_case(vals.get("collection", ["house"])[0])
    style = vals.get("style", [""])[0]
    noun = prod.noun if not style else f"{style} {prod.noun}"
    room = f" for the {vals['room'][0]}" if "room" in vals else ""
    adjective = rand.pick(["versatile", "well-made", "popular", "sturdy", "customer-favorite"])
    first = f"The {coll} {noun} is a {adjective} pick{room} from our {info.subdepartment.lower()} range."
    extra: list[str] = []
    if "material" in vals or "color" in vals:
        made = f"made of {' and '.join(vals['material'])}" if "material" in vals else "finished"
        color = f" in {' and '.join(vals['color'])}" if "color" in vals else ""
        extra.append(f"It is {made}{color}.")
    feats = [v for f in ("feature", "pattern", "size", "dimension", "drawers", "lights", "pieces", "capacity")
             for v in vals.get(f, [])]
    if feats:
        extra.append(f"Details: {', '.join(feats)}.")
    extra.append(f"Designed by {prod.brand.rstrip('.')}.")
    return " ".join([first, *extra[: int(rand.u() * 3)]])  # 1-3 sentences


# --- build --------------------------------------------------------------------------------------------------


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled)


def build_catalog(queries: Path, out: Path, *, seed: int = 0, products: int = 40_000,
                  progress: bool = True) -> Path:
    """Write product.csv, query.csv, label.csv and catalog.json into `out`; returns `out`."""
    queries, out = Path(queries), Path(out)
    qdf = read_queries(queries)
    rules, lex = query_rules(qdf)
    rng = np.random.default_rng(seed)
    rand = _Rand(rng)
    classes = sorted(lex.classes)
    infos = lex.classes
    used_words = [v for r in rules for f, v in r.required if f == "collection"]
    ctx = _Ctx(lex, rand, classes, infos, _related(infos), collection_names(used_words), brand_names(),
               sorted({n for i in infos.values() for n in i.nouns}))

    class_words = {c: {w for n in infos[c].nouns for w in key_of(n)} for c in classes}
    n_exact = round(JUDGED_PER_QUERY * EXACT_FRACTION)
    n_partial = round(JUDGED_PER_QUERY * PARTIAL_FRACTION)
    n_irr = JUDGED_PER_QUERY - n_exact - n_partial
    prods: list[Product] = []
    owner: list[tuple[int, str]] = []  # (rule index, label) of judged products
    with _progress(progress) as bar:
        task = bar.add_task("judged products", total=len(rules))
        for r, rule in enumerate(rules):
            words = {singular(t) for t in tokenize(rule.text)} - STOPWORDS
            rel = set(ctx.related[rule.product_class]) | {rule.product_class}
            unrelated = [c for c in classes if c not in rel] or [c for c in classes
                                                                 if c != rule.product_class]
            sharing = [c for c in unrelated if words & class_words[c]]
            for k in range(n_exact):
                prods.append(_exact(ctx, rule, k))
                owner.append((r, "Exact"))
            for k in range(n_partial):
                prods.append(_partial(ctx, rule, k))
                owner.append((r, "Partial"))
            for k in range(n_irr):
                prods.append(_irrelevant(ctx, rule, k, sharing, unrelated))
                owner.append((r, "Irrelevant"))
            bar.advance(task)

        # Fillers never come from a class that has a modifier-free query: every product of such a class
        # satisfies that query's Exact rule, so it could only ever be a judged product.
        open_classes = [c for c in classes if c not in {r.product_class for r in rules if not r.required}]
        n_fill = max(0, products - len(prods)) if open_classes else 0
        task = bar.add_task("filler products", total=n_fill)
        for i in range(n_fill):
            prods.append(_filler(ctx, open_classes))
            if i % 1000 == 999 or i == n_fill - 1:
                bar.update(task, completed=i + 1)

        task = bar.add_task("exact-rule check", total=2)
        n_judged = len(owner)
        pairs = exact_pairs([p.product_class for p in prods], [p.attr_set() for p in prods], rules)
        for r, p in pairs:  # fillers: drop whatever makes them Exact (dropping never creates a match)
            if p >= n_judged:
                need = set(rules[r].required)
                prods[p].attrs = [a for a in prods[p].attrs if (a[0], a[1]) not in need]
        bar.advance(task)
        pairs = exact_pairs([p.product_class for p in prods], [p.attr_set() for p in prods], rules)
        bar.advance(task)

    labels: dict[tuple[int, int], str] = {(r, p): lab for p, (r, lab) in enumerate(owner)}
    exact_set = set(pairs)
    for (r, p), lab in labels.items():
        if (lab == "Exact") != ((r, p) in exact_set):
            raise AssertionError(f"builder bug: product {p} judged {lab} vs rule of {rules[r].query_id}")
    if any(p >= n_judged for _, p in pairs):
        raise AssertionError("builder bug: a filler still satisfies an Exact rule")
    for r, p in pairs:  # judged for one query, Exact for another: judge it there too
        labels[(r, p)] = "Exact"

    perm = rng.permutation(len(prods))  # product_id of prods[i] is perm[i]: ids reveal nothing
    table = _product_table(prods, perm, infos, rand, rng)
    lab = pd.DataFrame([(rules[r].query_id, int(perm[p]), lbl, r) for (r, p), lbl in labels.items()],
                       columns=["query_id", "product_id", "label", "_r"])
    lab = lab.sort_values(["_r", "product_id"], kind="stable").drop(columns="_r").reset_index(drop=True)
    lab.insert(0, "id", np.arange(len(lab)))

    out.mkdir(parents=True, exist_ok=True)
    write_tsv(table[PRODUCT_COLUMNS], out / "product.csv")
    write_tsv(qdf[QUERY_COLUMNS], out / "query.csv")
    write_tsv(lab[LABEL_COLUMNS], out / "label.csv")
    meta = {
        "generated": True,
        "builder_version": BUILDER_VERSION,
        "seed": int(seed),
        "products": len(table),
        "queries": len(qdf),
        "source_queries": str(queries),
        "classes": sorted(table["product_class"].unique().tolist()),
        "label_counts": {k: int((lab["label"] == k).sum()) for k in ("Exact", "Partial", "Irrelevant")},
        "judged_per_query": JUDGED_PER_QUERY,
        "fillers": n_fill,
        "cross_query_exact_labels": len(labels) - len(owner),
        "inferred_classes": {str(r.query_id): r.product_class for r in rules if r.inferred},
        "rules": {str(r.query_id): {"class": r.product_class, "require": [f"{f}:{v}" for f, v in r.required]}
                  for r in rules},
    }
    (out / "catalog.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    return out


def _product_table(prods: list[Product], perm: np.ndarray, infos: dict[str, ClassInfo], rand: _Rand,
                   rng: np.random.Generator) -> pd.DataFrame:
    n = len(prods)
    cls = [p.product_class for p in prods]
    median = np.array([DEPARTMENT_PRICE.get(infos[c].department, 50.0) * (0.6 + stable_unit(c)) for c in cls])
    price = np.maximum(np.round(median * rng.lognormal(0.0, 0.45, n), 2), 4.99)
    ratings = rng.negative_binomial(1, 0.02, n)
    avg = np.where(ratings > 0, np.clip(np.round(rng.normal(4.3, 0.5, n), 1), 1.0, 5.0), 0.0)
    reviews = rng.binomial(ratings, 0.6)
    stock = (rng.random(n) < 0.9).astype(int)
    df = pd.DataFrame({
        "product_id": perm.astype(np.int64),
        "product_name": [_title(p) for p in prods],
        "product_class": cls,
        "category_hierarchy": [infos[c].hierarchy for c in cls],
        "product_description": [_description(p, infos[p.product_class], rand) for p in prods],
        "product_features": [format_features(_feature_list(p)) for p in prods],
        "rating_count": ratings.astype(np.int64),
        "average_rating": [f"{a:.1f}" for a in avg],
        "review_count": reviews.astype(np.int64),
        "price": [f"{p:.2f}" for p in price],
        "in_stock": stock,
    })
    return df.sort_values("product_id").reset_index(drop=True)



