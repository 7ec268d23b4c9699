"""Shared catalog-test inputs: two small query files and the catalogs built from them once per package."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.builder import build_catalog

# modifier-free query, a query with no class noun, and an empty query_class.
SMALL_QUERIES = """query_id\tquery\tquery_class
1\tnavy velvet sofa\tSofas
2\tmarble\tEnd Tables
3\toliver parsons\tDining Chairs
4\t"writing desk 48\"\"\"\tDesks
5\tturquoise pillows\tAccent Pillows
6\tcoffee table fire pit\tOutdoor Fireplaces
7\tblack 5 drawer dresser by guilford\tDressers & Chests
8\tgray dresser\tDressers & Chests
9\tunique coffee tables\tCoffee & Cocktail Tables
10\tking size bed\tBeds
11\tdumbbells\tFree Weights
12\tdesk for kids\t
13\tblk 18x18 seat cushions\tFurniture Cushions
14\tgurney  slade 56\tChandeliers
"""

# Nothing here is in the built-in lexicons: invented classes and words, duplicate ids and texts.
UNSEEN_QUERIES = """query_id\tquery\tquery_class
100\tzorblax hammock\tHammocks
101\tteal quilted glimmerpod\tGlimmerpods
102\tstriped hammock with stand\tHammocks
103\tcobalt wibbler rack\tWibblers & Snorf Racks
104\tzorblax hammock\tHammocks
104\tduplicate id, other text\tHammocks
105\tsnorf rack 36 inch\tWibblers & Snorf Racks
"""


def write_queries(tmp: Path, text: str) -> Path:
    path = tmp / "query.csv"
    path.write_text(text)
    return path


# Package scope: the builder and io tests read the same catalogs; each build takes seconds.
@pytest.fixture(scope="package")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("small")
    queries = write_queries(tmp, SMALL_QUERIES)
    return build_catalog(queries, tmp / "cat", seed=7, products=3000, progress=False)


@pytest.fixture(scope="package")
def unseen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("unseen")
    queries = write_queries(tmp, UNSEEN_QUERIES)
    return build_catalog(queries, tmp / "cat", seed=1, products=2000, progress=False)
