"""WANDS-format catalogs: reading one (`catalog.io`, what serving needs) and generating one with graded
judgments from a query file (`catalog.builder`; docs/catalog.md has the rules).

Nothing is imported here, so reading a catalog never loads the generator.
"""
