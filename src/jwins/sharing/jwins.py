"""JWINS (Dhasade et al., ICDCS 2023): wavelet-domain sharing of accumulated change with a randomized
communication cut-off.

Assembled from parts, not derived: the top-k accumulated-change selector of :mod:`.topk`, run in the domain
of a multilevel wavelet transform (:func:`jwins.transforms.wavelet`), with alpha drawn every round, per node,
uniformly from ``alphas`` (the reference's ``alpha_list``). A draw at or above ``metadata_cap`` sends the whole
model densely. ``transform = "identity"`` gives the paper's ablation without the wavelet.
"""
from __future__ import annotations

from ..transforms import Transform, wavelet
from .topk import PartialModel

DEFAULT_ALPHAS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0)


def jwins(*, transform: Transform | None = None, alphas: tuple[float, ...] = DEFAULT_ALPHAS,
          metadata_cap: float = 0.5, accumulation: bool = True, accumulate_averaging: bool = True,
          selection: str = "change") -> PartialModel:
    return PartialModel(transform=transform or wavelet("sym2", 4), alphas=alphas, metadata_cap=metadata_cap,
                        accumulation=accumulation, accumulate_averaging=accumulate_averaging, selection=selection)
