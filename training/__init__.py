"""The scripts that trained the embedded models' shipped weights (not part of the installed package).

Run them from the repository root with cachesearch installed (``pip install -e .``), e.g.
``python -m training.shapes --out DIR``; training/README.md gives the command and numbers of each shipped run.
"""
