"""Generate a WANDS-format catalog (products + graded judgments) from a WANDS-format query file.

Per query: ~20% Exact (its class, every modifier held), ~30% Partial (one modifier contradicted or missing,
or a related class with all modifiers), ~50% Irrelevant hard negatives (other classes sharing query words).
Then unjudged fillers of every class up to the product count. Exact judgments are complete: every product is
tested against every query's Exact rule; a filler that would satisfy one loses the matching attributes, a
judged product that satisfies another query's rule is also labelled Exact for that query.
See docs/catalog.md for the rules.

Modules: rules.py (query rules, the Exact check), products.py (making each product), this one (the build
and the rendering of products as product.csv rows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
from catalog.parse import tokenize
from catalog.products import (
    Context,
    Product,
    Rand,
    exact_product,
    filler_product,
    irrelevant_product,
    partial_product,
    related_classes,
)
from catalog.rules import QueryRule, exact_pairs, query_rules
from catalog.vocabulary import (
    DEPARTMENT_PRICE,
    NUMBER_FAMILIES,
    STOPWORDS,
    TITLE_ORDER,
    ClassInfo,
    Lexicon,
    brand_names,
    collection_names,
    key_of,
    singular,
    stable_unit,
    title_case,
)

BUILDER_VERSION = "1.0.0"
JUDGED_PER_QUERY = 60
EXACT_FRACTION, PARTIAL_FRACTION = 0.2, 0.3
_ORDER = {f: i for i, f in enumerate(TITLE_ORDER)}

Owner = tuple[int, str]  # (rule index, label) of a judged product
Pair = tuple[int, int]  # (rule index, product index)


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


def _description(prod: Product, info: ClassInfo, rand: Rand) -> str:
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


def _product_table(prods: list[Product], perm: np.ndarray, infos: dict[str, ClassInfo], rand: Rand,
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


# --- build --------------------------------------------------------------------------------------------------
# The steps below draw from one seeded generator; their order is part of the output, do not reorder them.


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled)


def _context(lex: Lexicon, rules: list[QueryRule], rand: Rand) -> Context:
    infos = lex.classes
    used_words = [v for r in rules for f, v in r.required if f == "collection"]
    return Context(lex, rand, sorted(lex.classes), infos, related_classes(infos),
                   collection_names(used_words), brand_names(),
                   sorted({n for i in infos.values() for n in i.nouns}))


def _judged_products(ctx: Context, rules: list[QueryRule],
                     bar: Progress) -> tuple[list[Product], list[Owner]]:
    """JUDGED_PER_QUERY products per rule, Exact then Partial then Irrelevant, and who judged each."""
    classes, infos = ctx.classes, ctx.infos
    class_words = {c: {w for n in infos[c].nouns for w in key_of(n)} for c in classes}
    n_exact = round(JUDGED_PER_QUERY * EXACT_FRACTION)
    n_partial = round(JUDGED_PER_QUERY * PARTIAL_FRACTION)
    n_irr = JUDGED_PER_QUERY - n_exact - n_partial
    prods: list[Product] = []
    owner: list[Owner] = []
    task = bar.add_task("judged products", total=len(rules))
    for r, rule in enumerate(rules):
        words = {singular(t) for t in tokenize(rule.text)} - STOPWORDS
        rel = set(ctx.related[rule.product_class]) | {rule.product_class}
        unrelated = [c for c in classes if c not in rel] or [c for c in classes
                                                             if c != rule.product_class]
        sharing = [c for c in unrelated if words & class_words[c]]
        for k in range(n_exact):
            prods.append(exact_product(ctx, rule, k))
            owner.append((r, "Exact"))
        for k in range(n_partial):
            prods.append(partial_product(ctx, rule, k))
            owner.append((r, "Partial"))
        for k in range(n_irr):
            prods.append(irrelevant_product(ctx, rule, k, sharing, unrelated))
            owner.append((r, "Irrelevant"))
        bar.advance(task)
    return prods, owner


def _add_fillers(ctx: Context, rules: list[QueryRule], prods: list[Product], products: int,
                 bar: Progress) -> int:
    """Unjudged products up to `products` in all; returns how many were added."""
    # Fillers never come from a class that has a modifier-free query: every product of such a class
    # satisfies that query's Exact rule, so it could only ever be a judged product.
    open_classes = [c for c in ctx.classes if c not in {r.product_class for r in rules if not r.required}]
    n_fill = max(0, products - len(prods)) if open_classes else 0
    task = bar.add_task("filler products", total=n_fill)
    for i in range(n_fill):
        prods.append(filler_product(ctx, open_classes))
        if i % 1000 == 999 or i == n_fill - 1:
            bar.update(task, completed=i + 1)
    return n_fill


def _exact_check(prods: list[Product], rules: list[QueryRule], n_judged: int,
                 bar: Progress) -> list[Pair]:
    """(rule, product) Exact pairs after stripping fillers of whatever made them Exact."""
    task = bar.add_task("exact-rule check", total=2)
    pairs = exact_pairs([p.product_class for p in prods], [p.attr_set() for p in prods], rules)
    for r, p in pairs:  # fillers: drop whatever makes them Exact (dropping never creates a match)
        if p >= n_judged:
            need = set(rules[r].required)
            prods[p].attrs = [a for a in prods[p].attrs if (a[0], a[1]) not in need]
    bar.advance(task)
    pairs = exact_pairs([p.product_class for p in prods], [p.attr_set() for p in prods], rules)
    bar.advance(task)
    return pairs


def _labels(rules: list[QueryRule], owner: list[Owner], pairs: list[Pair]) -> dict[Pair, str]:
    """Label per (rule, product): as judged, plus Exact wherever a product satisfies another query's rule."""
    n_judged = len(owner)
    labels: dict[Pair, str] = {(r, p): lab for p, (r, lab) in enumerate(owner)}
    exact_set = set(pairs)
    for (r, p), lab in labels.items():
        if (lab == "Exact") != ((r, p) in exact_set):
            raise AssertionError(f"builder bug: product {p} judged {lab} vs rule of {rules[r].query_id}")
    if any(p >= n_judged for _, p in pairs):
        raise AssertionError("builder bug: a filler still satisfies an Exact rule")
    for r, p in pairs:  # judged for one query, Exact for another: judge it there too
        labels[(r, p)] = "Exact"
    return labels


