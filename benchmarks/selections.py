"""Dump what real runs send: the index sets (for ``benchmarks/wire.py --indices``) and the values (for
``benchmarks/wire.py --values``).

    python benchmarks/selections.py --out /tmp/sel.npz                  # JWINS; Fashion-MNIST if installed
    python benchmarks/selections.py --algorithm topk --out /tmp/topk.npz
    python benchmarks/selections.py --algorithm full --out /tmp/full.npz
    python benchmarks/selections.py --set nodes=96 --rounds 40 --keep 1,10,40
    python benchmarks/wire.py --indices /tmp/sel.npz
    python benchmarks/wire.py --values /tmp/sel.npz /tmp/topk.npz /tmp/full.npz

Runs an experiment (the configuration of ``jwins run`` with ``sharing.algorithm`` = ``--algorithm`` and the
overrides given) with a recording wrapper around the sharing algorithm, and keeps every message the nodes send
in the rounds named by ``--keep``. The file holds:

* ``sel_0, sel_1, ...``: the sorted int64 indices of each sparse message, with ``round`` and ``node`` per set
  (as before: ``wire.py --indices`` reads these);
* ``val_0, val_1, ...``: the float32 values of every kept message, sparse and dense, in the order sent, with
  ``msg_round``, ``msg_node``, ``msg_dense`` (True for a dense message: all ``dim`` values) and ``msg_sel``
  (the number of its ``sel_`` set, -1 for a dense message);
* ``dim`` (the length of the vectors on the wire: the wavelet-domain length for JWINS) and ``algorithm``.

JWINS sends a node's whole (wavelet-domain) vector densely in the rounds where its alpha draw reaches
``metadata_cap`` (alpha = 1.0 is one of its seven draws) and the selected coefficients otherwise; TopK sends
the selected parameters; full sharing sends every parameter, densely. It is a benchmark helper, not a test.
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
ALGORITHMS = ("jwins", "topk", "full")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="selections.npz")
    ap.add_argument("--algorithm", default="jwins", choices=ALGORITHMS, help="sharing algorithm (default jwins)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--keep", default="1,10,30", help="rounds whose messages are kept (1-based)")
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. nodes=96")
    args = ap.parse_args(argv)
    keep = {int(r) for r in args.keep.split(",") if r}

    base = [f"sharing.algorithm={args.algorithm}", f"rounds={args.rounds}", "eval.every=0", "eval.max_samples=500"]
    if FASHION.is_dir():
        base += ["data.name=fashion-mnist", f"data.root={FASHION}"]
    cfg = config_mod.override(config_mod.Config(), base + args.set)

    kept: list[tuple[int, int, np.ndarray | None, np.ndarray]] = []  # (round, sender, indices or None, values)
    dims: set[int] = set()

    class Recording:
        """The configured sharing algorithm, recording the messages it sends (a plugin wrapping a built-in)."""

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
                    idx = None if m.indices is None else np.asarray(m.indices, dtype=np.int64).copy()
                    kept.append((round + 1, m.sender, idx, np.array(m.values, dtype=np.float32)))
                    dims.add(int(m.dim))
            return messages, state, prepared

        def merge(self, state, params, inbox, mixing, prepared):
            return self.inner.merge(state, params, inbox, mixing, prepared)

    with tempfile.TemporaryDirectory() as tmp:
        result = experiment.run(cfg, run_dir=Path(tmp) / "run", sharing=Recording(build_sharing(cfg)[0]))
    if not kept:
        sys.exit(f"no messages recorded in rounds {sorted(keep)} (of {args.rounds})")
    if len(dims) != 1:
        sys.exit(f"messages of several dimensions {sorted(dims)}: expected one model")
    sparse = [(r, n, idx) for r, n, idx, _ in kept if idx is not None]
    arrays = {f"sel_{i}": idx for i, (_, _, idx) in enumerate(sparse)}
    val_sel, s = [], 0
    for _, _, idx, _ in kept:
        val_sel.append(-1 if idx is None else s)
        s += idx is not None
    arrays.update({f"val_{i}": values for i, (_, _, _, values) in enumerate(kept)})
    dim = dims.pop()
    np.savez(args.out, dim=np.int64(dim), algorithm=np.array(args.algorithm),
             round=np.array([r for r, _, _ in sparse], dtype=np.int64),
             node=np.array([n for _, n, _ in sparse], dtype=np.int64),
             msg_round=np.array([r for r, _, _, _ in kept], dtype=np.int64),
             msg_node=np.array([n for _, n, _, _ in kept], dtype=np.int64),
             msg_dense=np.array([idx is None for _, _, idx, _ in kept]),
             msg_sel=np.array(val_sel, dtype=np.int64), **arrays)
    ks = np.array([v.shape[0] for _, _, idx, v in kept if idx is not None])
    what = f"{len(sparse)} sparse (k from {ks.min():,} to {ks.max():,})" if sparse else "no sparse"
    print(f"{args.out}: {args.algorithm}, {len(kept)} messages from {cfg.data.name} ({cfg.nodes} nodes, rounds "
          f"{sorted(keep)}), dim={dim:,}: {len(kept) - len(sparse)} dense, {what}; "
          f"final accuracy {result.summary['final_accuracy']['mean']:.4f}")


if __name__ == "__main__":
    main()
