"""Dump the index sets that real JWINS selections produce, for ``benchmarks/wire.py --indices``.

    python benchmarks/selections.py --out /tmp/sel.npz            # Fashion-MNIST if installed, else digits
    python benchmarks/selections.py --set nodes=96 --rounds 40 --keep 1,10,40
    python benchmarks/wire.py --indices /tmp/sel.npz

Runs a JWINS experiment (the configuration of ``jwins run`` with ``sharing.algorithm = jwins`` and the
overrides given) and records the wavelet-domain indices every node sends in the rounds named by ``--keep``.
The file holds ``sel_0, sel_1, ...`` (sorted int64 indices), ``dim`` (the transformed length), and, per set,
``round`` and ``node``. It is a benchmark helper, not a test.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from jwins import config as config_mod
from jwins import experiment
from jwins.world import build_sharing

FASHION = Path("/usr/share/datasets/fashion-mnist")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="selections.npz")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--keep", default="1,10,30", help="rounds whose selections are kept (1-based)")
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. nodes=96")
    args = ap.parse_args(argv)
    keep = {int(r) for r in args.keep.split(",") if r}

    base = ["sharing.algorithm=jwins", f"rounds={args.rounds}", "eval.every=0", "eval.max_samples=500"]
    if FASHION.is_dir():
        base += ["data.name=fashion-mnist", f"data.root={FASHION}"]
    cfg = config_mod.override(config_mod.Config(), base + args.set)

    kept: list[tuple[int, int, np.ndarray]] = []
    dims: set[int] = set()

    class Recording:
        """The configured sharing algorithm, recording the indices it sends (a plugin wrapping a built-in)."""

        def __init__(self, inner):
            self.inner = inner
            self.index_codec = getattr(inner, "index_codec", None)

        def init(self, params, nodes):
            return self.inner.init(params, nodes)

        def message_dim(self, dim):
            return self.inner.message_dim(dim)

        def prepare(self, state, params, round, rngs):
            messages, state, prepared = self.inner.prepare(state, params, round, rngs)
            if round + 1 in keep:  # ``round`` is the loop's 0-based round number
                for m in messages:
                    if m.indices is not None:
                        kept.append((round + 1, m.sender, np.asarray(m.indices, dtype=np.int64).copy()))
                        dims.add(int(m.dim))
            return messages, state, prepared

        def merge(self, state, params, inbox, mixing, prepared):
            return self.inner.merge(state, params, inbox, mixing, prepared)

    with tempfile.TemporaryDirectory() as tmp:
        result = experiment.run(cfg, run_dir=Path(tmp) / "run", sharing=Recording(build_sharing(cfg)[0]))
    if not kept:
        sys.exit(f"no sparse messages recorded in rounds {sorted(keep)} (of {args.rounds})")
    if len(dims) != 1:
        sys.exit(f"messages of several dimensions {sorted(dims)}: expected one model")
    arrays = {f"sel_{i}": idx for i, (_, _, idx) in enumerate(kept)}
    np.savez(args.out, dim=np.int64(dims.pop()), round=np.array([r for r, _, _ in kept]),
             node=np.array([n for _, n, _ in kept]), **arrays)
    ks = np.array([idx.shape[0] for _, _, idx in kept])
    print(f"{args.out}: {len(kept)} selections from {cfg.data.name} ({cfg.nodes} nodes, rounds {sorted(keep)}), "
          f"dim={int(np.load(args.out)['dim']):,}, k from {ks.min():,} to {ks.max():,}; "
          f"final accuracy {result.summary['final_accuracy']['mean']:.4f}")


if __name__ == "__main__":
    main()
