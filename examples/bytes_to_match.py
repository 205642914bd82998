"""How many bytes one algorithm of a comparison needs to match another's final accuracy, seed by seed.

    python examples/bytes_to_match.py COMPARISON_DIR jwins "choco-gamma=0.2"

reads ``COMPARISON_DIR/<run>/seed-<s>/metrics.jsonl`` (what ``jwins compare --seeds`` writes; with one seed,
``COMPARISON_DIR/<run>/metrics.jsonl``) and prints, per
seed, where the second run first reached its final test accuracy and where the first run first reached it
(both at evaluated rounds only), with the ratio of the bytes per node.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jwins.errors import JwinsError
from jwins.report import read_run, target_reached


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison", type=Path)
    parser.add_argument("run", help="the run that should match, e.g. jwins")
    parser.add_argument("reference", help="the run whose final accuracy is the target, e.g. choco-gamma=0.2")
    args = parser.parse_args()
    reference = args.comparison / args.reference
    seeds = sorted(reference.glob("seed-*")) or [reference]  # a comparison of one seed has no seed-* folders
    try:
        for seed_dir in seeds:
            ours = read_run(args.comparison / args.run / seed_dir.relative_to(reference))
            theirs = read_run(seed_dir)
            target = theirs.evaluated[-1]["test_accuracy"]
            first = target_reached(theirs.metrics, target)
            hit = target_reached(ours.metrics, target)
            mb, hit_mb = first["cumulative_bytes"] / 1e6, hit and hit["cumulative_bytes"] / 1e6
            where = (f"reaches it at round {hit['round']}, {hit_mb:.3f} MB: {mb / hit_mb:.2f}x fewer bytes"
                     if hit else "never reaches it")
            prefix = f"{seed_dir.name}: " if seed_dir != reference else ""
            print(f"{prefix}{args.reference} ends at {100 * target:.2f}%, first reached at round {first['round']} "
                  f"({mb:.3f} MB); {args.run} {where}")
    except JwinsError as e:
        print(f"bytes_to_match: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
