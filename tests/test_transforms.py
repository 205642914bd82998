"""Property tests for jwins.transforms: the row-wise wavelet transform and the identity.

The wavelet transform must be PyWavelets' ``wavedec`` (mode 'symmetric', coefficients concatenated coarse to
fine) bit for bit, invert exactly up to float32 round-off (``waverec`` truncated to D), report its output width
through ``dim``, honour ``out=`` (own memory when possible, a copy into it otherwise) and never alias its input.

PyWavelets warns "Level value of L is too high: all coefficients will experience boundary effects" when the
level exceeds what the length supports (e.g. D=3 at level 5). That is only a note on the boundary extension: the
transform stays perfectly invertible, which :func:`test_wavelet_round_trip` checks for exactly those cases, so
the warning is filtered in this module.
"""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jwins import parallel
from jwins.transforms import identity, wavelet

pytestmark = pytest.mark.filterwarnings("ignore:Level value of .* is too high:UserWarning")

WAVELETS = ["haar", "db2", "sym2", "sym4", "coif1", "bior2.2"]
MODE = "symmetric"

names = st.sampled_from(WAVELETS)
levels = st.integers(0, 5)
# tiny (1, 2, 3 and other lengths shorter than the filters), odd/medium, and up to a few thousand
dims = st.one_of(st.integers(1, 8), st.integers(9, 300), st.integers(301, 4000))
# 1 row, and enough rows (>= 8) for the transform to split them into blocks over the worker threads
rows = st.sampled_from([1, 2, 3, 5, 9, 17])
scales = st.sampled_from([1e-4, 1.0, 1e5])
seeds = st.integers(0, 2**31 - 1)

FAST = settings(max_examples=40, deadline=None)
FEW = settings(max_examples=15, deadline=None)


