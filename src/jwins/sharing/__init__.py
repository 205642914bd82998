"""Sharing algorithms. ``SHARING`` maps the config's ``sharing.algorithm`` to a factory."""
from __future__ import annotations

from typing import Callable, NamedTuple

from ..config import SharingConfig
from .base import Inbox, Mixing, Sharing, fill_in_average
from .choco import choco
from .full import full, local
from .jwins import jwins
from .subsample import subsample
from .topk import PartialModel, topk


def _full(cfg: SharingConfig, value_codec: str) -> Sharing:
    del cfg, value_codec
    return full()


def _local(cfg: SharingConfig, value_codec: str) -> Sharing:
    del cfg, value_codec
    return local()


def _topk(cfg: SharingConfig, value_codec: str) -> Sharing:
    del value_codec
    return PartialModel(alphas=(cfg.alpha,), metadata_cap=cfg.metadata_cap, accumulation=cfg.accumulation,
                        accumulate_averaging=cfg.accumulate_averaging, selection=cfg.selection)


def _jwins(cfg: SharingConfig, value_codec: str) -> Sharing:
    del value_codec
    from ..transforms import from_config

    return jwins(transform=from_config(cfg.transform, wavelet_name=cfg.wavelet, level=cfg.level),
                 alphas=cfg.alphas, metadata_cap=cfg.metadata_cap, accumulation=cfg.accumulation,
                 accumulate_averaging=cfg.accumulate_averaging, selection=cfg.selection)


def _choco(cfg: SharingConfig, value_codec: str) -> Sharing:
    return choco(alpha=cfg.alpha, gamma=cfg.gamma, compressor=cfg.compressor, value_codec=value_codec)


def _subsample(cfg: SharingConfig, value_codec: str) -> Sharing:
    del value_codec
    return subsample(alpha=cfg.alpha, metadata_cap=cfg.metadata_cap)


class Algorithm(NamedTuple):
    """A registered sharing algorithm: its factory and what the contract tests need to know of it."""

    factory: Callable[[SharingConfig, str], Sharing]
    # ``--set`` overrides under which every node sends its whole model every round (the algorithm must then
    # equal D-PSGD full sharing); None for an algorithm that has no such setting
    everything: tuple[str, ...] | None


SHARING = {
    "full": Algorithm(_full, ()),
    "subsample": Algorithm(_subsample, ("sharing.alpha=1.0",)),
    "topk": Algorithm(_topk, ("sharing.alpha=1.0",)),
    "choco": Algorithm(_choco, ("sharing.alpha=1.0", "sharing.gamma=1.0")),
    "jwins": Algorithm(_jwins, ("sharing.alphas=[1.0]",)),
    "local": Algorithm(_local, None),
}


def make_sharing(cfg: SharingConfig, value_codec: str = "float32") -> Sharing:
    """The sharing algorithm named by ``cfg.algorithm``, with that section's knobs. ``value_codec`` (the
    wire's) matters to CHOCO-SGD, whose public copies must move by exactly what receivers decode."""
    try:
        factory = SHARING[cfg.algorithm].factory
    except KeyError:
        from ..errors import ConfigError
        raise ConfigError(f"sharing.algorithm = {cfg.algorithm!r} is not available; choose one of: "
                          f"{', '.join(SHARING)}") from None
    return factory(cfg, value_codec)


__all__ = ["SHARING", "Inbox", "Mixing", "Sharing", "fill_in_average", "make_sharing"]
