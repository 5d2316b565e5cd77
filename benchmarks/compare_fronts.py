"""Compare two runs' exported fronts row by row (file, trial, cost ratio, train/held-out loss, policy).

    python benchmarks/compare_fronts.py RUN_A/schedules/index.yaml RUN_B/schedules/index.yaml

Used to check that a refactor keeps the search's behaviour: the same seed and trial budget must give the same
front (run names differ, so rows are matched by file name).
"""

from __future__ import annotations

import argparse
import sys

import yaml


def rows(path: str) -> dict[str, tuple]:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return {r["file"]: (r["trial"], r["cost_ratio"], r["quality"]["train"], r["quality"]["heldout"], r["policy"])
            for r in doc["schedules"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    args = ap.parse_args(argv)
    ra, rb = rows(args.a), rows(args.b)
    print(f"{args.a}: {len(ra)} schedules; {args.b}: {len(rb)}; same files: {len(set(ra) & set(rb))}")
    diff = 0
    for f in sorted(set(ra) | set(rb)):
        if ra.get(f) != rb.get(f):
            diff += 1
            print(f"DIFF {f}: {ra.get(f, ('absent',))[:4]} vs {rb.get(f, ('absent',))[:4]}")
    print(f"differences: {diff}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
