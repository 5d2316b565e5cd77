"""Packaged copies of the repository's ``search_spaces/*.yaml`` (so an installed cachesearch finds them).

The files in the repository's top-level ``search_spaces/`` are the source; ``tests/search`` checks that these
copies are identical.
"""
