"""Lexicons of the catalog builder: class nouns, attribute families, categories, pseudo-brands.

Everything here is data plus pure functions; the word lists themselves live in catalog/data/*.json.
Matching keys are normalised (lower case, accents stripped, hyphens as spaces) and singularised word by
word, so "Pillows", "pillow" and "pillows" all meet. Built-in tables cover common furniture/home-goods
words; anything else still works: an unknown class gets nouns derived from its name, an unknown query word
becomes a brand-like collection word.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from catalog import wordlists

# Each data file is read once, at import; the tables below are built from them.
_WORDS = wordlists.load("words")  # stopwords, generic nouns, irregular singulars
_ATTRS = wordlists.load("attributes")
_NOUNS = wordlists.load("nouns")  # noun synonyms, distractor classes
_CATEGORIES = wordlists.load("categories")
_NAMES = wordlists.load("names")  # parts of collection and brand names

# --- text normalisation -------------------------------------------------------------------------------

_KEEP_S = ("ss", "us", "is", "ics", "ies")  # glass, cactus, chaise-less nouns, ...
_IRREGULAR = wordlists.strings(_WORDS, "irregular_singulars")  # where the suffix rules go wrong


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalize(text: str) -> str:
    """Lower case, no accents, hyphens/slashes between words as spaces, single spaces."""
    t = strip_accents(text).lower().replace("'", "").replace("’", "")
    t = re.sub(r"(?<=[a-z])[-/](?=[a-z])", " ", t)
    t = re.sub(r"(?<=\d)-(?=\d)", " ", t)  # 3-3/4 -> 3 3/4
    return " ".join(t.split())


def singular(word: str) -> str:
    """Cheap English singular for matching keys (not for display)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 3 or not word.endswith("s") or word[0].isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "zes")):
        return word[:-2]
    if word.endswith(_KEEP_S):
        return word
    return word[:-1]


def plural(word: str) -> str:
    if word.endswith("s"):
        return word
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("ch", "sh", "x", "z")):
        return word + "es"
    return word + "s"


def key_of(phrase: str) -> tuple[str, ...]:
    """Matching key: normalised, singularised words."""
    return tuple(singular(w) for w in normalize(phrase).split())


def title_case(phrase: str) -> str:
    """`48" navy velvet` -> `48" Navy Velvet` (numbers and units untouched)."""
    return " ".join(w[:1].upper() + w[1:] if w[:1].isalpha() else w for w in phrase.split())


# --- attribute families ---------------------------------------------------------------------------------
# family -> canonical value -> synonyms. Siblings of a value are the other values of its family.
# Synonyms are true alternatives for a listing title ("grey" for "gray"), never a different value.

ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    family: wordlists.synonyms(_ATTRS, family) for family in _ATTRS
}
# Families drawn at random for products (with probabilities); query-only families are never drawn.
RANDOM_FAMILIES: tuple[tuple[str, float], ...] = (
    ("color", 0.9), ("material", 0.75), ("style", 0.5), ("pattern", 0.15), ("feature", 0.35), ("room", 0.15),
)
# Order of modifiers in a generated title, before the noun.
TITLE_ORDER = ("collection", "style", "size", "dimension", "number", "drawers", "lights", "pieces",
               "capacity", "gangs", "voltage", "tiers", "age", "color", "pattern", "material", "room",
               "feature", "type", "theme")

STOPWORDS = frozenset(wordlists.words(_WORDS, "stopwords"))
# Nouns so generic that they neither name a class nor modify one.
GENERIC_NOUNS = frozenset(wordlists.words(_WORDS, "generic_nouns"))

# --- numbers with units -------------------------------------------------------------------------------------
# unit word (singular) -> (family, canonical unit)
UNITS: dict[str, tuple[str, str]] = {
    '"': ("dimension", "in"), "in": ("dimension", "in"), "inch": ("dimension", "in"),
    "ft": ("dimension", "ft"), "foot": ("dimension", "ft"), "feet": ("dimension", "ft"),
    "drawer": ("drawers", "drawer"), "draw": ("drawers", "drawer"), "light": ("lights", "light"),
    "pc": ("pieces", "piece"), "piece": ("pieces", "piece"), "qt": ("capacity", "qt"),
    "quart": ("capacity", "qt"), "gang": ("gangs", "gang"), "v": ("voltage", "v"), "volt": ("voltage", "v"),
    "tier": ("tiers", "tier"), "year": ("age", "year"),
}
NUMBER_FAMILIES = frozenset(f for f, _ in UNITS.values()) | {"number"}


