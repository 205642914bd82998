"""What a person sees of a run: its progress bar, the summary table ``jwins run`` prints, and the warning when
evaluation would take longer than the rounds. The loop (:mod:`jwins.experiment`) calls these; they compute
nothing a run records."""
from __future__ import annotations

from typing import Any

from .config import Config


class Progress:
    """The progress bar of rank 0 (tqdm)."""

    def __init__(self, config: Config, first_round: int):
        from tqdm import tqdm

        self.bar = tqdm(total=config.rounds, initial=first_round, desc=config.sharing.algorithm.rsplit(":", 1)[-1],
                        unit="round", dynamic_ncols=True)
        self.accuracy: float | None = None

    def show(self, record: dict[str, Any]) -> None:
        if "test_accuracy" in record:
            self.accuracy = record["test_accuracy"]
        shown = {"loss": f"{record['train_loss']:.3f}", "MB": f"{record['cumulative_bytes'] / 1e6:.2f}"}
        if self.accuracy is not None:
            shown[record.get("test_metric_name", "accuracy")[:3]] = f"{self.accuracy:.3f}"
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def evaluation_warning(per_eval: float, evals: int, round_seconds: float, rounds: int, nodes: int,
                       samples: int) -> str | None:
    """What ``jwins run`` says when ``evals`` evaluations of ``per_eval`` seconds will take longer than
    ``rounds`` rounds of ``round_seconds``; None when they will not.

    >>> evaluation_warning(2.0, 11, 0.5, 100, 16, 2000) is None
    True
    >>> evaluation_warning(10.0, 11, 0.5, 100, 96, 10000).split(";")[0]
    'evaluation will take about 110 s of this run against 50 s of rounds (11 evaluations of 96 nodes on 10000 test samples)'
    """
    if per_eval * evals <= round_seconds * rounds:
        return None
    return (f"evaluation will take about {per_eval * evals:.0f} s of this run against {round_seconds * rounds:.0f} s "
            f"of rounds ({evals} evaluations of {nodes} nodes on {samples} test samples); to spend less, lower "
            "eval.nodes or eval.max_samples, or raise eval.every")


def format_summary(summary: dict) -> str:
    """A short human-readable table of a run's summary."""
    acc = summary["final_accuracy"]
    name = summary.get("test_metric_name", "accuracy")
    fmt = (lambda v: "n/a" if v is None else (f"{100 * v:.2f}%" if name == "accuracy" else f"{v:.4f}"))
    rows = [
        ("algorithm", summary["algorithm"]),
        ("nodes x rounds", f"{summary['nodes']} x {summary['rounds']}"),
        (f"final {name} (mean / min / max)", f"{fmt(acc['mean'])} / {fmt(acc['min'])} / {fmt(acc['max'])}"),
        *([("  on the validation split", " / ".join(fmt(summary["final_validation"][k])
                                                      for k in ("mean", "min", "max")))]
          if summary.get("final_validation") else []),
        ("bytes sent per node", f"{summary['bytes_sent_per_node'] / 1e6:.3f} MB"),
        ("  values / indices / header", f"{summary['bytes_values_per_node'] / 1e6:.3f} / "
                                        f"{summary['bytes_indices_per_node'] / 1e6:.3f} / "
                                        f"{summary['bytes_header_per_node'] / 1e6:.3f} MB"),
        ("time", f"{summary['seconds']:.1f} s ({summary['seconds_per_round'] * 1000:.0f} ms/round)"),
        *([("modelled time (compute + network)", f"{summary['modelled_seconds']:.1f} s")]
          if summary.get("modelled_seconds") is not None else []),
        ("peak memory", f"{summary['peak_rss_mb']:.0f} MB"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
