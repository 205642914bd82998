"""Models for the datasets jwins ships with.

Every model holds *parameters only* (no BatchNorm running statistics or other buffers): jwins keeps all nodes'
parameters in one flat ``[N, D]`` tensor and evaluates a node's model with
``torch.func.functional_call(model, params, (x,))``, so the parameters must be the whole state. Normalisation, where
the reference model has any, is GroupNorm. All models also work under ``torch.func.vmap`` / ``torch.func.grad``.

Image models take float ``[B, C, H, W]``; a flattened ``[B, C*H*W]`` batch is reshaped. Weights are initialised
with torch's default initialisers from the global torch generator; seed it (or re-initialise) for reproducibility.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jwins.errors import ConfigError

try:  # private but stable across torch 2.x; decides whether the fused LSTM kernel may be used
    from torch._C._functorch import is_functorch_wrapped_tensor as _is_functorch_wrapped
except ImportError:  # pragma: no cover - unknown torch: always take the transform-safe path

    def _is_functorch_wrapped(t: torch.Tensor) -> bool:
        return True


__all__ = [
    "small_cnn",
    "lenet",
    "leaf_cnn",
    "celeba_cnn",
    "char_lstm",
    "matrix_factorization",
    "num_parameters",
]


def _hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


class _ImageModel(nn.Module):
    """Base for image models: accepts ``[B, C, H, W]`` or flattened ``[B, C*H*W]`` input."""

    def __init__(self, in_channels: int, image_size: int | Sequence[int]):
        super().__init__()
        self.in_channels = int(in_channels)
        self.image_size = _hw(image_size)

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return x.reshape(x.shape[0], self.in_channels, *self.image_size)
        if x.dim() == 3 and self.in_channels == 1:
            return x.unsqueeze(1)
        return x


# ----------------------------------------------------------------------------------------------------- CNNs


class SmallCNN(_ImageModel):
    """conv3x3(C->16) relu pool2 -> conv3x3(16->32) relu pool2 -> linear. 20,490 parameters for 1x28x28 and
    10 classes, 6,090 for 1x8x8."""

    def __init__(self, in_channels: int = 1, image_size: int | Sequence[int] = 28, num_classes: int = 10):
        super().__init__(in_channels, image_size)
        h, w = self.image_size
        if h < 4 or w < 4:
            raise ConfigError(f"small-cnn needs images of at least 4x4 pixels, got {h}x{w}")
        self.conv1 = nn.Conv2d(self.in_channels, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * (h // 4) * (w // 4), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._image(x)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


class LeNet(_ImageModel):
    """decentralizepy's CIFAR-10 LeNet (``decentralizepy/datasets/CIFAR10.py``, class ``LeNet``).

    Three blocks ``conv5x5 'same' -> GroupNorm(2, C) -> ReLU -> MaxPool2d(2)`` with 3->32, 32->32, 32->64 channels,
    then ``Linear(64*4*4, num_classes)``: 89,834 parameters for 10 classes on 3x32x32 images.
    """

    def __init__(self, num_classes: int = 10, *, in_channels: int = 3, image_size: int | Sequence[int] = 32):
        super().__init__(in_channels, image_size)
        h, w = self.image_size
        if h < 8 or w < 8:
            raise ConfigError(f"lenet needs images of at least 8x8 pixels, got {h}x{w}")
        self.conv1 = nn.Conv2d(self.in_channels, 32, 5, padding=2)
        self.gn1 = nn.GroupNorm(2, 32)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.gn2 = nn.GroupNorm(2, 32)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)
        self.gn3 = nn.GroupNorm(2, 64)
        self.fc1 = nn.Linear(64 * (h // 8) * (w // 8), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._image(x)
        x = F.max_pool2d(F.relu(self.gn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.gn2(self.conv2(x))), 2)
        x = F.max_pool2d(F.relu(self.gn3(self.conv3(x))), 2)
        return self.fc1(torch.flatten(x, 1))


class LeafCNN(_ImageModel):
    """LEAF's FEMNIST CNN: conv5x5 'same' 1->32, relu, pool2; conv5x5 'same' 32->64, relu, pool2;
    fc 3136->2048, relu; fc 2048->num_classes (6,603,710 parameters for 62 classes)."""

    def __init__(self, num_classes: int = 62, *, in_channels: int = 1, image_size: int | Sequence[int] = 28):
        super().__init__(in_channels, image_size)
        h, w = self.image_size
        if h < 4 or w < 4:
            raise ConfigError(f"leaf-cnn needs images of at least 4x4 pixels, got {h}x{w}")
        self.conv1 = nn.Conv2d(self.in_channels, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(64 * (h // 4) * (w // 4), 2048)
        self.fc2 = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._image(x)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class CelebaCNN(_ImageModel):
    """LEAF's CelebA CNN with GroupNorm(2, 32) in place of BatchNorm: four blocks
    ``conv3x3 'same' (32) -> GroupNorm -> MaxPool2d(2, ceil_mode=True) -> ReLU`` then a linear layer.

    LEAF pools with TensorFlow's ``padding='same'``, i.e. rounding up: 84 -> 42 -> 21 -> 11 -> 6, so the linear
    layer sees 32*6*6 = 1152 features (31,202 parameters for 2 classes).
    """

    def __init__(self, num_classes: int = 2, *, in_channels: int = 3, image_size: int | Sequence[int] = 84):
        super().__init__(in_channels, image_size)
        h, w = self.image_size
        convs, norms = [], []
        c = self.in_channels
        for _ in range(4):
            convs.append(nn.Conv2d(c, 32, 3, padding=1))
            norms.append(nn.GroupNorm(2, 32))
            c = 32
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.fc = nn.Linear(32 * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._image(x)
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(F.max_pool2d(norm(conv(x)), 2, ceil_mode=True))
        return self.fc(torch.flatten(x, 1))


# ----------------------------------------------------------------------------------------------------- LSTM


class CharLSTM(nn.Module):
    """LEAF's Shakespeare next-character model: embedding -> multi-layer LSTM -> linear on the last time step.

    Input int64 ``[B, T]`` character ids, output logits ``[B, vocab_size]``. The LSTM's parameters are those of
    ``nn.LSTM(batch_first=True)`` (same names and layout). Outside function transforms the fused ``nn.LSTM``
    kernel runs; under ``torch.func.vmap`` / ``grad`` (which have no batching rule for ``aten::lstm``) an
    equivalent step-by-step implementation runs instead.
    """

    def __init__(self, vocab_size: int = 80, embedding_dim: int = 8, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embedding(x.long())
        if _is_functorch_wrapped(e) or any(_is_functorch_wrapped(p) for p in self._lstm_weights()):
            last = self._unfused_last(e)
        else:
            out, _ = self.lstm(e)
            last = out[:, -1]
        return self.fc(last)

    def _lstm_weights(self) -> list[torch.Tensor]:
        m = self.lstm
        return [
            getattr(m, f"{kind}_l{k}")
            for k in range(m.num_layers)
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]

    def _unfused_last(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden state of the last layer at the last time step; gate order i, f, g, o as in ``nn.LSTM``."""
        m = self.lstm
        batch, steps = seq.shape[0], seq.shape[1]
        h = seq.new_zeros(batch, m.hidden_size)
        for k in range(m.num_layers):
            w_ih, w_hh = getattr(m, f"weight_ih_l{k}"), getattr(m, f"weight_hh_l{k}")
            b = getattr(m, f"bias_ih_l{k}") + getattr(m, f"bias_hh_l{k}")
            xg = torch.matmul(seq, w_ih.t()) + b  # input contribution for all steps at once
            h = seq.new_zeros(batch, m.hidden_size)
            c = seq.new_zeros(batch, m.hidden_size)
            outs = []
            for t in range(steps):
                i, f, g, o = (xg[:, t] + torch.matmul(h, w_hh.t())).chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                if k < m.num_layers - 1:
                    outs.append(h)
            if k < m.num_layers - 1:
                seq = torch.stack(outs, dim=1)
        return h