def number_value(num: str, unit: str | None) -> tuple[str, str]:
    """(family, canonical value) for a number and optional unit word, e.g. ("dimension", "48 in")."""
    if unit is None:
        return ("dimension", num) if "x" in num else ("number", num)
    family, canon = UNITS[unit]
    return family, f"{num} {canon}"


def number_surfaces(family: str, value: str) -> tuple[str, ...]:
    """Title spellings of a number value; the canonical spelling comes first."""
    num, _, unit = value.partition(" ")
    if family == "dimension" and unit == "in":
        return (f'{num}"', f"{num} in.", f"{num} Inch", f"{num}-Inch")
    if family == "dimension" and unit == "ft":
        return (f"{num} ft.", f"{num}'", f"{num} Feet")
    if family == "dimension" and "x" in num:
        a, _, b = num.partition("x")
        return (num, f"{a} x {b}", f'{a}" x {b}"')
    if not unit:
        return (num,)
    short = {"piece": "pc", "qt": "qt", "v": "V"}.get(unit, unit)
    long = {"piece": "Piece", "qt": "Quart", "v": "Volt"}.get(unit, title_case(unit))
    return (f"{num} {short}", f"{num}-{long}", f"{num} {long}")


def _to_float(num: str) -> float | None:
    parts = num.split()
    try:
        total = 0.0
        for p in parts:
            a, slash, b = p.partition("/")
            total += float(a) / float(b) if slash else float(a)
        return total
    except (ValueError, ZeroDivisionError):
        return None


def number_siblings(family: str, value: str) -> list[str]:
    """Other values of the same unit ("48 in" -> "36 in", "60 in", ...), never the value itself."""
    num, _, unit = value.partition(" ")
    if "x" in num:
        a, _, b = num.partition("x")
        fa, fb = _to_float(a), _to_float(b)
        if fa is None or fb is None:
            return [f"{num}0"]
        return [f"{_fmt(fa * k)}x{_fmt(fb * k)}" for k in (0.5, 0.75, 1.5, 2.0)]
    f = _to_float(num)
    if f is None:
        return [f"{num}0"]
    steps = (1, 2, 3, -1) if f < 12 else (-12, 12, 24, -6)
    out = [_fmt(max(f + s, 0.5) if f >= 1 else f * (2 + s)) for s in steps]
    return [o + (f" {unit}" if unit else "") for o in dict.fromkeys(out) if o != _fmt(f)]


def _fmt(x: float) -> str:
    return str(round(x)) if abs(x - round(x)) < 1e-9 else f"{x:.1f}"


# --- nouns ------------------------------------------------------------------------------------------------
# Built-in synonyms per derived class noun (singular, normalised). Unknown classes simply have none.
NOUN_SYNONYMS: dict[str, tuple[str, ...]] = wordlists.synonyms(_NOUNS, "synonyms")

# Extra home-goods classes that only exist as distractors (hard negatives, fillers) for any query file.
EXTRA_CLASSES: tuple[str, ...] = wordlists.words(_NOUNS, "extra_classes")

# --- categories -----------------------------------------------------------------------------------------
# (department, sub-department, keywords): the first rule with a keyword in the class name wins.
_CATEGORY_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = tuple(
    (rule["department"], rule["subdepartment"], wordlists.words(rule, "keywords"))
    for rule in _CATEGORIES["rules"]
)

# Median price (USD) per department; a class multiplies it by a stable per-class factor.
DEPARTMENT_PRICE: dict[str, float] = {
    dept: float(price) for dept, price in _CATEGORIES["department_price"].items()
}


def category_of(product_class: str) -> tuple[str, str]:
    """(department, sub-department) of a class by keyword rules; unknown classes land in Home Goods."""
    name = normalize(product_class)
    for dept, sub, words in _CATEGORY_RULES:
        if any(w in name for w in words):
            return dept, sub
    return "Home Goods", "More Home Goods"


def stable_unit(text: str) -> float:
    """A number in [0, 1) fixed by the text alone (crc32: independent of PYTHONHASHSEED)."""
    return zlib.crc32(text.encode()) / 2**32


# --- class nouns ------------------------------------------------------------------------------------------


