"""JWINS (Dhasade et al., ICDCS 2023): wavelet-domain sharing of accumulated change with a randomized
communication cut-off.

Assembled from parts, not derived: the top-k accumulated-change selector of :mod:`.topk`, run in the domain
of a multilevel wavelet transform (:func:`jwins.transforms.wavelet`), with alpha drawn every round, per node,
uniformly from ``alphas`` (the reference's ``alpha_list``). A draw at or above ``metadata_cap`` sends the whole
model densely. ``transform = "identity"`` gives the paper's ablation without the wavelet.
"""
from __future__ import annotations

from typing import Sequence

from ..transforms import Transform, identity, wavelet as wavelet_transform
from .topk import TopKSelector

DEFAULT_ALPHAS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0)


def jwins(*, alphas: Sequence[float] = DEFAULT_ALPHAS, transform: str | Transform = "wavelet", wavelet: str = "sym2",
          level: int = 4, metadata_cap: float = 0.5, accumulation: bool = True, accumulate_averaging: bool = True,
          selection: str = "change") -> TopKSelector:
    """``transform``: ``"wavelet"`` (of ``wavelet`` at ``level``), ``"identity"`` or a :class:`Transform`."""
    if isinstance(transform, str):
        if transform not in ("wavelet", "identity"):
            raise ValueError(f"transform = {transform!r}; choose wavelet or identity")
        transform = wavelet_transform(wavelet, level) if transform == "wavelet" else identity()
    return TopKSelector(transform=transform, alphas=alphas, metadata_cap=metadata_cap, accumulation=accumulation,
                        accumulate_averaging=accumulate_averaging, selection=selection)
