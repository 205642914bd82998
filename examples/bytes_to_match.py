"""How many bytes one algorithm of a comparison needs to match another's final accuracy, seed by seed.

    python examples/bytes_to_match.py COMPARISON_DIR jwins "choco-gamma=0.2"

reads ``COMPARISON_DIR/<run>/seed-<s>/metrics.jsonl`` (what ``jwins compare --seeds`` writes; with one seed,
``COMPARISON_DIR/<run>/metrics.jsonl``) and prints, per
seed, where the second run first reached its final test accuracy and where the first run first reached it
(both at evaluated rounds only), with the ratio of the bytes per node.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def evaluated(run: Path) -> list[tuple[int, float, float]]:
    """(round, cumulative MB per node, test accuracy) of every evaluated round of a run."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["round"], r["cumulative_bytes"] / 1e6, r["test_accuracy"])
            for r in rows if r.get("test_accuracy") is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison", type=Path)
    parser.add_argument("run", help="the run that should match, e.g. jwins")
    parser.add_argument("reference", help="the run whose final accuracy is the target, e.g. choco-gamma=0.2")
    args = parser.parse_args()
    reference = args.comparison / args.reference
    seeds = sorted(reference.glob("seed-*")) or [reference]  # a comparison of one seed has no seed-* folders
    for seed_dir in seeds:
        ours = evaluated(args.comparison / args.run / seed_dir.relative_to(reference))
        theirs = evaluated(seed_dir)
        target = theirs[-1][2]
        first = next(x for x in theirs if x[2] >= target)
        hit = next((x for x in ours if x[2] >= target), None)
        where = (f"reaches it at round {hit[0]}, {hit[1]:.3f} MB: {first[1] / hit[1]:.2f}x fewer bytes"
                 if hit else "never reaches it")
        prefix = f"{seed_dir.name}: " if seed_dir != reference else ""
        print(f"{prefix}{args.reference} ends at {100 * target:.2f}%, first reached at round {first[0]} "
              f"({first[1]:.3f} MB); {args.run} {where}")


if __name__ == "__main__":
    main()