def derive_nouns(product_class: str) -> list[str]:
    """Nouns named by a class: split on & / and / , / '/', singularise the head, share a trailing head noun.

    "Coffee & Cocktail Tables" -> ["coffee table", "cocktail table"]; "Dressers & Chests" -> ["dresser",
    "chest"]; a list of three or more ("Vases, Urns, Jars, & Bottles") is taken as separate nouns.
    """
    name = normalize(product_class).replace("(", " ").replace(")", " ")
    parts = [p.strip() for p in re.split(r"\s*(?:&|,|/|\band\b)\s*", name) if p.strip()]
    out: list[str] = []
    last = parts[-1].split() if parts else []
    for part in parts:
        words = part.split()
        words = [*words[:-1], singular(words[-1])]
        # Only a singular modifier word borrows the head: "Coffee & Cocktail Tables", not
        # "Daybeds & Guest Beds".
        if len(parts) == 2 and part is parts[0] and len(words) == 1 and len(last) > 1 \
                and singular(part) == part and words[0] != singular(last[0]):
            words = [*words, singular(last[-1])]  # "coffee" + "tables" -> "coffee table"
        out.append(" ".join(words))
    return list(dict.fromkeys(out)) or [normalize(product_class)]


@dataclass(frozen=True)
class ClassInfo:
    name: str
    nouns: tuple[str, ...]  # display nouns (singular, normalised): derived first, then built-in synonyms
    derived: tuple[str, ...]  # the nouns derived from the class name itself
    heads: tuple[str, ...]  # head words of the derived nouns ("table"), for relatedness and matching
    department: str
    subdepartment: str

    @property
    def hierarchy(self) -> str:
        return f"{self.department} / {self.subdepartment} / {self.name}"

    @property
    def parent(self) -> str:
        return f"{self.department} / {self.subdepartment}"


def class_info(product_class: str) -> ClassInfo:
    derived = derive_nouns(product_class)
    nouns = list(derived)
    for n in derived:
        nouns.extend(NOUN_SYNONYMS.get(n, ()))
    nouns.extend(NOUN_SYNONYMS.get(normalize(product_class), ()))
    heads = tuple(dict.fromkeys(n.split()[-1] for n in derived))
    dept, sub = category_of(product_class)
    return ClassInfo(product_class, tuple(dict.fromkeys(nouns)), tuple(derived), heads, dept, sub)


# --- pseudo-brands ----------------------------------------------------------------------------------------

_NAME_HEADS = wordlists.words(_NAMES, "collection_heads")
_NAME_TAILS = wordlists.words(_NAMES, "collection_tails")
_BRAND_FIRST = wordlists.words(_NAMES, "brand_first")
_BRAND_LAST = wordlists.words(_NAMES, "brand_last")


def collection_names(exclude: Iterable[str]) -> list[str]:
    """Generated one-word collection names ("Hillsby"), minus any the queries use as words."""
    banned = {normalize(e) for e in exclude}
    names = [h + t for h in _NAME_HEADS for t in _NAME_TAILS]
    return [n for n in names if normalize(n) not in banned]


def brand_names() -> list[str]:
    return [f"{a} {b}" for a in _BRAND_FIRST for b in _BRAND_LAST]


# --- lexicon ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """What a phrase means: a class noun ("noun", class, noun) or an attribute ("attr", family, value)."""

    kind: str
    a: str
    b: str


@dataclass
class Lexicon:
    """Phrase lookup over attributes and the nouns of a set of classes."""

    classes: dict[str, ClassInfo]
    attrs: dict[tuple[str, ...], Entry] = field(default_factory=dict)
    nouns: dict[tuple[str, ...], list[Entry]] = field(default_factory=dict)
    max_len: int = 1

    @classmethod
    def build(cls, class_names: Sequence[str]) -> Lexicon:
        classes = {c: class_info(c) for c in class_names}
        lex = cls(classes)
        for family, values in ATTRIBUTES.items():
            for value, syns in values.items():
                for surface in (value, *syns):
                    lex.attrs.setdefault(key_of(surface), Entry("attr", family, value))
        for info in classes.values():
            phrases = [*info.nouns, *info.heads]
            for noun in phrases:
                k = key_of(noun)
                bucket = lex.nouns.setdefault(k, [])
                if all(e.a != info.name for e in bucket):
                    bucket.append(Entry("noun", info.name, noun))
        lex.max_len = max(len(k) for k in [*lex.attrs, *lex.nouns])
        return lex

    def surfaces(self, family: str, value: str) -> tuple[str, ...]:
        """Spellings of a value: canonical first, then synonyms (attributes, numbers, nouns as types)."""
        if family in ATTRIBUTES and value in ATTRIBUTES[family]:
            return (value, *ATTRIBUTES[family][value])
        if family in NUMBER_FAMILIES:
            return number_surfaces(family, value)
        if family == "type":
            return (value, *NOUN_SYNONYMS.get(value, ()))
        return (value,)


def all_values(family: str) -> list[str]:
    return list(ATTRIBUTES[family])