def _label_table(labels: dict[Pair, str], rules: list[QueryRule], perm: np.ndarray) -> pd.DataFrame:
    lab = pd.DataFrame([(rules[r].query_id, int(perm[p]), lbl, r) for (r, p), lbl in labels.items()],
                       columns=["query_id", "product_id", "label", "_r"])
    lab = lab.sort_values(["_r", "product_id"], kind="stable").drop(columns="_r").reset_index(drop=True)
    lab.insert(0, "id", np.arange(len(lab)))
    return lab


def _write(out: Path, table: pd.DataFrame, qdf: pd.DataFrame, lab: pd.DataFrame,
           meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_tsv(table[PRODUCT_COLUMNS], out / "product.csv")
    write_tsv(qdf[QUERY_COLUMNS], out / "query.csv")
    write_tsv(lab[LABEL_COLUMNS], out / "label.csv")
    (out / "catalog.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


def build_catalog(queries: Path, out: Path, *, seed: int = 0, products: int = 40_000,
                  progress: bool = True) -> Path:
    """Write product.csv, query.csv, label.csv and catalog.json into `out`; returns `out`."""
    queries, out = Path(queries), Path(out)
    qdf = read_queries(queries)
    rules, lex = query_rules(qdf)
    rng = np.random.default_rng(seed)
    ctx = _context(lex, rules, Rand(rng))
    with _progress(progress) as bar:
        prods, owner = _judged_products(ctx, rules, bar)
        n_fill = _add_fillers(ctx, rules, prods, products, bar)
        pairs = _exact_check(prods, rules, len(owner), bar)
    labels = _labels(rules, owner, pairs)

    perm = rng.permutation(len(prods))  # product_id of prods[i] is perm[i]: ids reveal nothing
    table = _product_table(prods, perm, ctx.infos, ctx.rand, rng)
    lab = _label_table(labels, rules, perm)
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
    _write(out, table, qdf, lab, meta)
    return out