# ----------------------------------------------------------------------------------------------------- MF


class MatrixFactorization(nn.Module):
    """Biased matrix factorisation for ratings: ``<u_user, v_item> + b_user + b_item + b``.

    Input int64 ``[B, 2]`` of 0-based ``(user, item)`` ids, output float ``[B]``. Factors start uniform in
    ``[-0.05, 0.05]`` (as decentralizepy), biases at 0 and the global bias at ``global_bias``.
    """

    def __init__(self, num_users: int, num_items: int, dim: int = 20, *, global_bias: float = 0.0):
        super().__init__()
        if num_users < 1 or num_items < 1 or dim < 1:
            raise ConfigError(
                f"matrix factorization needs num_users, num_items, dim >= 1, got {num_users}, {num_items}, {dim}"
            )
        self.user_factors = nn.Parameter(torch.empty(num_users, dim).uniform_(-0.05, 0.05))
        self.item_factors = nn.Parameter(torch.empty(num_items, dim).uniform_(-0.05, 0.05))
        self.user_bias = nn.Parameter(torch.zeros(num_users))
        self.item_bias = nn.Parameter(torch.zeros(num_items))
        self.global_bias = nn.Parameter(torch.full((1,), float(global_bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        users, items = x[:, 0].long(), x[:, 1].long()
        u = self.user_factors[users]
        v = self.item_factors[items]
        return (u * v).sum(dim=-1) + self.user_bias[users] + self.item_bias[items] + self.global_bias


# ----------------------------------------------------------------------------------------------------- factories
# Registered in jwins.registry.MODELS. A model factory is called with the dataset's metadata it names
# (``num_classes``, ``input_shape``, and ``Dataset.meta`` entries such as ``vocab_size`` or ``num_users``) and
# the ``[model.options]`` table; it returns an ``nn.Module`` whose state is all in parameters.


def _image_shape(name: str, input_shape: Sequence[int]) -> tuple[int, tuple[int, int]]:
    """``(channels, (h, w))`` from ``(C, H, W)``, ``(H, W)`` (one channel) or ``(H*W,)`` (square, one channel)."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        return shape[0], (shape[1], shape[2])
    if len(shape) == 2:
        return 1, (shape[0], shape[1])
    if len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
        return 1, (side, side)
    raise ConfigError(f"model {name!r} needs an image input_shape (C, H, W), got {tuple(input_shape)!r}")


def small_cnn(*, num_classes: int = 10, input_shape: Sequence[int] = (1, 28, 28)) -> nn.Module:
    channels, hw = _image_shape("small-cnn", input_shape)
    return SmallCNN(channels, hw, num_classes)


def lenet(*, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32)) -> nn.Module:
    channels, hw = _image_shape("lenet", input_shape)
    return LeNet(num_classes, in_channels=channels, image_size=hw)


def leaf_cnn(*, num_classes: int = 62, input_shape: Sequence[int] = (1, 28, 28)) -> nn.Module:
    channels, hw = _image_shape("leaf-cnn", input_shape)
    return LeafCNN(num_classes, in_channels=channels, image_size=hw)


def celeba_cnn(*, num_classes: int = 2, input_shape: Sequence[int] = (3, 84, 84)) -> nn.Module:
    channels, hw = _image_shape("celeba-cnn", input_shape)
    return CelebaCNN(num_classes, in_channels=channels, image_size=hw)


def char_lstm(*, vocab_size: int = 80, embedding_dim: int = 8, hidden: int = 256, layers: int = 2) -> nn.Module:
    return CharLSTM(vocab_size, embedding_dim, hidden, layers)


def matrix_factorization(*, num_users: int, num_items: int, mf_dim: int = 20, mean_rating: float = 0.0
                         ) -> nn.Module:
    return MatrixFactorization(num_users, num_items, mf_dim, global_bias=mean_rating)


def num_parameters(model: nn.Module) -> int:
    """Total number of scalar parameters."""
    return sum(p.numel() for p in model.parameters())
