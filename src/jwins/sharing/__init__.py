"""Sharing algorithms: the :class:`Sharing` protocol, the built-ins, and fill-in averaging.

The built-ins are registered by name in :data:`jwins.registry.SHARING`; a config builds one with
:func:`jwins.world.build_sharing`.
"""
from __future__ import annotations

from .base import Inbox, Mixing, Sharing, fill_in_average
from .choco import Choco, ChocoState, choco
from .full import Full, Local, Nodes, full, local
from .jwins import jwins
from .subsample import Subsample, subsample
from .topk import TopKSelector, TopKState, top_k_mask, topk

__all__ = ["Choco", "ChocoState", "Full", "Inbox", "Local", "Mixing", "Nodes", "Sharing", "Subsample",
           "TopKSelector", "TopKState", "choco", "fill_in_average", "full", "jwins", "local",
           "subsample", "top_k_mask", "topk"]
