"""Query text -> head noun + modifiers, each modifier an attribute (family, canonical value).

Greedy longest-phrase matching, left to right. At a position the longest phrase wins; among equally long
ones a noun of the query's own class beats an attribute, which beats another class's noun (that becomes a
"type" modifier: "coffee table fire pit"). Numbers take their unit ("5 drawer", `48"`, "18x18"). Runs of
unknown words become one brand-like collection word ("oliver parsons", "zorblax").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from catalog.vocabulary import (
    GENERIC_NOUNS,
    STOPWORDS,
    UNITS,
    Lexicon,
    key_of,
    normalize,
    number_value,
    plural,
    singular,
    title_case,
)

_TOKEN = re.compile(r"\d+s\b|\d+(?:\.\d+)?(?:/\d+)?(?:x\d+(?:\.\d+)?)?\"?|[a-z0-9]+|&")
_NUMBER = re.compile(r"^\d")
_FRACTION = re.compile(r"^\d+/\d+$")


@dataclass(frozen=True, order=True)
class Modifier:
    family: str
    value: str  # canonical value
    surface: str  # the words as typed (normalised)

    @property
    def attr(self) -> tuple[str, str]:
        return (self.family, self.value)


@dataclass(frozen=True)
class ParsedQuery:
    text: str
    product_class: str
    head: str | None  # the class noun as typed, if the query names one
    modifiers: tuple[Modifier, ...]

    def required(self) -> tuple[tuple[str, str], ...]:
        """The Exact rule's attributes, sorted (a product must hold all of them)."""
        return tuple(sorted({m.attr for m in self.modifiers}))


def tokenize(text: str) -> list[str]:
    t = normalize(text).replace("”", '"').replace("″", '"')
    t = re.sub(r"(?<=\d)''", '"', t)
    t = re.sub(r"[^\w\"&/.\s]", " ", t)
    return _TOKEN.findall(t)


def _number_at(tokens: list[str], i: int) -> tuple[tuple[str, str], int, str] | None:
    """((family, value), tokens used, surface) for a number starting at i."""
    tok = tokens[i]
    if not _NUMBER.match(tok):
        return None
    inch = tok.endswith('"')
    num = tok.rstrip('"')
    j = i + 1
    if not inch and j < len(tokens) and _FRACTION.match(tokens[j]) and "/" not in num:
        num = f"{num} {tokens[j]}"  # 3 1/2
        j += 1
    if not inch and j + 1 < len(tokens) and tokens[j] == "x" and _NUMBER.match(tokens[j + 1]):
        num = f"{num}x{tokens[j + 1].rstrip(chr(34))}"  # 18 x 18
        j += 2
    unit: str | None = '"' if inch else None
    if unit is None and j < len(tokens) and singular(tokens[j]) in UNITS and "x" not in num:
        unit = singular(tokens[j])
        j += 1
    family, value = number_value(num, unit)
    return (family, value), j - i, " ".join(tokens[i:j])


def parse_query(text: str, product_class: str, lex: Lexicon) -> ParsedQuery:
    tokens = tokenize(text)
    keys = [singular(t) for t in tokens]
    head: str | None = None
    mods: list[Modifier] = []
    unknown: list[str] = []

    def flush() -> None:
        if unknown:
            mods.append(Modifier("collection", " ".join(unknown), " ".join(unknown)))
            unknown.clear()

    i = 0
    while i < len(tokens):
        hit = None
        for n in range(min(lex.max_len, len(tokens) - i), 0, -1):
            k = tuple(keys[i:i + n])
            own = [e for e in lex.nouns.get(k, []) if e.a == product_class]
            attr = lex.attrs.get(k)
            other = lex.nouns.get(k) if not (n == 1 and k[0] in GENERIC_NOUNS) else None
            if own:
                hit = ("head", own[0].b, n)
            elif attr is not None:
                hit = ("attr", attr, n)
            elif other:
                hit = ("type", other[0].b, n)
            if hit:
                break
        surface = " ".join(tokens[i:i + (hit[2] if hit else 1)])
        if hit and hit[0] == "head":
            flush()
            head = head or surface
            i += hit[2]
            continue
        if hit and hit[0] == "attr":
            flush()
            mods.append(Modifier(hit[1].a, hit[1].b, surface))
            i += hit[2]
            continue
        num = _number_at(tokens, i)
        if num is not None:
            flush()
            (family, value), used, surf = num
            mods.append(Modifier(family, value, surf))
            i += used
            continue
        if hit:  # another class's noun
            flush()
            mods.append(Modifier("type", hit[1], surface))
            i += hit[2]
            continue
        tok = tokens[i]
        if tok in STOPWORDS or keys[i] in STOPWORDS or keys[i] in GENERIC_NOUNS or tok == '"':
            flush()
        else:
            unknown.append(tok.replace('"', ""))
        i += 1
    flush()
    uniq = tuple(dict.fromkeys(m for m in mods if m.value))
    seen: set[tuple[str, str]] = set()
    kept = []
    for m in uniq:
        if m.attr not in seen:
            seen.add(m.attr)
            kept.append(m)
    return ParsedQuery(text, product_class, head, tuple(kept))


def infer_class(text: str, lex: Lexicon) -> str:
    """Class for a query without one: the class whose noun it names (longest phrase, then most shared
    class-name words, then name); else a new class named after its head phrase ("towel rod" -> "Towel Rods").
    """
    tokens = tokenize(text)
    keys = [singular(t) for t in tokens]
    best: tuple[int, int, str] | None = None
    for i in range(len(keys)):
        for n in range(min(lex.max_len, len(keys) - i), 0, -1):
            for e in lex.nouns.get(tuple(keys[i:i + n]), []):
                shared = len(set(key_of(e.a)) & set(keys))
                cand = (n, shared, e.a)
                if best is None or (cand[0], cand[1]) > (best[0], best[1]) or \
                        ((cand[0], cand[1]) == (best[0], best[1]) and cand[2] < best[2]):
                    best = cand
    if best is not None:
        return best[2]
    content: list[str] = []
    for t, k in zip(tokens, keys, strict=True):
        if k in STOPWORDS and content:
            break  # head phrase ends at the first preposition after it starts
        if k not in STOPWORDS and not _NUMBER.match(t) and k not in GENERIC_NOUNS:
            content.append(k)
    words = content[-2:] or ["item"]
    return title_case(" ".join([*words[:-1], plural(words[-1])]))
