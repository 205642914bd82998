"""A multilayer perceptron, a model plugin for jwins.

A model factory is called with the dataset's metadata it asks for by name (``num_classes`` and ``input_shape``
here; any ``Dataset.meta`` entry works the same way) and the ``[model.options]`` table; it returns an
``nn.Module`` whose state is all in parameters (no BatchNorm running statistics: use LayerNorm/GroupNorm).
"""
from __future__ import annotations

import math
from typing import Sequence

from torch import nn


def mlp(*, num_classes: int, input_shape: Sequence[int], hidden: int = 64, depth: int = 2) -> nn.Module:
    """``depth`` hidden layers of ``hidden`` units with ReLU, on the flattened input."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
