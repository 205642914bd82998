"""Tests for jwins.models: shapes, parameter counts, no buffers, build_model dispatch, functional_call/vmap."""
from __future__ import annotations

import pytest
import torch


from jwins import models as M
from jwins.errors import ConfigError


def _mf_input(batch: int = 4) -> torch.Tensor:
    return torch.stack([torch.randint(0, 5, (batch,)), torch.randint(0, 7, (batch,))], dim=1)


# (name, factory, input maker, expected output shape)
CASES = [
    ("small-cnn-28", lambda: M.small_cnn(), lambda: torch.randn(3, 1, 28, 28), (3, 10)),
    ("small-cnn-8", lambda: M.small_cnn(input_shape=(1, 8, 8)), lambda: torch.randn(3, 1, 8, 8), (3, 10)),
    ("lenet", lambda: M.lenet(), lambda: torch.randn(3, 3, 32, 32), (3, 10)),
    ("lenet-100", lambda: M.lenet(num_classes=100), lambda: torch.randn(3, 3, 32, 32), (3, 100)),
    ("leaf-cnn", lambda: M.leaf_cnn(), lambda: torch.randn(3, 1, 28, 28), (3, 62)),
    ("celeba-cnn", lambda: M.celeba_cnn(), lambda: torch.randn(3, 3, 84, 84), (3, 2)),
    ("char-lstm", lambda: M.char_lstm(vocab_size=80, hidden=32), lambda: torch.randint(0, 80, (3, 20)), (3, 80)),
    ("mf", lambda: M.matrix_factorization(num_users=5, num_items=7, mf_dim=4), _mf_input, (4,)),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.mark.parametrize("name,make,inp,shape", CASES, ids=IDS)
def test_output_shape(name, make, inp, shape):
    """Each model maps a small batch to the expected output shape, with finite values."""
    out = make()(inp())
    assert tuple(out.shape) == shape
    assert torch.isfinite(out).all()


def test_default_char_lstm_shape():
    """The default Shakespeare model (vocab 80, embedding 8, 2 x 256 LSTM) maps [B, 80] ids to [B, 80] logits."""
    m = M.char_lstm()
    assert tuple(m(torch.randint(0, 80, (2, 80))).shape) == (2, 80)
    assert M.num_parameters(m) == 80 * 8 + (4 * 256 * (8 + 256) + 8 * 256) + (4 * 256 * 512 + 8 * 256) + 256 * 80 + 80


@pytest.mark.parametrize("name,make,inp,shape", CASES, ids=IDS)
def test_no_buffers(name, make, inp, shape):
    """No model has buffers: the parameters are its whole state."""
    m = make()
    assert list(m.buffers()) == []
    assert set(m.state_dict()) == {n for n, _ in m.named_parameters()}


def test_lenet_parameter_count():
    """decentralizepy's CIFAR-10 LeNet has exactly 89,834 parameters."""
    assert M.num_parameters(M.lenet()) == 89_834
    assert M.num_parameters(M.lenet(num_classes=100)) == 89_834 + 1024 * 90 + 90


def test_lenet_layer_order():
    """LeNet applies conv -> GroupNorm -> ReLU -> max-pool in each block (decentralizepy's order)."""
    m = M.lenet()
    x = torch.randn(2, 3, 32, 32)
    h = x
    for conv, gn in ((m.conv1, m.gn1), (m.conv2, m.gn2), (m.conv3, m.gn3)):
        h = torch.nn.functional.max_pool2d(torch.relu(gn(conv(h))), 2)
    torch.testing.assert_close(m(x), m.fc1(h.flatten(1)))


def test_leaf_cnn_parameter_count():
    """LEAF's FEMNIST CNN has conv(1->32, 5x5) + conv(32->64, 5x5) + fc(7*7*64 -> 2048) + fc(2048 -> C)."""
    c = 62
    expected = (1 * 32 * 25 + 32) + (32 * 64 * 25 + 64) + (3136 * 2048 + 2048) + (2048 * c + c)
    assert expected == 6_603_710
    assert M.num_parameters(M.leaf_cnn(num_classes=c)) == expected


def test_small_model_sizes():
    """small-cnn stays small: < 60k parameters on 28x28, between 2k and 20k on 8x8; celeba-cnn as documented."""
    assert M.num_parameters(M.small_cnn()) < 60_000
    assert 2_000 <= M.num_parameters(M.small_cnn(input_shape=(1, 8, 8))) <= 20_000
    conv = (3 * 32 * 9 + 32) + 3 * (32 * 32 * 9 + 32)
    assert M.num_parameters(M.celeba_cnn()) == conv + 4 * 64 + (32 * 6 * 6 * 2 + 2)


def test_flat_image_input():
    """Image models also accept flattened [B, C*H*W] input (e.g. LEAF FEMNIST's 784-vectors)."""
    m = M.leaf_cnn()
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(m(x.reshape(2, 784)), m(x))


def test_matrix_factorization_formula():
    """MF predicts <u, v> + b_u + b_i + b for each (user, item) pair."""
    m = M.matrix_factorization(num_users=3, num_items=4, mf_dim=2, mean_rating=3.5)
    with torch.no_grad():
        m.user_bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
        m.item_bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.tensor([[0, 0], [2, 3], [1, 2]])
    u, v = m.user_factors.detach(), m.item_factors.detach()
    expected = torch.stack(
        [(u[a] * v[b]).sum() + m.user_bias[a] + m.item_bias[b] + 3.5 for a, b in x.tolist()]
    )
    torch.testing.assert_close(m(x), expected)
    assert m.user_factors.abs().max() <= 0.05 and m.item_factors.abs().max() <= 0.05


# ----------------------------------------------------------------------------------------------------- by name


def _dataset(name, shape, classes, meta):
    from jwins.data import Dataset

    x = torch.zeros(2, *shape)
    y = torch.zeros(2, dtype=torch.int64 if classes else torch.float32)
    return Dataset(name, x, y, x, y, "classification" if classes else "regression", classes, tuple(shape),
                   meta=dict(meta or {}))


def _model(name, dataset, *overrides):
    from jwins import config
    from jwins.registry import DATASETS
    from jwins.world import model_factory

    cfg = config.load(overrides=[f"model.name={name}", *overrides])
    spec = DATASETS.load(dataset.name) if DATASETS.canonical(dataset.name) else None
    return model_factory(cfg, dataset, getattr(spec, "default_model", None))()


@pytest.mark.parametrize(
    "dataset,shape,classes,meta,cls,out_classes",
    [
        ("digits", (1, 8, 8), 10, None, M.SmallCNN, 10),
        ("mnist", (1, 28, 28), 10, None, M.SmallCNN, 10),
        ("fashion-mnist", (1, 28, 28), 10, None, M.SmallCNN, 10),
        ("cifar10", (3, 32, 32), 10, None, M.LeNet, 10),
        ("cifar100", (3, 32, 32), 100, None, M.LeNet, 100),
        ("femnist", (1, 28, 28), 62, None, M.LeafCNN, 62),
        ("celeba", (3, 84, 84), 2, None, M.CelebaCNN, 2),
        ("shakespeare", (80,), 80, {"vocab_size": 80}, M.CharLSTM, 80),
        ("movielens", (2,), 0, {"num_users": 5, "num_items": 7}, M.MatrixFactorization, None),
    ],
)
def test_auto_model_is_the_datasets_default(dataset, shape, classes, meta, cls, out_classes):
    """model.name = 'auto' builds the dataset's default model (its spec says which), sized from the dataset's
    metadata; the MovieLens embedding size comes from model.mf_dim."""
    m = _model("auto", _dataset(dataset, shape, classes, meta), "model.mf_dim=3")
    assert type(m) is cls
    if cls is M.MatrixFactorization:
        assert tuple(m.user_factors.shape) == (5, 3) and tuple(m.item_factors.shape) == (7, 3)
    elif cls is M.CharLSTM:
        assert m.fc.out_features == out_classes
    else:
        assert m(torch.randn(2, *shape)).shape == (2, out_classes)


def test_models_by_name_options_and_errors():
    """Registered names work (with '_' for '-') and take [model.options]; an unknown name lists the choices,
    an unknown option names the factory's parameters, a missing metadata key says which."""
    mnist = _dataset("mnist", (1, 28, 28), 10, None)
    m = _model("leaf_cnn", mnist)
    assert isinstance(m, M.LeafCNN) and m.fc2.out_features == 10
    assert _model("lenet", mnist)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    lstm = _model("char-lstm", _dataset("shakespeare", (20,), 30, {"vocab_size": 30}), "model.options.hidden=16")
    assert lstm.lstm.hidden_size == 16 and lstm.fc.out_features == 30
    with pytest.raises(ConfigError, match="model.name = 'resnet' is not a registered model; choose one of: "
                                          "small-cnn, lenet, leaf-cnn, celeba-cnn, char-lstm, mf"):
        _model("resnet", mnist)
    with pytest.raises(ConfigError, match=r"model.options.depth: lenet takes no option 'depth' \(it takes: "
                                          r"num_classes, input_shape\)"):
        _model("lenet", mnist, "model.options.depth=3")
    with pytest.raises(ConfigError, match="model.name: matrix_factorization.* raised TypeError"):
        _model("mf", _dataset("movielens", (2,), 0, None))


# ----------------------------------------------------------------------------------------------------- functional


@pytest.mark.parametrize("name,make,inp,shape", CASES, ids=IDS)
def test_functional_call_matches_module(name, make, inp, shape):
    """functional_call with a dict of (cloned) parameters gives the module's own output, and gradients flow
    to those parameters."""
    m = make()
    x = inp()
    params = {k: v.detach().clone().requires_grad_(True) for k, v in m.named_parameters()}
    out = torch.func.functional_call(m, params, (x,))
    torch.testing.assert_close(out, m(x))
    out.float().pow(2).sum().backward()
    assert all(p.grad is not None for p in params.values())


@pytest.mark.parametrize("name,make,inp,shape", CASES, ids=IDS)
def test_vmap_grad_over_nodes(name, make, inp, shape):
    """vmap(grad) over a stack of 2 nodes' flat parameter rows (as jwins' vmap trainer does) matches per-node
    autograd on the plain module, including the LSTM (which then runs step by step)."""
    m = make()
    x = inp()
    names = [n for n, _ in m.named_parameters()]
    shapes = [p.shape for _, p in m.named_parameters()]
    sizes = [p.numel() for _, p in m.named_parameters()]
    row0 = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    rows = torch.stack([row0, row0 + 0.01 * torch.randn_like(row0)])

    def unflatten(row):
        return {n: t.view(s) for n, t, s in zip(names, row.split(sizes), shapes)}

    def loss(row, xb):
        return torch.func.functional_call(m, unflatten(row), (xb,)).float().pow(2).mean()

    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(0, None))(rows, x)
    for k in range(2):
        row = rows[k].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(loss(row, x), row)
        torch.testing.assert_close(grads[k], expected, rtol=1e-4, atol=1e-6)


def test_char_lstm_unfused_matches_fused():
    """The step-by-step LSTM used under function transforms equals nn.LSTM's fused kernel."""
    m = M.char_lstm(vocab_size=30, embedding_dim=8, hidden=16, layers=3)
    e = m.embedding(torch.randint(0, 30, (4, 12)))
    fused, _ = m.lstm(e)
    torch.testing.assert_close(m._unfused_last(e), fused[:, -1])


@pytest.mark.parametrize("name,shape", [("small-cnn", (1, 28, 28)), ("lenet", (3, 32, 32))])
def test_evaluation_in_the_channels_last_layout_gives_the_same_outputs(name, shape):
    """FlatModel.infer (the evaluation path: convolution weights channels-last) agrees with the training path
    to float32 rounding, and leaves the parameters untouched."""
    from jwins.flat import FlatModel
    from jwins.registry import MODELS

    module = MODELS.load(name)(input_shape=shape)
    flat = FlatModel(module)
    row = flat.flatten(module).clone()
    before = row.clone()
    x = torch.randn(64, *shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(flat.infer(row, x), flat(row, x), rtol=1e-5, atol=1e-5)
    assert torch.equal(row, before)