def _data(n: int, d: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * scale


def _pywt_row(row: np.ndarray, name: str, level: int) -> np.ndarray:
    return np.concatenate(pywt.wavedec(row, name, mode=MODE, level=level))


@FAST
@given(name=names, level=levels, d=dims, n=rows, seed=seeds, scale=scales)
@example(name="sym4", level=5, d=1, n=1, seed=0, scale=1.0)
@example(name="coif1", level=5, d=2, n=1, seed=0, scale=1.0)
@example(name="bior2.2", level=5, d=3, n=2, seed=0, scale=1.0)
@example(name="haar", level=0, d=1, n=1, seed=0, scale=1.0)
@example(name="db2", level=4, d=4000, n=9, seed=0, scale=1.0)
def test_wavelet_round_trip(name: str, level: int, d: int, n: int, seed: int, scale: float) -> None:
    """inverse(forward(x), D) reproduces x up to float32 round-off (relative to max |x|), for every wavelet,
    level 0..5 (also above PyWavelets' recommended maximum), D from 1 to thousands, and N from 1 up."""
    t = wavelet(name, level)
    x = _data(n, d, seed, scale)
    z = t.forward(x)
    y = t.inverse(z, d)
    assert y.shape == x.shape and y.dtype == torch.float32
    tol = 1e-5 * float(x.abs().max())
    torch.testing.assert_close(y, x, rtol=0.0, atol=tol)


@FAST
@given(name=names, level=levels, d=dims, n=rows, seed=seeds)
@example(name="sym4", level=5, d=1, n=1, seed=0)
@example(name="haar", level=0, d=7, n=1, seed=0)
def test_wavelet_matches_pywavelets(name: str, level: int, d: int, n: int, seed: int) -> None:
    """forward equals, row by row and bit for bit, the concatenated float32 ``pywt.wavedec`` of that row;
    ``dim(D)`` is the number of coefficients produced, the sum of the wavedec lengths, and the length of
    ``pywt.coeffs_to_array`` on the same coefficients."""
    t = wavelet(name, level)
    x = _data(n, d, seed)
    z = t.forward(x)
    assert z.dtype == torch.float32 and z.shape == (n, t.dim(d))
    arr = x.numpy()
    for i in range(n):
        coeffs = pywt.wavedec(arr[i], name, mode=MODE, level=level)
        expected = np.concatenate(coeffs)
        assert expected.dtype == np.float32
        np.testing.assert_array_equal(z[i].numpy(), expected)
        assert t.dim(d) == sum(len(c) for c in coeffs) == pywt.coeffs_to_array(coeffs)[0].size
    # and the inverse is waverec of the same coefficients, truncated to D, bit for bit
    y = t.inverse(z, d).numpy()
    for i in range(n):
        parts = np.split(z[i].numpy(), np.cumsum([len(c) for c in pywt.wavedec(arr[i], name, mode=MODE,
                                                                                level=level)])[:-1])
        _bits_equal(y[i], pywt.waverec(parts, name, mode=MODE)[:d])


def _bits_equal(got: np.ndarray, want: np.ndarray) -> None:
    """Equal bit for bit: the same float32 values, signs of zeros included."""
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("name", ["haar", "sym2", "coif1", "sym8", "bior3.5", "rbio1.3"])
def test_compiled_kernels_are_pywavelets_bit_for_bit(name: str) -> None:
    """jwins.dwt computes wavedec and waverec (mode symmetric) of float32 rows with PyWavelets' float32 filters
    and order of operations: the same bits for every level 1..5 and length it supports, for values of very
    different scales and signed zeros (coif1's float32 filters differ from its float64 ones rounded). The
    default JWINS transform of a LeNet (89,834 parameters, sym2, level 4) takes this path."""
    from jwins import dwt

    assert dwt.supported(89_834, 4, 4)
    w = pywt.Wavelet(name)
    rng = np.random.default_rng(7)
    checked = 0
    for level in range(1, 6):
        kernels = dwt.Kernels(w, level)
        for d in [*range(1, 40), 101, 1000, 4001]:
            if not dwt.supported(d, w.dec_len, level):
                assert d < w.dec_len * 2 ** (level - 1) + 1 or w.dec_len % 2
                continue
            x = (rng.standard_normal((3, d)) * np.array([[1e-4], [1.0], [1e5]])).astype(np.float32)
            x[0, : d // 3] = -0.0
            coeffs = pywt.wavedec(x, w, mode=MODE, level=level, axis=1)
            want = np.concatenate(coeffs, axis=1)
            got = np.full_like(want, np.nan)
            kernels.forward(x, got)
            _bits_equal(got, want)
            back = np.full((3, d), np.nan, np.float32)
            kernels.inverse(want, d, back)
            _bits_equal(back, pywt.waverec(coeffs, w, mode=MODE, axis=1)[:, :d])
            checked += 1
    assert checked >= 100


@FEW
@given(name=names, level=levels, d=dims, seed=seeds)
def test_wavelet_threads_do_not_change_coefficients(name: str, level: int, d: int, seed: int) -> None:
    """The coefficients and the reconstruction of a many-row matrix are the same, bit for bit, whether its rows
    are transformed in one block on one thread or in blocks over 2 or 3 worker threads."""
    t = wavelet(name, level)
    x = _data(24, d, seed)
    with parallel.workers(1):
        z1 = t.forward(x)
        y1 = t.inverse(z1, d)
    for k in (2, 3):
        with parallel.workers(k):
            assert torch.equal(t.forward(x), z1)
            assert torch.equal(t.inverse(z1, d), y1)


@FEW
@given(name=names, level=levels, d=dims, n=rows, seed=seeds)
def test_wavelet_input_layout_and_dtype(name: str, level: int, d: int, n: int, seed: int) -> None:
    """forward of a non-contiguous view, or of a float64 tensor, is forward of its contiguous float32 copy."""
    t = wavelet(name, level)
    x = _data(n, d, seed)
    expected = t.forward(x)
    strided = torch.zeros(d, n).t()
    strided.copy_(x)
    assert not strided.is_contiguous() or min(n, d) == 1
    assert torch.equal(t.forward(strided), expected)
    assert torch.equal(t.forward(x.double()), expected)


OUT_KINDS = ["fresh", "row-slice", "strided", "float64"]


def _out_buffer(kind: str, n: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, backing): an [n, width] ``out`` tensor of the given kind, and the tensor whose storage holds it,
    filled with NaN so that writes outside ``out`` show."""
    if kind == "fresh":
        big = torch.full((n, width), float("nan"))
        return big, big
    if kind == "row-slice":
        big = torch.full((n + 5, width), float("nan"))
        return big[2:2 + n], big
    if kind == "strided":
        big = torch.full((n, 2 * width + 1), float("nan"))
        out = big[:, 1::2]
        return out, big
    big = torch.full((n, width), float("nan"), dtype=torch.float64)
    return big, big


def _check_out_path(fn, out: torch.Tensor, backing: torch.Tensor, expected: torch.Tensor) -> None:
    snapshot = backing.clone()
    result = fn(out)
    assert result is out and result.data_ptr() == out.data_ptr()
    assert out.dtype == snapshot.dtype
    assert torch.equal(out, expected.to(out.dtype))
    # nothing outside ``out`` was written: compare the rest of the backing storage with its snapshot
    mask = torch.ones_like(backing, dtype=torch.bool)
    mask_view = mask.as_strided(out.shape, out.stride(), out.storage_offset() - backing.storage_offset())
    mask_view.fill_(False)
    assert torch.equal(backing[mask].isnan(), snapshot[mask].isnan())


@FEW
@given(name=names, level=levels, d=dims, n=rows, seed=seeds)
@pytest.mark.parametrize("kind", OUT_KINDS)
def test_wavelet_out(kind: str, name: str, level: int, d: int, n: int, seed: int) -> None:
    """forward(x, out=buf) and inverse(z, D, out=buf) return ``buf`` itself, holding the numbers of the
    allocating call, and write nothing outside it: for a fresh float32 tensor and a row slice of a bigger one
    (written in place through numpy), and for a strided view or a float64 tensor (the copy fallback)."""
    t = wavelet(name, level)
    x = _data(n, d, seed)
    z = t.forward(x)
    y = t.inverse(z, d)
    out, backing = _out_buffer(kind, n, t.dim(d))
    _check_out_path(lambda o: t.forward(x, out=o), out, backing, z)
    out, backing = _out_buffer(kind, n, d)
    _check_out_path(lambda o: t.inverse(z, d, out=o), out, backing, y)


@pytest.mark.parametrize("kind", OUT_KINDS)
def test_identity_out(kind: str) -> None:
    """identity's forward/inverse with ``out`` return ``out`` holding x (cast to out's dtype), nothing else written."""
    t = identity()
    x = _data(4, 37, 1)
    out, backing = _out_buffer(kind, 4, 37)
    _check_out_path(lambda o: t.forward(x, out=o), out, backing, x)
    out, backing = _out_buffer(kind, 4, 37)
    _check_out_path(lambda o: t.inverse(x, 37, out=o), out, backing, x)


@FEW
@given(name=names, level=levels, d=dims, n=rows, seed=seeds)
def test_forward_does_not_alias_input(name: str, level: int, d: int, n: int, seed: int) -> None:
    """Writing into forward's result (wavelet and identity) leaves the input untouched, and vice versa."""
    x = _data(n, d, seed)
    keep = x.clone()
    for t in (wavelet(name, level), identity()):
        z = t.forward(x)
        z_keep = z.clone()
        z.fill_(123.0)
        assert torch.equal(x, keep)
        z.copy_(z_keep)
        x.add_(1.0)
        assert torch.equal(z, z_keep)
        x.copy_(keep)


@FEW
@given(d=dims, n=rows, seed=seeds)
def test_identity_round_trip(d: int, n: int, seed: int) -> None:
    """identity keeps the width (dim(D) == D) and round-trips x exactly."""
    t = identity()
    x = _data(n, d, seed)
    assert t.dim(d) == d
    z = t.forward(x)
    assert z.shape == x.shape and torch.equal(z, x)
    assert torch.equal(t.inverse(z, d), x)



def test_kernels_compile_without_a_writable_cache(monkeypatch):
    """Where numba cannot keep a cache (it refuses cache=True when the function is defined), jit.kernel
    compiles without one instead of failing the import, and the kernel computes the same."""
    import numba

    from jwins import jit

    real = numba.njit
    calls = []

    def refusing(*args, **kwargs):
        calls.append(kwargs.get("cache", False))
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x.py'")
        return real(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", refusing)

    def twice(a):
        return 2 * a

    f = jit.kernel(twice)
    assert calls == [True, False] and f(21) == 42
