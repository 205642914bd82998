"""Sharing algorithms. ``SHARING`` maps the config's ``sharing.algorithm`` to a factory."""
from __future__ import annotations

from ..config import SharingConfig
from .base import Inbox, Mixing, Sharing, fill_in_average
from .full import full, local


def _full(cfg: SharingConfig) -> Sharing:
    del cfg
    return full()


def _local(cfg: SharingConfig) -> Sharing:
    del cfg
    return local()


SHARING = {"full": _full, "local": _local}


def make_sharing(cfg: SharingConfig) -> Sharing:
    """The sharing algorithm named by ``cfg.algorithm``, with that section's knobs."""
    try:
        factory = SHARING[cfg.algorithm]
    except KeyError:
        from ..errors import ConfigError
        raise ConfigError(f"sharing.algorithm = {cfg.algorithm!r} is not available; choose one of: "
                          f"{', '.join(SHARING)}") from None
    return factory(cfg)


__all__ = ["SHARING", "Inbox", "Mixing", "Sharing", "fill_in_average", "make_sharing"]
