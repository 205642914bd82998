"""The unit of communication: what one node sends to all its neighbours in one round."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Message:
    """One node's message for one round.

    ``indices`` are sorted, unique and ``< dim``; ``None`` means dense (``values`` has ``dim`` entries).
    ``values`` are float32 (after decoding: exactly what the value codec restored).
    ``extra`` carries small named floats on the wire, e.g. ``{"alpha": 0.25}`` or ``{"mask_seed": 1234}``.
    ``alpha`` is the fraction of coefficients the sender chose to send (JWINS's draw), recorded where it is made
    for the metrics; it never travels (a decoded message has None).
    """

    sender: int
    round: int
    dim: int
    indices: np.ndarray | None
    values: np.ndarray
    extra: dict[str, float] = field(default_factory=dict)
    alpha: float | None = field(default=None, compare=False)

    @property
    def dense(self) -> bool:
        return self.indices is None

    @property
    def k(self) -> int:
        """Number of values carried."""
        return int(self.values.shape[0])
