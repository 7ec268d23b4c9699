"""Lexicons of the catalog builder: class nouns, attribute families, categories, pseudo-brands.

Everything here is data plus pure functions. Matching keys are normalised (lower case, accents stripped,
hyphens as spaces) and singularised word by word, so "Pillows", "pillow" and "pillows" all meet.
Built-in tables cover common furniture/home-goods words; anything else still works: an unknown class gets
nouns derived from its name, an unknown query word becomes a brand-like collection word.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# --- text normalisation -------------------------------------------------------------------------------

_KEEP_S = ("ss", "us", "is", "ics", "ies")  # glass, cactus, chaise-less nouns, ...
_IRREGULAR = {
    "shelves": "shelf", "knives": "knife", "leaves": "leaf", "children": "children", "feet": "foot",
    "mattresses": "mattress", "boxes": "box", "glasses": "glass", "series": "series", "news": "news",
    "canvas": "canvas", "pcs": "pc", "dress": "dress", "lotus": "lotus", "christmas": "christmas", "tv": "tv",
    "kids": "kids", "jeans": "jeans", "scissors": "scissors",
}


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
    "color": {
        "black": ("ebony", "jet black", "blk"), "white": ("snow white", "bright white", "wht"),
        "gray": ("grey", "heather gray"), "dark gray": ("charcoal", "dark grey"),
        "light gray": ("light grey", "dove gray"), "navy": ("navy blue", "dark blue"), "blue": ("azure",),
        "light blue": ("sky blue", "baby blue"), "royal blue": ("cobalt blue",),
        "teal": ("blue green", "peacock"), "turquoise": ("aqua", "aquamarine"), "green": ("emerald",),
        "olive green": ("olive",), "sage": ("sage green",), "red": ("crimson", "scarlet"),
        "burgundy": ("maroon", "oxblood"), "pink": ("blush",), "pastel pink": ("light pink", "pale pink"),
        "magenta": ("fuchsia",), "purple": ("violet",), "plum": ("aubergine",), "orange": ("tangerine",),
        "burnt orange": ("rust", "terracotta"), "peach": ("apricot",), "yellow": ("lemon", "golden yellow"),
        "gold": ("golden", "gilded"), "rose gold": ("copper rose",), "silver": ("silvertone",),
        "beige": ("tan", "sand"), "cream": ("off white", "ivory"), "pearl": ("pearl white",),
        "brown": ("chocolate", "walnut brown"),
        "multicolor": ("multi color", "multicolored", "multi colored"),
        "clear": ("transparent",), "bronze": ("oil rubbed bronze",), "champagne bronze": ("champagne",),
        "matte black": ("flat black", "satin black"), "chrome": ("polished chrome",),
        "brushed nickel": ("brush nickel", "satin nickel"), "brushed gold": ("satin gold",),
    },
    "material": {
        "wood": ("wooden", "solid wood"), "light wood": ("natural wood", "blonde wood"),
        "dark wood": ("espresso wood",), "leather": ("genuine leather", "top grain leather"),
        "faux leather": ("vegan leather", "leatherette", "pu leather"), "velvet": ("velour",),
        "linen": ("linen blend",), "cotton": ("cotton blend",), "wool": ("wool blend",),
        "polyester": ("poly",), "microfiber": ("microsuede",), "marble": ("marble top",),
        "glass": ("tempered glass",), "metal": ("metallic",), "stainless steel": ("stainless",),
        "iron": ("wrought iron", "wrought"), "acrylic": ("lucite",), "rattan": ("wicker",),
        "resin": ("plastic",), "ceramic": ("porcelain",), "stone": ("natural stone",),
        "brick": ("faux brick",), "concrete": ("cement",), "bamboo": ("bamboo wood",), "teak": ("teak wood",),
        "oak": ("white oak",), "walnut": ("walnut wood",), "pine": ("pine wood",),
        "driftwood": ("reclaimed wood",), "jute": ("sisal",), "faux fur": ("fluffy", "sherpa"),
        "canvas": ("canvas print",), "brass": ("solid brass",), "copper": ("hammered copper",),
        "aluminum": ("aluminium",), "memory foam": ("foam",), "twig": ("branch",),
    },
    "style": {
        "modern": ("contemporary",), "mid century modern": ("mid century", "midcentury", "mcm"),
        "rustic": ("lodge",), "farmhouse": ("country",), "modern farmhouse": ("new farmhouse",),
        "industrial": ("urban industrial",), "traditional": ("classic",), "boho": ("bohemian",),
        "coastal": ("beach", "nautical", "seaside"), "scandinavian": ("nordic",), "glam": ("glamorous",),
        "minimalist": ("minimal",), "vintage": ("antique", "distressed"), "70s": ("seventies", "retro"),
        "elegant": ("sophisticated",), "unique": ("one of a kind",), "whimsical": ("playful",),
        "mission": ("craftsman", "arts and crafts"), "oriental": ("persian",), "chinese": ("asian",),
        "mexican": ("southwestern",), "tropical": ("hawaiian", "hawaii", "luau"),
        "queen anne": ("queen ann",), "shabby chic": ("cottage",), "art deco": ("deco",),
        "french country": ("french",),
    },
    "size": {
        "small": ("compact", "petite"), "medium": ("medium size", "mid size"), "large": ("oversized", "big"),
        "extra large": ("xl", "huge"), "tall": ("high",), "low profile": ("low",), "mini": ("miniature",),
        "wide": ("extra wide",), "twin": ("twin size",), "full": ("double size",), "queen": ("queen size",),
        "king": ("king size",), "california king": ("cal king",), "3/4 size": ("three quarter",),
        "counter height": ("counter",), "bar height": ("pub height",), "full length": ("floor length",),
        "chair and a half": ("cuddle size",),
    },
    "room": {
        "outdoor": ("patio", "exterior"), "indoor": ("interior",), "bathroom": ("bath",),
        "kitchen": ("galley",), "bedroom": ("master bedroom",), "living room": ("family room", "living"),
        "dining room": ("dining",), "office": ("home office", "study"),
        "entryway": ("entry", "foyer", "entrance", "mudroom", "mud room"),
        "kids": ("children", "childrens", "child"), "toddler": ("baby",), "nursery": ("babys room",),
        "garage": ("workshop",), "laundry": ("laundry room", "utility"), "garden": ("backyard", "yard"),
        "porch": ("front porch",), "closet": ("walk in closet",), "pantry": ("larder",),
    },
    "feature": {
        "tufted": ("channel tufted", "button tufted"), "upholstered": ("padded", "cushioned"),
        "storage": ("hidden storage", "with storage"),
        "adjustable": ("adjustable height", "height adjustable"),
        "swivel": ("rotating",), "power": ("electric", "motorized"), "power lift": ("lift assist", "lift"),
        "led": ("lighted", "light up", "illuminated"), "solar": ("solar powered",),
        "waterproof": ("water resistant", "weatherproof"), "folding": ("foldable", "fold out", "collapsible"),
        "wall mounted": ("wall mount", "hanging", "floating"),
        "freestanding": ("free standing", "standalone"),
        "with wheels": ("wheels", "casters", "rolling"), "with drawers": ("drawers",),
        "backrest": ("with back", "high back"), "armless": ("no arms",),
        "sleeper": ("pull out", "sofa bed"), "trundle": ("with trundle",), "canopy": ("canopy frame",),
        "poster": ("four poster", "4 poster"), "platform": ("platform base",), "sleigh": ("sleigh style",),
        "wingback": ("wing back", "wing"), "tuxedo arm": ("tuxedo",), "modular": ("configurable",),
        "blackout": ("room darkening",), "thermal": ("insulated",), "grommet": ("grommet top",),
        "zippered": ("zipper", "zip"), "enclosed": ("closed", "with doors"),
        "locking": ("lockable", "with lock"),
        "anti fatigue": ("comfort",), "handmade": ("handcrafted", "hand made"), "reversible": ("two sided",),
        "washable": ("machine washable",), "heavy duty": ("commercial grade", "high weight capacity"),
        "glow in the dark": ("luminous",), "silent": ("non ticking", "quiet"), "cordless": ("wireless",),
        "dimmable": ("dimmer",), "double": ("dual",), "single": ("single handle", "one handle"),
        "top loading": ("top load",), "front loading": ("front load",), "nesting": ("stackable",),
        "leaning": ("lean to",), "multi tiered": ("tiered", "multi tier"), "backless": ("stool height",),
        "seating": ("with seating",), "sliding": ("slide",), "retractable": ("extendable",),
        "privacy": ("privacy screen",), "real touch": ("lifelike", "realistic"),
        "artificial": ("faux", "fake"),
        "decorative": ("ornamental",), "framed": ("with frame",), "comfortable": ("comfy",),
        "executive": ("managerial",), "l shaped": ("l shape", "corner"), "rocking": ("rocker style",),
        "portable": ("travel",), "diamond": ("diamond pattern",),
    },
    "pattern": {
        "floral": ("flower", "botanical"), "striped": ("stripe",), "geometric": ("geo",),
        "abstract": ("modern abstract",), "animal print": ("leopard", "zebra print"),
        "solid": ("solid color",), "plaid": ("tartan",), "polka dot": ("dot",), "damask": ("damask print",),
        "paisley": ("paisley print",),
        "chevron": ("zigzag",), "shell": ("sea shell", "seashell"), "christmas": ("holiday", "xmas"),
    },
}
# Families drawn at random for products (with probabilities); query-only families are never drawn.
RANDOM_FAMILIES: tuple[tuple[str, float], ...] = (
    ("color", 0.9), ("material", 0.75), ("style", 0.5), ("pattern", 0.15), ("feature", 0.35), ("room", 0.15),
)
# Order of modifiers in a generated title, before the noun.
TITLE_ORDER = ("collection", "style", "size", "dimension", "number", "drawers", "lights", "pieces",
               "capacity", "gangs", "voltage", "tiers", "age", "color", "pattern", "material", "room",
               "feature", "type", "theme")

STOPWORDS = frozenset((
    "a", "an", "the", "and", "or", "with", "without", "for", "by", "of", "in", "on", "to", "that", "have",
    "has", "is", "are", "&", "w", "at", "from", "including", "between", "only", "look", "inspired", "style",
    "type", "inch", "inches", "height", "ideas", "designs", "idea", "design", "tjat", "ate", "old",
))
# Nouns so generic that they neither name a class nor modify one.
GENERIC_NOUNS = frozenset(
    ("furniture", "decor", "item", "product", "thing", "stuff", "piece", "accessory", "set"))

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
NOUN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "sofa": ("couch", "loveseat", "love seat"), "loveseat": ("love seat",),
    "sectional": ("sectional sofa", "l shaped sofa"),
    "accent pillow": ("throw pillow", "decorative pillow", "pillow", "pillow cover"),
    "area rug": ("rug", "carpet"), "dresser": ("chest of drawers",), "chest": ("storage chest",),
    "bar stool": ("barstool", "counter stool", "stool", "pub stool"),
    "nightstand": ("bedside table", "night stand", "bed side table"),
    "tv stand": ("tv console", "media console", "entertainment stand"),
    "entertainment center": ("entertainment console", "entertainment unit", "tv unit"),
    "end table": ("side table", "accent table"), "coffee table": ("cocktail table",),
    "cocktail table": ("coffee table",), "sofa table": ("console table",),
    "console table": ("sofa table",),
    "wall art": ("canvas art", "art print", "wall print", "art"), "wall decor": ("wall sign", "sign"),
    "wall mirror": ("mirror",), "accent mirror": ("mirror", "decorative mirror"),
    "recliner": ("reclining chair",), "dining chair": ("kitchen chair", "side chair"),
    "accent chair": ("armchair", "arm chair", "lounge chair", "chair"),
    "office chair": ("desk chair", "task chair", "computer chair"), "desk": ("computer desk",),
    "curtain": ("curtain panel", "drape"), "vanity": ("bathroom vanity", "vanity cabinet"),
    "table lamp": ("desk lamp", "lamp"), "cabinet pull": ("drawer pull", "pull", "handle"),
    "drawer pull": ("cabinet pull", "pull", "handle"), "cabinet knob": ("knob",), "drawer knob": ("knob",),
    "bedding set": ("comforter set", "duvet cover set", "comforter", "duvet cover", "duvet", "bedding"),
    "sheet": ("bed sheet", "sheet set"), "sheet set": ("bed sheet set",), "ottoman": ("pouf", "footstool"),
    "bookcase": ("bookshelf", "book shelf"), "wall mounted shelf": ("wall shelf", "floating shelf", "shelf"),
    "wardrobe": ("armoire",), "armoire": ("wardrobe",), "kitchen island": ("island",),
    "floor tile": ("tile",), "wall tile": ("tile", "backsplash tile"), "light bulb": ("bulb",),
    "string light": ("fairy light",), "planter": ("plant pot", "flower pot", "pot"), "vase": ("urn",),
    "canister": ("container",), "jar": ("canister",), "serving dish": ("serving bowl",),
    "platter": ("serving platter",), "wall clock": ("clock",), "coat rack": ("coat tree", "hall tree"),
    "daybed": ("day bed",), "bed frame": ("platform bed", "frame"),
    "outdoor fireplace": ("fire pit", "firepit", "fire table"), "pergola": ("gazebo",),
    "patio umbrella stand": ("umbrella stand",), "base": ("umbrella base",),
    "outdoor conversation set": ("patio set", "conversation set", "patio conversation set"),
    "patio sofa": ("outdoor sofa",), "patio lounge chair": ("outdoor lounge chair",),
    "patio chaise lounge": ("outdoor chaise",), "indoor chaise lounge": ("chaise", "chaise lounge", "lounge"),
    "dining table set": ("dining set", "table and chairs", "kitchen table set"),
    "patio dining set": ("bistro set", "outdoor dining set"), "bar set": ("pub set", "pub table set"),
    "sideboard": ("credenza",), "buffet": ("buffet cabinet",), "kids bed": ("bunk bed", "loft bed"),
    "playhouse": ("play house",), "play tent": ("tent",), "washing machine": ("washer",),
    "refrigerator": ("fridge",), "range hood": ("kitchen hood", "hood"),
    "espresso machine": ("coffee maker", "espresso maker"), "slow cooker": ("crock pot", "crockpot"),
    "colander": ("strainer",), "free weight": ("dumbbell", "kettlebell"), "awning": ("sun awning",),
    "projector screen": ("movie screen",), "door mat": ("doormat", "welcome mat"),
    "chairmat": ("chair mat", "floor protector mat"), "lectern": ("podium",), "podium": ("lectern",),
    "deck box": ("storage box",), "hamper": ("laundry basket",), "basket": ("storage basket",),
    "trash can": ("wastebasket", "garbage can"), "curtain hardware": ("curtain rod", "tension rod", "rod"),
    "towel hook": ("hook",), "robe hook": ("hook",), "shower accessory": ("shower caddy",),
    "interior door": ("closet door", "door"), "molding": ("moulding", "trim"), "millwork": ("trim",),
    "wall plate": ("switch plate", "light switch"), "pendant light": ("pendant",),
    "flush mount lighting": ("flush mount", "ceiling light", "semi flush mount"),
    "vanity lighting": ("vanity light", "bath light"), "landscape lighting": ("path light", "solar light"),
    "outdoor wall light": ("porch light", "light fixture"),
    "under cabinet lighting": ("led strip", "light strip", "strip light"),
    "outdoor lantern": ("lantern",), "garden statue": ("statue", "sculpture"),
    "fountain": ("water fountain",), "weather instrument": ("weather station", "thermometer"),
    "glassware": ("glass", "drinking glass"), "cooking utensil": ("utensil", "kitchen tool"),
    "dining bowl": ("bowl",), "candle holder": ("candlestick", "candle sconce"),
    "decorative object": ("figurine", "sculpture"), "faux plant": ("artificial plant", "fake plant"),
    "faux floral": ("artificial flower", "floral arrangement", "arrangement"), "picture frame": ("frame",),
    "memo board": ("calendar", "whiteboard", "bulletin board"), "mattress topper": ("topper",),
    "mattress pad": ("mattress liner",), "mattress protector": ("mattress encasement",),
    "mattress cover": ("mattress encasement",), "adjustable bed": ("adjustable base",),
    "tub": ("bathtub", "freestanding tub"), "whirlpool": ("jetted tub",), "shower door": ("bath door",),
    "tub door": ("bath door",), "pantry cabinet": ("pantry",), "jewelry armoire": ("jewelry organizer",),
    "shoe storage": ("shoe rack", "shoe cabinet", "shoe bench"), "log storage": ("log rack",),
    "bike rack": ("bicycle rack",), "computer mount": ("monitor stand", "monitor mount"),
    "cart": ("utility cart", "rolling cart", "laundry cart"), "stand": ("rolling stand",),
    "plant table": ("plant stand", "flower stand"), "telephone table": ("phone table",),
    "furniture cover": ("patio cover", "cover"),
    "furniture cushion": ("seat cushion", "chair cushion", "cushion"),
    "chair accessory": ("chair pad",), "ride on toy": ("ride on", "dirt bike"),
    "kids wall decor": ("kids wall art",), "fencing": ("fence",), "kitchen mat": ("anti fatigue mat", "mat"),
    "kitchen sink": ("farmhouse sink", "sink"), "bathroom sink faucet": ("bathroom faucet", "faucet"),
    "kitchen faucet": ("faucet",), "door lever": ("lever", "door handle"), "bench": ("entryway bench",),
    "headboard": ("head board",), "christmas tree": ("artificial christmas tree",),
    "wreath": ("door wreath",),
    "accent stool": ("stool",), "mailbox": ("mail box",), "sauna": ("steam room",),
    "food storage": ("food container",), "dispenser": ("food dispenser",), "recycling": ("recycling bin",),
    "living room set": ("sofa set",), "living room table set": ("coffee table set", "table set"),
    "kids chair": ("childrens chair",), "bird play stand": ("bird perch",),
    "nightlight": ("night light",), "innerspring mattress": ("mattress",), "foam mattress": ("mattress",),
    "latex mattress": ("mattress",), "specialty serving": ("cake plate", "cake stand"),
    "flatware serving piece": ("serving utensil", "cutlery"),
    "decorative tray": ("tray",), "accent chest": ("accent cabinet",), "cabinet": ("storage cabinet",),
    "office storage cabinet": ("filing cabinet", "storage cabinet"), "wall mounted shelve": ("wall shelf",),
    "shelving": ("shelves", "shelf"), "rack": ("storage rack",), "under cabinet light": ("light strip",),
    "bathroom storage": ("bathroom cabinet", "over the toilet storage"), "bath accessory": ("bath set",),
    "laundry accessory": ("laundry organizer",), "swing set accessory": ("swing",),
    "uniters outdoor furniture": ("outdoor furniture",), "garden accent": ("garden decor",),
    "outdoor wall decor": ("outdoor wall art",), "covers": ("cover",), "carry bag": ("storage bag",),
    "picnic basket": ("picnic set",), "cooler": ("ice chest",), "memory foam mattress": ("mattress",),
}

# Extra home-goods classes that only exist as distractors (hard negatives, fillers) for any query file.
EXTRA_CLASSES: tuple[str, ...] = (
    "Mugs & Teacups", "Coasters", "Table Runners", "Throw Blankets", "Candles", "Bath Towels", "Placemats",
    "Cookware Sets", "Dinnerware Sets", "Wall Sconces", "Floor Lamps", "Bath Rugs", "Shower Curtains",
    "Jewelry Boxes", "Storage Baskets", "Toy Storage", "Baby Cribs", "Pet Beds", "Cat Trees", "Grills",
    "Bar Carts", "Wine Racks", "Ceiling Fans", "Outdoor Rugs", "Blinds & Shades", "Bookends",
)

# --- categories -----------------------------------------------------------------------------------------
# (department, sub-department, keywords): the first rule with a keyword in the class name wins.
_CATEGORY_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Outdoor", "Outdoor Lighting", ("outdoor wall light", "outdoor lantern", "landscape light")),
    ("Outdoor", "Patio Furniture", ("patio", "outdoor conversation", "uniters", "outdoor furniture")),
    ("Outdoor", "Outdoor Décor & Structures", ("outdoor", "pergola", "awning", "deck box", "fencing",
                                                "garden", "mailbox", "umbrella", "fountain", "planter",
                                                "log storage", "grill", "weather", "wreath")),
    ("Baby & Kids", "Kids Furniture", ("kids bed", "kids chair", "kids desk", "crib")),
    ("Baby & Kids", "Toys & Play", ("toy", "play", "swing set", "kids")),
    ("Lighting", "Ceiling Lights", ("chandelier", "pendant", "flush mount", "ceiling")),
    ("Lighting", "Lamps", ("lamp",)),
    ("Lighting", "Wall & Specialty Lighting", ("light", "sconce", "bulb")),
    ("Bath", "Bathroom Fixtures", ("vanit", "shower", "tub", "bathroom sink", "sauna", "toilet")),
    ("Bath", "Bath Accessories", ("bath", "towel", "robe")),
    ("Appliances", "Kitchen & Laundry Appliances", ("refrigerator", "range hood", "espresso", "washing",
                                                     "dryer", "slow cooker", "crock pot")),
    ("Kitchen & Tabletop", "Tabletop", ("serving", "platter", "bowl", "glassware", "barware", "flatware",
                                        "dinnerware", "mug", "coaster", "placemat", "table runner")),
    ("Kitchen & Tabletop", "Kitchen Storage & Tools", ("kitchen", "cook", "colander", "strainer",
                                                       "canister", "jar", "food storage", "picnic", "utensil",
                                                       "spinner")),
    ("Bed & Mattress", "Mattresses", ("mattress", "adjustable bed")),
    ("Bed & Mattress", "Bedding", ("sheet", "bedding", "duvet", "comforter", "bed accessor", "blanket")),
    ("Rugs", "Rugs & Mats", ("rug", "mat")),
    ("Décor & Pillows", "Window Treatments", ("curtain", "drape", "blind", "shade")),
    ("Décor & Pillows", "Holiday Décor", ("christmas",)),
    ("Décor & Pillows", "Wall Décor", ("wall", "art", "mirror", "clock", "frame", "memo")),
    ("Décor & Pillows", "Décor Accents", ("vase", "urn", "decorative", "candle", "faux", "plant", "floral",
                                          "statue", "pillow", "tray", "bookend", "jewelry box")),
    ("Home Improvement", "Hardware", ("pull", "knob", "lever", "hook", "hardware", "wall plate")),
    ("Home Improvement", "Flooring, Walls & Doors", ("tile", "wallpaper", "molding", "millwork", "door")),
    ("Storage & Organization", "Storage & Organization", ("storage", "shel", "rack", "basket", "hamper",
                                                          "cart", "trash", "laundry", "shoe", "coat", "mount",
                                                          "recycling", "organizer")),
    ("Furniture", "Bedroom Furniture", ("bed", "headboard", "dresser", "chest", "nightstand", "wardrobe",
                                        "armoire")),
    ("Furniture", "Office Furniture", ("desk", "office", "lectern", "podium", "bookcase")),
    ("Furniture", "Kitchen & Dining Furniture", ("dining", "bar", "stool", "sideboard", "buffet", "island",
                                                 "pantry")),
    ("Furniture", "Living Room Furniture", ("sofa", "sectional", "recliner", "chair", "table", "stand",
                                            "ottoman", "living room", "chaise", "bench", "cabinet",
                                            "cushion", "cover", "loveseat", "futon")),
    ("Sports & Fitness", "Fitness", ("weight", "bike", "sport", "fitness")),
    ("Pets", "Pet Supplies", ("pet", "cat", "dog", "bird")),
)

# Median price (USD) per department; a class multiplies it by a stable per-class factor.
DEPARTMENT_PRICE: dict[str, float] = {
    "Furniture": 320.0, "Outdoor": 260.0, "Lighting": 130.0, "Bath": 190.0, "Appliances": 650.0,
    "Kitchen & Tabletop": 45.0, "Bed & Mattress": 140.0, "Rugs": 120.0, "Décor & Pillows": 55.0,
    "Home Improvement": 28.0, "Storage & Organization": 75.0, "Baby & Kids": 90.0, "Sports & Fitness": 95.0,
    "Pets": 60.0, "Home Goods": 50.0,
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

_NAME_HEADS = (
    "Hill", "Ash", "Bran", "Cal", "Dun", "Elm", "Fair", "Glen", "Hart", "Iver", "Kel", "Lan", "Mar", "Nor",
    "Oak", "Pem", "Quin", "Rad", "Sel", "Thorn", "Wes", "Wyn", "Bel", "Cor", "Dal", "Fen", "Gar", "Hol",
    "Lind", "Mer", "Pax", "Rosa", "Sten", "Tal", "Ul", "Ver", "Wil", "Yar", "Zan", "Brin", "Cres", "Dor",
    "Ever", "Gran", "Ivy", "Kings", "Lyn", "Mill", "Orr", "Pren",
)
_NAME_TAILS = ("sby", "ford", "ton", "wick", "dale", "worth", "mere", "field", "brook", "ley", "more",
               "stead", "haven", "croft", "bury", "well", "ridge", "wood", "ham", "vale", "ina", "ora",
               "ette", "ian")
_BRAND_FIRST = ("Arden", "Bexley", "Calder", "Dorian", "Everly", "Finch", "Harlow", "Juniper", "Linden",
                "Marlow", "Nolan", "Orla", "Pierce", "Rowan", "Sawyer", "Tatum", "Wren", "Alder", "Briar",
                "Cove", "Delphine", "Emery", "Hollis", "Indigo", "Keaton", "Larkin", "Maple", "Nash")
_BRAND_LAST = ("Lane", "Row", "& Co.", "Home", "House", "Living", "Loft", "Studio", "Works", "Trading Co.",
               "Street", "Crest", "Hollow", "Point", "Grove", "Outpost")


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
